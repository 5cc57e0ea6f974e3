"""The docker-compose scenario run for real: one Linux network namespace per hospital.

``scripts/netns_swarm.py`` starts every compose service's entrypoint and command in its own
namespace with the service's static address (see its docstring). Each test runs the swarm
once with one fault and asserts on what happened: the others keep advancing rounds while
a hospital is gone, it works with the swarm again after, every checkpoint decodes, and all
hospitals stop at the same round. Skipped, with the reason, unless running as root with
``ip`` (and ``iptables`` for the loss scenario). Only the namespaces' own addresses and
loopback are used.
"""

from __future__ import annotations

import pytest

from tests.scripts import load_script

netns = load_script("netns_swarm")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(netns.host_problem() is not None,
                       reason=f"namespace tests: {netns.host_problem()}"),
]

#: short timeouts so that a fault is noticed in seconds; enough rounds to outlast a restart
FAST = ["--heartbeat", "0.5", "--suspect-after", "3"]
# The others may converge while a hospital is gone (rounds take about 0.4 s here, a cut or a
# restart several seconds), and a cut link carries traffic again only at TCP's next
# retransmission, up to about 7 s after it is restored. The compose file's --linger 30 (see
# tests/unit/test_compose.py) keeps stopped hospitals that long for one that has not reached
# the stop round, which then catches up to their final model instead of holding alone.


def run(tmp_path, fault, extra, **kw):
    scenario = netns.load_scenario()
    with netns.NetnsSwarm(scenario, tmp_path / "run", extra) as swarm:
        outcome = netns.run_scenario(swarm, fault, timeout=150, **kw)
    print(netns.summary(outcome))
    return outcome


def assert_stopped_together_with_sound_checkpoints(outcome):
    summary = netns.summary(outcome)
    assert set(outcome.exit_codes.values()) == {0}, summary
    assert all(outcome.reports.values()), summary
    stops = {r["stop_round"] for r in outcome.reports.values()}
    assert len(stops) == 1, summary
    (stop,) = stops
    for name, check in outcome.checkpoints.items():
        assert check.files >= 1 and not check.errors, (name, check)
        assert check.latest_round == stop, (name, check, summary)


def assert_others_advanced_without(outcome, advance):
    assert outcome.victim not in outcome.others()
    for name in outcome.others():
        assert outcome.rounds_at_restore[name] >= outcome.rounds_at_fault[name] + advance, outcome
    # and all of them did it, not only the victim's bootstrap
    assert len(outcome.others()) == len(outcome.exit_codes) - 1


def test_the_compose_scenario_runs_to_the_end_in_namespaces(tmp_path):
    outcome = run(tmp_path, "none", [])
    assert_stopped_together_with_sound_checkpoints(outcome)
    assert len(outcome.reports) == 4
    assert all(r["rounds_completed"] >= 1 for r in outcome.reports.values())
    assert len({r["peer_id"] for r in outcome.reports.values()}) == 4
    # the compose file's --rounds is only the fallback: the four hospitals agree they converged
    assert all(r["reason"].startswith("converged") for r in outcome.reports.values()), netns.summary(outcome)


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """hospital-c's link down for 5 s and until the others did 3 rounds, then back up."""
    return run(tmp_path_factory.mktemp("cut"), "cut", [*FAST, "--rounds", "100"], advance=3, outage=5)


def test_while_a_link_is_cut_the_others_go_on_and_every_hospital_ends_cleanly(cut):
    assert_others_advanced_without(cut, 3)
    summary = netns.summary(cut)
    assert set(cut.exit_codes.values()) == {0} and all(cut.reports.values()), summary
    for name, check in cut.checkpoints.items():
        assert check.files >= 1 and not check.errors, (name, check)
        assert check.latest_round == cut.reports[name]["stop_round"], (name, check, summary)


def test_after_a_cut_the_hospital_works_with_the_swarm_again_and_all_stop_together(cut):
    assert netns.rejoined(cut.victim_events_after, cut.victim_catch_ups_after), cut
    assert_stopped_together_with_sound_checkpoints(cut)


def test_a_killed_hospital_restarts_from_its_checkpoint_and_catches_up(tmp_path):
    # enough rounds that the others are still running when the restarted process is back
    outcome = run(tmp_path, "kill", [*FAST, "--rounds", "300"], advance=3, outage=0)
    assert_others_advanced_without(outcome, 3)
    resumed = outcome.victim_resumed_from
    assert resumed is not None and resumed >= outcome.rounds_at_fault[outcome.victim] - 1, outcome
    assert netns.rejoined(outcome.victim_events_after, outcome.victim_catch_ups_after), outcome
    assert_stopped_together_with_sound_checkpoints(outcome)


@pytest.mark.skipif(netns.host_problem(need_iptables=True) is not None,
                    reason=f"loss scenario: {netns.host_problem(need_iptables=True)}")
def test_five_percent_loss_and_latency_on_every_link(tmp_path):
    outcome = run(tmp_path, "loss", [*FAST, "--rounds", "30"], loss=0.05, delay=0.05)
    # the faults were really there: packets dropped at every hospital, links through the relay
    assert all(n > 0 for n in outcome.dropped_packets.values()), outcome.dropped_packets
    assert outcome.relay_connections >= 3
    assert_stopped_together_with_sound_checkpoints(outcome)
    assert all(r["rounds_completed"] >= 1 for r in outcome.reports.values())
