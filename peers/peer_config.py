"""``medswarm peer --config peer.toml``: options from a TOML file; the command line wins.

The file's keys are the peer's long option names, with dashes or underscores
(``state_dir = "state"``, ``bootstrap = ["/ip4/..."]``). Which keys exist and what type
each value must have are read off the argparse parser itself, so an option added to
``peers.peer_options`` is accepted in the file with no change here. Options typed as paths
are resolved against the file's directory.

How the two sources meet: ``defer_to_config`` makes the parser's options optional and
default-less, so the namespace argparse returns holds exactly what the command line gave;
``resolve`` then takes, for each option, the command line's value, else the file's, else
the option's default, and checks the required ones. Every mistake (unknown key, wrong
type, unreadable or invalid file, a required option in neither place) is a one-line
``ConfigError`` naming the file and key.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from peers.errors import PeerError

#: options that make no sense inside the file
NOT_IN_FILE = frozenset({"config"})


class ConfigError(PeerError):
    """A bad ``--config`` file or a required option given nowhere (one line for the user)."""


@dataclass(frozen=True)
class OptionSpec:
    """What the parser says about one option: its names, kind, type, default."""

    dest: str
    names: tuple[str, ...]   # long option strings, e.g. ("--state-dir",)
    kind: str                # "flag" (no value), "count", "list" (repeatable / several values), "value"
    type: Any                # the argparse ``type``: None, str, int, float, a Path class or a converter
    default: Any
    required: bool
    const: Any = None
    choices: tuple[Any, ...] | None = None

    @property
    def flag(self) -> str:
        """The option as the user types it."""
        return self.names[0]


def option_specs(parser: argparse.ArgumentParser) -> tuple[OptionSpec, ...]:
    """Every long option of ``parser`` (help, version and positionals left out)."""
    specs = []
    for action in parser._actions:  # argparse has no public listing of its options
        names = tuple(o for o in action.option_strings if o.startswith("--"))
        if not names or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        specs.append(OptionSpec(
            dest=action.dest, names=names, kind=_kind(action), type=action.type,
            default=action.default, required=bool(action.required), const=action.const,
            choices=tuple(action.choices) if action.choices is not None else None,
        ))
    return tuple(specs)


def defer_to_config(parser: argparse.ArgumentParser) -> tuple[OptionSpec, ...]:
    """Make ``parser``'s options optional and default-less; return what they were.

    Afterwards argparse leaves out of its namespace every option the command line did not
    give, which is how ``resolve`` tells a command-line value (wins over the file) from a
    default (loses to it). Help texts keep showing the defaults and say what is required.
    """
    specs = option_specs(parser)
    dests = {s.dest for s in specs}
    for action in parser._actions:
        if action.dest not in dests or not action.option_strings:
            continue
        if action.help and "%(default)s" in action.help:
            action.help = action.help.replace("%(default)s", str(action.default).replace("%", "%%"))
        if action.required:
            action.required = False
            action.help = f"{action.help or ''} (required, here or in --config)".strip()
        action.default = argparse.SUPPRESS
    return specs


def resolve(args: argparse.Namespace, specs: Iterable[OptionSpec]) -> argparse.Namespace:
    """The final options: command line, else the ``--config`` file, else defaults."""
    specs = tuple(specs)
    given = vars(args)
    path = given.get("config")
    from_file = read_config(Path(path), specs) if path is not None else {}
    return argparse.Namespace(**merge(given, from_file, specs))


def read_config(path: Path, specs: Iterable[OptionSpec]) -> dict[str, Any]:
    """The options in the TOML file at ``path``, typed and keyed by ``dest``."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML ({_one_line(err)})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: invalid TOML (not UTF-8 text)") from None
    return config_values(doc, specs, Path(path).absolute().parent, str(path))


def config_values(doc: Mapping[str, Any], specs: Iterable[OptionSpec], base_dir: Path,
                  source: str = "config") -> dict[str, Any]:
    """Check and type a parsed TOML document against the options; keys become ``dest`` names.

    ``base_dir`` anchors relative paths; ``source`` names the file in error messages.
    """
    by_key: dict[str, OptionSpec] = {}
    for spec in specs:
        for name in spec.names:
            by_key[name[2:]] = by_key[name[2:].replace("-", "_")] = spec
    values: dict[str, Any] = {}
    key_of: dict[str, str] = {}
    for key, raw in doc.items():
        found = by_key.get(key)
        if found is None or found.dest in NOT_IN_FILE:
            if found is not None:
                why = "cannot be set in a config file"
            else:
                close = difflib.get_close_matches(key, list(by_key), n=1)
                why = "not an option of medswarm peer" + (f" (did you mean {close[0]!r}?)" if close else "")
            raise ConfigError(f"{source}: unknown key {key!r}: {why}")
        if found.dest in values:
            raise ConfigError(f"{source}: {key!r} and {key_of[found.dest]!r} set the same option")
        values[found.dest] = _convert(found, raw, f"{source}: {key}", base_dir)
        key_of[found.dest] = key
    return values


def merge(given: Mapping[str, Any], from_file: Mapping[str, Any],
          specs: Iterable[OptionSpec]) -> dict[str, Any]:
    """Command line (``given``) over file over defaults; a required option must be in one of them.

    Entries of ``given`` that are not options (the subcommand, its function) pass through.
    """
    merged = dict(given)
    missing = []
    for spec in specs:
        if spec.dest in merged:
            continue
        if spec.dest in from_file:
            merged[spec.dest] = from_file[spec.dest]
        elif spec.required:
            missing.append(spec.flag)
        else:
            merged[spec.dest] = _default(spec)
    if missing:
        many = len(missing) > 1
        raise ConfigError(f"missing required option{'s' if many else ''} {', '.join(missing)} "
                          f"(give {'them' if many else 'it'} on the command line or in --config)")
    return merged


# ------------------------------------------------------------------ helpers

def _kind(action: argparse.Action) -> str:
    if isinstance(action, argparse._CountAction):
        return "count"
    if action.nargs == 0:
        return "flag"
    if isinstance(action, argparse._AppendAction) or action.nargs in ("+", "*") or (
            isinstance(action.nargs, int) and action.nargs > 1):
        return "list"
    return "value"


def _default(spec: OptionSpec) -> Any:
    """The default as argparse would give it (a string default goes through the type)."""
    if isinstance(spec.default, str) and spec.type is not None:
        return spec.type(spec.default)
    return copy.copy(spec.default)


def _convert(spec: OptionSpec, raw: Any, where: str, base_dir: Path) -> Any:
    if spec.kind == "flag":
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(raw)}")
        return spec.const if raw else copy.copy(spec.default)
    if spec.kind == "count":
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise ConfigError(f"{where}: expected a count (integer >= 0), got {_describe(raw)}")
        return raw
    if spec.kind == "list":
        if not isinstance(raw, list):
            raise ConfigError(f"{where}: expected an array (the option is repeatable), got {_describe(raw)}")
        return [_scalar(spec, item, f"{where}[{i}]", base_dir) for i, item in enumerate(raw)]
    return _scalar(spec, raw, where, base_dir)


def _scalar(spec: OptionSpec, raw: Any, where: str, base_dir: Path) -> Any:
    kind = spec.type
    if kind is None or kind is str:
        expected, ok = "a string", isinstance(raw, str)
    elif kind is int:
        expected, ok = "an integer", isinstance(raw, int) and not isinstance(raw, bool)
    elif kind is float:
        expected, ok = "a number", isinstance(raw, (int, float)) and not isinstance(raw, bool)
    elif isinstance(kind, type) and issubclass(kind, PurePath):
        expected, ok = "a path (string)", isinstance(raw, str)
    else:  # a custom converter from text: give it the value's text
        expected, ok = "a string or number", isinstance(raw, (str, int, float)) and not isinstance(raw, bool)
    if not ok:
        raise ConfigError(f"{where}: expected {expected}, got {_describe(raw)}")
    if kind is None or kind is str:
        value: Any = raw
    elif kind is float:
        value = float(raw)
    elif kind is int:
        value = raw
    elif isinstance(kind, type) and issubclass(kind, PurePath):
        path = Path(raw).expanduser()
        value = kind(path if path.is_absolute() else base_dir / path)
    else:
        try:
            value = kind(str(raw))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as err:
            raise ConfigError(f"{where}: {_one_line(err) or 'invalid value'} (got {_describe(raw)})") from None
    if spec.choices is not None and value not in spec.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {list(spec.choices)}")
    return value


def _describe(raw: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a float",
             list: "an array", dict: "a table"}
    name = next((n for t, n in names.items() if isinstance(raw, t)), type(raw).__name__)
    text = repr(raw)
    return f"{name} ({text[:60]}{'...' if len(text) > 60 else ''})"


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""
