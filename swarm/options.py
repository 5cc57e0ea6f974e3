"""Options declared once, as fields of frozen config dataclasses.

Each field made with :func:`option` carries its default, help text and command-line
spelling. From that one declaration:

- :func:`add_arguments` adds the argparse options of a config class to a parser (or a
  chosen subset of them, with a command's own defaults where it needs different ones);
- :func:`from_args` builds the typed, validated config from the parsed namespace;
- :func:`to_argv` turns a config back into command-line options (how ``medswarm launch``
  hands its settings to its peer processes);
- :func:`declared_defaults` lists ``--flag -> default`` (what the README documents).

Validation lives in each class's ``__post_init__`` and raises ``ConfigError`` with the
field named. Parsing of structured values (``--crash 3@5:10``) happens in
:func:`from_args`, so its errors are ``ConfigError`` too. argparse itself only checks
the scalar type (int, float, path), which is also what ``--config`` files are checked
against (``peers.peer_config`` reads the parser).
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import Any, Callable, Collection, Mapping, TypeVar

T = TypeVar("T")

#: metadata key of the fields this module handles
_KEY = "medswarm_option"


def option(default: Any, help: str, *, type: Callable[[str], Any] | None = None, flag: str | None = None,
           metavar: str | None = None, repeat: bool = False, parse: Callable[[str], Any] | None = None,
           required: bool = False, const: Any = None) -> Any:
    """A dataclass field that is also a command-line option.

    Parameters
    ----------
    default:
        The one default (immutable: a tuple for repeatable options).
    help:
        The help text; `` (default X)`` is appended for a non-empty default.
    type:
        argparse's type for one value; by default the default's type (``str`` for ``None``).
    flag:
        The option string; by default ``--`` plus the field name with dashes. A bool field
        whose default is ``True`` is a flag that turns it off (e.g. ``--no-converge``).
    repeat:
        The option may be given several times; the field holds a tuple of the values.
    parse:
        Turns one given text into the field's value (or one item of it) in ``from_args``.
    required:
        The command line (or a ``--config`` file) must give it.
    const:
        The option's value may be left out: the flag alone gives ``const`` (``--ray``).
    """
    if type is None:
        type = str if default is None or repeat else default.__class__
    spec = {"help": help, "type": type, "flag": flag, "metavar": metavar, "repeat": repeat,
            "parse": parse, "required": required, "const": const}
    return field(default=default, metadata={_KEY: spec})


def cli_fields(cls: type) -> list[Field]:
    """The fields of config class ``cls`` that are command-line options, in declaration order."""
    return [f for f in fields(cls) if _KEY in f.metadata]


def flag_of(f: Field) -> str:
    """The option string of field ``f`` (``--local-epochs``)."""
    return f.metadata[_KEY]["flag"] or "--" + f.name.replace("_", "-")


def _select(cls: type, only: Collection[str] | None) -> list[Field]:
    chosen = cli_fields(cls)
    if only is not None:
        unknown = set(only) - {f.name for f in chosen}
        if unknown:
            raise ValueError(f"{cls.__name__} has no options {sorted(unknown)}")
        chosen = [f for f in chosen if f.name in only]
    return chosen


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, *,
                  title: str | None = None, only: Collection[str] | None = None,
                  defaults: Mapping[str, Any] | None = None, required: Collection[str] = ()) -> None:
    """Add the options of config class ``cls`` to ``parser``.

    ``only`` picks some of them; ``defaults`` replaces declared defaults by field name (a
    command's named override, e.g. ``LAUNCH_TIMING``); ``required`` makes fields required.
    """
    target = parser.add_argument_group(title) if title and isinstance(parser, argparse.ArgumentParser) else parser
    overrides = dict(defaults or {})
    for f in _select(cls, only):
        spec = f.metadata[_KEY]
        default = overrides.pop(f.name, f.default)
        if isinstance(default, tuple) and not spec["repeat"]:
            default = _text(default)  # parsed back by from_args; shown plainly in --help
        text = spec["help"]
        if not isinstance(default, bool) and default not in (None, (), ""):
            text += " (default %(default)s)"
        kwargs: dict[str, Any] = {"dest": f.name, "help": text}
        if isinstance(default, bool) and not spec["repeat"]:
            kwargs.update(action="store_false" if default else "store_true", default=default)
        elif spec["repeat"]:
            kwargs.update(action="append", default=list(default), type=spec["type"], metavar=spec["metavar"])
        else:
            kwargs.update(type=spec["type"], default=default, metavar=spec["metavar"])
            if spec.get("const") is not None:
                kwargs.update(nargs="?", const=spec["const"])
        if spec["required"] or f.name in required:
            kwargs.update(required=True)
            kwargs.pop("default", None)
        target.add_argument(flag_of(f), **kwargs)
    if overrides:
        raise ValueError(f"{cls.__name__} has no options {sorted(overrides)}")


def _value(f: Field, raw: Any) -> Any:
    spec = f.metadata[_KEY]
    parse = spec["parse"]
    if spec["repeat"]:
        return tuple(parse(item) if parse is not None and isinstance(item, str) else item for item in raw)
    if parse is not None and isinstance(raw, str):
        return parse(raw)
    return raw


def from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """The config ``cls`` from a parsed namespace: every option of ``cls`` found in ``args``
    (others keep their declared defaults), plus ``given`` fields; raises ``ConfigError``."""
    kwargs = {f.name: _value(f, getattr(args, f.name)) for f in cli_fields(cls) if hasattr(args, f.name)}
    return cls(**{**kwargs, **given})


def to_argv(config: Any, *, only: Collection[str] | None = None) -> list[str]:
    """Command-line options that give ``config``'s values (``from_args`` of them is ``config``).

    Flags appear when they differ from the default, ``None`` values are left out; an item of
    a repeatable option of parsed values (``Crash``, ``Attack``) goes as its ``str``, which
    is its option text.
    """
    if not is_dataclass(config):
        raise TypeError(f"expected a config dataclass, got {type(config).__name__}")
    argv: list[str] = []
    for f in _select(type(config), only):
        value = getattr(config, f.name)
        if isinstance(value, bool):
            if value != f.default:
                argv.append(flag_of(f))
        elif f.metadata[_KEY]["repeat"]:
            for item in value:
                argv += [flag_of(f), _text(item)]
        elif value is not None:
            argv += [flag_of(f), _text(value)]
    return argv


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def declared_defaults(cls: type, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"--flag": default}`` of every option of ``cls`` (with a command's ``defaults``)."""
    out = {}
    for f in cli_fields(cls):
        default = f.default if f.default is not MISSING else None
        out[flag_of(f)] = (defaults or {}).get(f.name, default)
    return out


def positive(field_name: str, value: float, *, strict: bool = True) -> None:
    """``ConfigError`` naming ``field_name`` unless ``value`` > 0 (>= 0 with ``strict=False``)."""
    from swarm.errors import ConfigError

    if not (value > 0 if strict else value >= 0):
        raise ConfigError(field_name, f"must be {'>' if strict else '>='} 0, got {value}")


__all__ = ["option", "add_arguments", "from_args", "to_argv", "declared_defaults", "cli_fields", "flag_of",
           "positive"]
