"""``--attack PEER:KIND[:PARAM]``: parsing, validation against the swarm, the command line."""

from __future__ import annotations

import argparse

import pytest

from peers.cli import main
from peers.simulate_options import add_arguments as add_simulate_arguments
from swarm.attacks import KINDS, Attack, by_peer, parse_attack
from swarm.errors import ConfigError
from swarm.faults import Crash, Cut, FaultConfig, LateJoin
from swarm.options import from_args, to_argv


@pytest.mark.parametrize("text, attack", [
    ("3:scale:5", Attack(3, "scale", 5.0)),
    ("0:signflip", Attack(0, "signflip")),
    (" 1:noise:0.25 ", Attack(1, "noise", 0.25)),
    ("2:zeros", Attack(2, "zeros")),
    ("2:alie", Attack(2, "alie")),
    ("2:alie:0.5", Attack(2, "alie", 0.5)),
    ("4:catchup", Attack(4, "catchup")),
    ("4:forge-stop", Attack(4, "forge-stop")),
    ("4:forge-progress:20", Attack(4, "forge-progress", 20.0)),
    ("5:flood", Attack(5, "flood")),
    ("5:scale:-2", Attack(5, "scale", -2.0)),
])
def test_an_attack_is_parsed_into_a_typed_value(text, attack):
    assert parse_attack(text) == attack


def test_optional_parameters_have_their_documented_defaults():
    assert parse_attack("1:alie").value == 1.0
    assert parse_attack("1:flood").value == 500
    assert parse_attack("1:forge-progress").value == 200
    assert parse_attack("1:flood:7").value == 7


@pytest.mark.parametrize("text", ["3:scale:5", "0:signflip", "1:noise:0.1234567", "2:alie:0.5", "4:flood:30",
                                  "6:forge-progress", "7:scale:1e-09"])
def test_the_text_of_an_attack_parses_back_to_it(text):
    attack = parse_attack(text)
    assert parse_attack(str(attack)) == attack


@pytest.mark.parametrize("text", [
    "3", "3:", "x:signflip", "-1:signflip", "3:bogus", "3:scale", "3:noise", "3:signflip:2", "3:catchup:1",
    "3:noise:0", "3:noise:-1", "3:alie:-0.5", "3:flood:0", "3:flood:2.5", "3:forge-progress:100000",
    "3:scale:nan", "3:scale:inf", "3:scale:abc", "3:scale:5:6", "3:SIGNFLIP",
])
def test_a_malformed_attack_is_a_config_error_naming_the_option(text):
    with pytest.raises(ConfigError) as caught:
        parse_attack(text)
    assert caught.value.field == "attack" and str(caught.value).startswith("attack: ")
    assert "\n" not in str(caught.value)


def test_every_kind_is_documented_in_the_help_text():
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    (action,) = [a for a in parser._actions if "--attack" in a.option_strings]
    assert all(kind in action.help for kind in KINDS)


def parse_faults(argv):
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    args = parser.parse_args(argv)
    return from_args(FaultConfig, args)


def test_attack_is_repeatable_and_keeps_the_order_given():
    faults = parse_faults(["--attack", "3:scale:5", "--attack", "3:flood:10", "--attack", "1:forge-stop"])
    assert faults.attacks == (Attack(3, "scale", 5.0), Attack(3, "flood", 10.0), Attack(1, "forge-stop"))
    assert by_peer(faults.attacks) == {3: (Attack(3, "scale", 5.0), Attack(3, "flood", 10.0)),
                                       1: (Attack(1, "forge-stop"),)}
    assert parse_faults([]).attacks == ()


def test_fault_options_with_attacks_survive_to_argv_and_back():
    faults = FaultConfig(drop=0.1, crashes=(Crash(3, 5, 10), Crash(7, 5)), late=(LateJoin(2, 4),),
                         cuts=(Cut(1, 2, 6),), attacks=(Attack(0, "noise", 0.5), Attack(0, "catchup"),
                                                       Attack(4, "alie")))
    assert parse_faults(to_argv(faults)) == faults


@pytest.mark.parametrize("attacks, peers, says", [
    ((Attack(8, "signflip"),), 8, "peer 8 does not exist"),
    ((Attack(1, "signflip"), Attack(1, "scale", 2.0)), 8, "only one poisoned model"),
    ((Attack(1, "flood"), Attack(1, "flood", 3.0)), 8, "same kind twice"),
    ((Attack(0, "flood"), Attack(1, "zeros")), 2, "at least one peer must stay honest"),
])
def test_attacks_are_checked_against_the_swarm(attacks, peers, says):
    with pytest.raises(ConfigError) as caught:
        FaultConfig(attacks=attacks).validate_for(peers)
    assert caught.value.field == "attack" and says in str(caught.value)


def test_a_message_attack_may_join_a_model_attack_on_one_peer():
    FaultConfig(attacks=(Attack(1, "signflip"), Attack(1, "forge-stop"), Attack(1, "flood"))).validate_for(3)


@pytest.mark.parametrize("argv, says", [
    (["--attack", "9:signflip"], "attack: peer 9 does not exist"),
    (["--attack", "2:scale"], "attack: scale needs a parameter"),
])
def test_the_command_line_ends_a_bad_attack_with_one_line_and_exit_code_2(argv, says, capsys, tmp_path):
    code = main(["simulate", "--peers", "4", "--quiet", "--out", str(tmp_path), *argv])
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1
    assert not (tmp_path / "report.json").exists()
