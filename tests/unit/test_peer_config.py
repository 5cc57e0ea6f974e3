"""``medswarm peer --config peer.toml``: keys and types from the parser, the command line wins."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from peers.cli import EXIT_USAGE, main
from peers.peer_config import ConfigError, defer_to_config, option_specs, resolve
from peers.peer_options import add_arguments

FULL = """
key = "keys/a.key"
consortium = "consortium.toml"
site = 1
sites = 4
state_dir = "state"
bootstrap = ["/ip4/10.0.0.1/tcp/4001/p2p/QmA", "/ip4/10.0.0.2/tcp/4001/p2p/QmB"]
insecure-open-swarm = true
heartbeat = 2
status_port = 0
"""


def peer_parser(extra=None):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    if extra is not None:
        extra(parser)
    return parser, defer_to_config(parser)


def load(tmp_path, text, *argv, extra=None, name="peer.toml"):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    parser, specs = peer_parser(extra)
    return resolve(parser.parse_args(["--config", str(path), *argv]), specs)


def test_the_file_gives_every_option_typed_with_paths_relative_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # relative paths must not depend on the working directory
    args = load(tmp_path, FULL, name="conf/peer.toml")
    conf = tmp_path / "conf"
    assert args.key == conf / "keys" / "a.key" and args.consortium == conf / "consortium.toml"
    assert args.state_dir == conf / "state" and args.key.is_absolute()
    assert (args.site, args.sites) == (1, 4) and isinstance(args.site, int)
    assert args.bootstrap == ["/ip4/10.0.0.1/tcp/4001/p2p/QmA", "/ip4/10.0.0.2/tcp/4001/p2p/QmB"]
    assert args.insecure_open_swarm is True  # dashes work as well as underscores
    assert args.heartbeat == 2.0 and isinstance(args.heartbeat, float)  # an int where a float goes
    assert args.status_port == 0
    # options in neither place keep their defaults
    assert args.listen == "/ip4/127.0.0.1/tcp/0" and args.rounds == 30 and args.report is None
    assert args.status_host == "127.0.0.1" and args.suspect_after == 30.0


def test_command_line_flags_override_the_file(tmp_path):
    args = load(tmp_path, FULL, "--site", "3", "--bootstrap", "/ip4/10.0.0.9/tcp/1/p2p/QmC",
                "--state-dir", "elsewhere", "--heartbeat", "0.5")
    assert args.site == 3 and args.heartbeat == 0.5
    assert args.bootstrap == ["/ip4/10.0.0.9/tcp/1/p2p/QmC"]  # replaces the file's list, not added to it
    assert args.state_dir == Path("elsewhere")  # command-line paths stay relative to the working directory
    assert args.sites == 4  # the rest still comes from the file


def test_a_command_line_value_equal_to_the_default_still_wins_over_the_file(tmp_path):
    args = load(tmp_path, FULL + "rounds = 12\n", "--rounds", "30")
    assert args.rounds == 30


def test_required_options_may_come_from_either_place(tmp_path):
    args = load(tmp_path, 'sites = 4\nstate_dir = "s"\n', "--key", "k.key", "--site", "0")
    assert args.key == Path("k.key") and args.sites == 4 and args.site == 0


def test_a_required_option_in_neither_place_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required options --key, --site \("):
        load(tmp_path, 'sites = 4\nstate_dir = "s"\n')
    parser, specs = peer_parser()
    with pytest.raises(ConfigError, match="--key, --site, --sites, --state-dir"):
        resolve(parser.parse_args([]), specs)


@pytest.mark.parametrize("line, needle", [
    ("sitez = 1", "unknown key 'sitez': not an option of medswarm peer (did you mean 'site'?)"),
    ("config = 'other.toml'", "unknown key 'config'"),
    ("[peer]\nsite = 1", "unknown key 'peer'"),
    ("site = '1'", "site: expected an integer, got a string"),
    ("site = 1.0", "site: expected an integer, got a float"),
    ("site = true", "site: expected an integer, got a boolean"),
    ("rounds = [3]", "rounds: expected an integer, got an array"),
    ("heartbeat = 'fast'", "heartbeat: expected a number"),
    ("state_dir = 5", "state_dir: expected a path"),
    ("bootstrap = '/ip4/1.2.3.4/tcp/1'", "bootstrap: expected an array"),
    ("bootstrap = ['/ip4/1.2.3.4/tcp/1', 7]", "bootstrap[1]: expected a string, got an integer"),
    ("insecure_open_swarm = 'yes'", "insecure_open_swarm: expected true or false"),
    ("status_port = 70000", "status_port: must be 0-65535"),
    ("status-port = 'http'", "status-port: expected a port number"),
    ("site = 1\nsite-dummy = 2", "unknown key 'site-dummy'"),
    ("state_dir = 'a'\nstate-dir = 'b'", "'state-dir' and 'state_dir' set the same option"),
])
def test_a_bad_key_or_type_is_one_line_naming_file_and_key(tmp_path, line, needle):
    with pytest.raises(ConfigError) as info:
        load(tmp_path, line + "\n", "--key", "k", "--site", "0", "--sites", "4", "--state-dir", "s")
    message = str(info.value)
    assert needle in message and "peer.toml" in message and "\n" not in message


@pytest.mark.parametrize("content, needle", [
    (b"site = \n", "invalid TOML"),
    (b"site = 1\nsite = 2\n", "invalid TOML"),
    (b"site = 1 # caf\xe9\n", "invalid TOML"),
])
def test_an_invalid_file_is_one_line_naming_it(tmp_path, content, needle):
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    parser, specs = peer_parser()
    with pytest.raises(ConfigError) as info:
        resolve(parser.parse_args(["--config", str(path)]), specs)
    assert needle in str(info.value) and "bad.toml" in str(info.value) and "\n" not in str(info.value)


def test_a_missing_or_unreadable_file_is_one_line_naming_it(tmp_path):
    parser, specs = peer_parser()
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml$"):
        resolve(parser.parse_args(["--config", str(tmp_path / "nope.toml")]), specs)
    with pytest.raises(ConfigError, match=f"cannot read config file {tmp_path}"):
        resolve(parser.parse_args(["--config", str(tmp_path)]), specs)  # a directory


def test_discovery_options_come_from_the_file_too(tmp_path):
    args = load(tmp_path, FULL + 'announce = ["/ip4/1.2.3.4/tcp/4001"]\ntarget_neighbours = 6\n')
    assert args.announce == ["/ip4/1.2.3.4/tcp/4001"] and args.target_neighbours == 6
    args = load(tmp_path, FULL, "--target-neighbours", "2")
    assert args.announce == [] and args.target_neighbours == 2
    with pytest.raises(ConfigError, match="target_neighbours: expected an integer"):
        load(tmp_path, FULL + "target_neighbours = 'six'\n")


def test_options_added_later_are_accepted_without_changes(tmp_path):
    def later(parser):  # what other helpers will add
        parser.add_argument("--later-list", action="append", default=[], metavar="X")
        parser.add_argument("--later-count", type=int, default=4)

    args = load(tmp_path, FULL + 'later_list = ["x"]\nlater_count = 6\n', extra=later)
    assert args.later_list == ["x"] and args.later_count == 6


def test_specs_are_read_off_the_parser():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    specs = {s.dest: s for s in option_specs(parser)}
    assert {"key", "site", "sites", "state_dir"} == {d for d, s in specs.items() if s.required}
    assert specs["bootstrap"].kind == "list" and specs["insecure_open_swarm"].kind == "flag"
    assert specs["state_dir"].type is Path and specs["rounds"].type is int and "help" not in specs


def test_help_still_shows_defaults_and_says_what_is_required():
    def with_default_in_help(parser):
        parser.add_argument("--later-count", type=int, default=4, help="keep %(default)s linked")

    parser, _ = peer_parser(with_default_in_help)
    text = " ".join(parser.format_help().split())
    assert "keep 4 linked" in text and "(required, here or in --config)" in text


# ------------------------------------------------------------------ through the command line

def test_cli_takes_required_options_from_the_file(tmp_path, capsys):
    # everything but --consortium comes from the file, so the peer gets as far as its consortium check
    (tmp_path / "peer.toml").write_text('key = "k.key"\nsite = 0\nsites = 4\nstate_dir = "s"\n')
    code = main(["peer", "--config", str(tmp_path / "peer.toml")])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "--consortium" in err and len(err.splitlines()) == 1


def test_cli_bad_config_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "peer.toml").write_text('key = "k.key"\nsite = "zero"\n')
    code = main(["peer", "--config", str(tmp_path / "peer.toml"), "--sites", "4"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and err.startswith("medswarm: error:") and len(err.splitlines()) == 1
    assert "peer.toml: site: expected an integer" in err


def test_cli_without_required_options_is_still_a_one_line_error(capsys):
    code = main(["peer", "--site", "0"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and "--key" in err and "--state-dir" in err and len(err.splitlines()) == 1


def _onepeer(site: int, ids: list[str] | None, me: str = "b", mode: str = "on"):
    from types import SimpleNamespace

    from peers.peer_cmd import _schedule
    from peers.peer_options import NetworkConfig
    from swarm.config import LearningConfig

    network = NetworkConfig(key=Path("k"), site=site, sites=4, onepeer_exp=mode)
    consortium = None if ids is None else SimpleNamespace(members=[SimpleNamespace(peer_id=i) for i in ids])
    return _schedule(network, LearningConfig(gossip_steps=2), SimpleNamespace(peer_id=me), consortium)


def test_onepeer_exp_partners_follow_the_consortium_order():
    schedule = _onepeer(1, ["a", "b", "c", "d"])
    assert [schedule.partners("b", (0, s)) for s in (0, 1)] == [{"a"}, {"d"}]


@pytest.mark.parametrize("site, ids", [(1, None), (2, ["a", "b", "c", "d"]), (1, ["a", "b", "c"])])
def test_onepeer_exp_without_a_consortium_in_site_order_is_refused(site, ids):
    from peers.errors import PeerError

    with pytest.raises(PeerError):
        _onepeer(site, ids)


@pytest.mark.parametrize("site, ids", [(1, None), (2, ["a", "b", "c", "d"]), (1, ["a", "b", "c"])])
def test_onepeer_exp_auto_keeps_the_discovered_neighbours_without_a_consortium_in_site_order(site, ids):
    assert _onepeer(site, ids, mode="auto") is None


def test_onepeer_exp_auto_follows_a_consortium_in_site_order_and_off_never():
    assert _onepeer(1, ["a", "b", "c", "d"], mode="auto").all_partners("b") == {"a", "d"}
    assert _onepeer(1, ["a", "b", "c", "d"], mode="off") is None


def test_onepeer_exp_defaults_to_auto_and_the_flag_alone_is_on():
    from peers.cli import build_parser
    from peers.peer_options import NetworkConfig
    from swarm.options import from_args

    parser = build_parser()
    base = ["peer", "--key", "k", "--site", "0", "--sites", "4", "--state-dir", "s"]

    def mode(*extra: str) -> str:
        return from_args(NetworkConfig, parser.parse_args([*base, *extra])).onepeer_exp

    assert (mode(), mode("--onepeer-exp"), mode("--onepeer-exp", "off")) == ("auto", "on", "off")
