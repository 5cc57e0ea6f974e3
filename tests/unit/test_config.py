"""One typed config: declared once, the same protocol for simulated and real peers, and
the README's documented defaults are the code's."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from peers import cli
from peers.launch_options import LaunchSetup
from peers.launch_options import add_arguments as add_launch_arguments
from peers.peer_options import NetworkConfig
from peers.peer_options import add_arguments as add_peer_arguments
from peers.simulate_options import add_arguments as add_simulate_arguments
from swarm.config import (LAUNCH_TIMING, LearningConfig, OutputConfig, SimSetup, TimingConfig,
                          default_partition)
from swarm.attacks import Attack
from swarm.errors import ConfigError
from swarm.faults import Crash, Cut, FaultConfig, LateJoin
from swarm.options import add_arguments, from_args, to_argv
from swarm.simulate import SimConfig

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
COMMANDS = {"simulate": add_simulate_arguments, "peer": add_peer_arguments, "launch": add_launch_arguments}


def parse(config_cls, argv, **kwargs):
    parser = argparse.ArgumentParser()
    add_arguments(parser, config_cls, **kwargs)
    return from_args(config_cls, parser.parse_args(argv))


# ------------------------------------------------------------------ one protocol for both

SHARED = ["--gossip-steps", "2", "--rounds", "12", "--heartbeat", "2", "--suspect-after", "12",
          "--deadline-min", "0.5", "--deadline-initial", "3", "--deadline-max", "40", "--spread-factor", "4",
          "--fetch-timeout", "9", "--linger", "7", "--isolation-wait", "50", "--quorum", "0.75",
          "--converge-window", "4", "--metric-tol", "0.05", "--data", "heart"]


def test_a_simulated_and_a_real_peer_run_the_same_protocol_config(tmp_path, monkeypatch):
    import peers.peer_cmd
    import peers.simulate_cmd
    from gossip.libp2p_identity import generate_key_file

    seen = {}

    class Stop(Exception):
        pass

    def simulation(config, state_dir=None):  # the simulation's VirtualSwarm gets config.protocol_config()
        seen["simulate"] = config.protocol_config()
        raise Stop

    def trio_run(_main, setup):  # what the real peer hands to trio
        seen["peer"] = setup.protocol

    monkeypatch.setattr(peers.simulate_cmd, "Simulation", simulation)
    monkeypatch.setattr(peers.peer_cmd.trio, "run", trio_run)
    with pytest.raises(Stop):
        cli.main(["simulate", *SHARED, "--peers", "4", "--quiet", "--out", str(tmp_path / "sim")])
    generate_key_file(tmp_path / "k.key")
    cli.main(["peer", *SHARED, "--key", str(tmp_path / "k.key"), "--insecure-open-swarm", "--site", "0",
              "--sites", "4", "--state-dir", str(tmp_path / "state")])
    assert seen["simulate"] == seen["peer"]
    assert seen["peer"].heartbeat == 2.0 and seen["peer"].deadline.spread_factor == 4.0  # the options arrived
    assert seen["peer"].convergence.window == 4 and seen["peer"].gossip_steps == 2


def test_default_protocol_is_the_same_for_simulate_and_peer_and_uses_spread_factor_5():
    sim = SimConfig().protocol_config()
    peer_args = argparse.ArgumentParser()
    add_peer_arguments(peer_args)
    args = peer_args.parse_args(["--key", "k", "--site", "0", "--sites", "2", "--state-dir", "s"])
    from swarm.config import protocol_config

    assert protocol_config(from_args(LearningConfig, args), from_args(TimingConfig, args)) == sim
    assert sim.deadline.spread_factor == 5.0


def test_launch_forwards_its_own_timings_to_its_peers():
    from peers.launch import LaunchedPeer, peer_command

    parser = argparse.ArgumentParser()
    add_launch_arguments(parser)
    args = parser.parse_args(["--peers", "3", "--linger", "4", "--lr", "0.1"])
    cmd = peer_command(args, LaunchedPeer(1, "hospital-1", Path("x")), Path("c.toml"), [])
    peer = argparse.ArgumentParser()
    add_peer_arguments(peer)
    forwarded = peer.parse_args(cmd[cmd.index("peer") + 1:])
    timing = from_args(TimingConfig, forwarded)
    assert timing == TimingConfig(**{**LAUNCH_TIMING, "linger": 4.0})
    assert from_args(LearningConfig, forwarded) == LearningConfig(lr=0.1)


# ------------------------------------------------------------------ round trip, validation

EXAMPLES = [
    LearningConfig(data="heart", rounds=7, lr=0.2, optimizer="adam", float16=True, converge=False,
                   aggregator="median"),
    TimingConfig(heartbeat=1.5, suspect_after=9, deadline_max=15, isolation_wait=0),
    OutputConfig(out=Path("o"), state_dir=Path("s"), quiet=True, eval_every=3),
    SimSetup(peers=5, topology="full", site_shift=0.3, arms=("swarm", "cwt")),
    LaunchSetup(peers=3, topology="chain", timeout=60),
    NetworkConfig(key=Path("k"), site=1, sites=3, bootstrap=("/ip4/1.2.3.4/tcp/1/p2p/X", "/ip4/1/tcp/2/p2p/Y"),
                  status_port=0, insecure_open_swarm=True),
    FaultConfig(delay=0.5, drop=0.2, crashes=(Crash(3, 5, 10), Crash(7, 5)), late=(LateJoin(2, 4),),
                cuts=(Cut(1, 2, 6),), attacks=(Attack(0, "scale", 5.0), Attack(0, "flood"), Attack(4, "alie", 0.5))),
]


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: type(c).__name__)
def test_to_argv_then_from_args_gives_the_config_back(config):
    assert parse(type(config), to_argv(config)) == config


@pytest.mark.parametrize("config_cls", [LearningConfig, TimingConfig, OutputConfig, SimSetup, LaunchSetup,
                                        FaultConfig])
def test_no_options_give_the_declared_defaults(config_cls):
    assert parse(config_cls, []) == config_cls()


def test_fault_options_are_parsed_into_typed_values():
    faults = parse(FaultConfig, ["--crash", "3@5:10", "--crash", "7@5", "--late", "2@4", "--cut", "1@2:6",
                                 "--drop", "0.1", "--train-time", "2"])
    assert faults.crashes == (Crash(3, 5, 10), Crash(7, 5)) and faults.late == (LateJoin(2, 4),)
    assert faults.cuts == (Cut(1, 2, 6),) and faults.drop == 0.1 and faults.train_time == 2.0


def test_the_partition_default_follows_the_data():
    assert parse(LearningConfig, ["--data", "heart"]).partition == "sites" == default_partition("heart")
    assert parse(LearningConfig, []).partition == "dirichlet:0.5"
    assert parse(LearningConfig, ["--data", "heart", "--partition", "iid"]).partition == "iid"


@pytest.mark.parametrize("config_cls, argv, field", [
    (LearningConfig, ["--rounds", "0"], "rounds"),
    (LearningConfig, ["--lr", "-1"], "lr"),
    (LearningConfig, ["--optimizer", "rmsprop"], "optimizer"),
    (LearningConfig, ["--partition", "dirichlet:x"], "partition"),
    (LearningConfig, ["--aggregator", "krum"], "aggregator"),
    (TimingConfig, ["--quorum", "0"], "quorum"),
    (TimingConfig, ["--heartbeat", "40"], "heartbeat"),
    (TimingConfig, ["--deadline-max", "0"], "deadline_max"),
    (TimingConfig, ["--deadline-min", "30", "--deadline-max", "20"], "deadline_min"),
    (TimingConfig, ["--isolation-wait", "-1"], "isolation_wait"),
    (OutputConfig, ["--eval-every", "0"], "eval_every"),
    (SimSetup, ["--peers", "0"], "peers"),
    (SimSetup, ["--arms", "swarm,oracle"], "arms"),
    (SimSetup, ["--topology", "moebius"], "topology"),
    (LaunchSetup, ["--timeout", "0"], "timeout"),
    (FaultConfig, ["--crash", "3"], "crash"),
    (FaultConfig, ["--drop", "1"], "drop"),
    (FaultConfig, ["--attack", "3:nope"], "attack"),
])
def test_a_bad_value_is_a_config_error_naming_the_field(config_cls, argv, field):
    with pytest.raises(ConfigError) as caught:
        parse(config_cls, argv)
    assert caught.value.field == field and str(caught.value).startswith(f"{field}: ")


def test_every_option_is_declared_once_per_command():
    for name, add in COMMANDS.items():
        parser = argparse.ArgumentParser()
        add(parser)  # argparse itself refuses an option string added twice
        assert parser.parse_args(REQUIRED.get(name, []))


# ------------------------------------------------------------------ the README's defaults

REQUIRED = {"peer": ["--key", "k", "--site", "0", "--sites", "2", "--state-dir", "s"]}


def code_defaults(command: str) -> dict[str, str]:
    """``--flag -> default`` of ``medswarm COMMAND`` as its parser has them, in README notation."""
    parser = argparse.ArgumentParser()
    COMMANDS[command](parser)
    out = {}
    for action in parser._actions:
        flags = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
        if flags:
            out[flags[0]] = cell(action)
    if "--partition" in out:  # decided by the data: one function says how
        out["--partition"] = f"{default_partition('breastmnist')} ({default_partition('heart')} for heart)"
    return out


def cell(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0:
        return "off"
    if action.default in (None, []):
        return "none"
    return str(action.default)


def same(documented: str, code: str) -> bool:
    try:
        return float(documented) == float(code)
    except ValueError:
        return documented == code


def readme_table() -> dict[str, dict[str, str]]:
    """The README's options table: ``{command: {flag: default}}`` ("–": not an option there)."""
    section = README.split("## Options and their defaults", 1)[1].split("\n\n|", 1)[1]
    lines = ("|" + section).split("\n\n", 1)[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    table: dict[str, dict[str, str]] = {c: {} for c in header[1:4]}
    for line in lines[2:]:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        for command, value in zip(header[1:4], cells[1:4]):
            if value != "–":
                table[command][cells[0]] = value
    return table


def test_the_readme_table_lists_every_option_of_every_command_with_its_default():
    table = readme_table()
    assert set(table) == set(COMMANDS)
    for command in COMMANDS:
        code = code_defaults(command)
        assert set(table[command]) == set(code) - {"--config"}, command
        wrong = {flag: (doc, code[flag]) for flag, doc in table[command].items() if not same(doc, code[flag])}
        assert not wrong, f"{command}: README (documented, code) differ: {wrong}"


def test_the_readme_usage_block_and_inline_defaults_are_the_code_defaults():
    usage = README.split("medswarm simulate [", 1)[1].split("```", 1)[0]
    pairs = re.findall(r"\[(--[a-z0-9-]+) ([^\]\s]+)\]", "[" + usage)
    assert len(pairs) >= 15
    sim = code_defaults("simulate")
    assert [(f, v) for f, v in pairs if not v.isupper() and not same(v, sim[f])] == []
    inline = re.findall(r"`(--[a-z0-9-]+)(?: [A-Z]+)?` \(default ([^;)]+)[;)]", README)
    assert len(inline) >= 10
    # a value documented inline is the default of some command that has the option
    ok = {(flag, value) for command in COMMANDS for flag, value in code_defaults(command).items()}
    wrong = [(f, v) for f, v in inline
             if not any(flag == f and same(re.sub(r" s$", "", v), value) for flag, value in ok)]
    assert wrong == []
