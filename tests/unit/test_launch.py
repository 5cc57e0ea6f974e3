"""The pure parts of ``medswarm launch``: who dials whom, the live view from ``/status``."""

from __future__ import annotations

import json
import math

import pytest

from peers.launch import LaunchedPeer, LaunchError, bootstrap_for, degree, update_from_status
from peers.runner import RunnerView
from peers.status import PeerStatus, status_snapshot
from swarm.schedule import onepeer_neighbours


@pytest.mark.parametrize("n", [2, 3, 4, 7])
@pytest.mark.parametrize("topology", ["ring", "chain", "full", "onepeer-exp"])
def test_bootstrap_dials_only_earlier_peers_and_connects_everyone(n, topology):
    links = {(min(i, j), max(i, j)) for i in range(n) for j in bootstrap_for(i, n, topology)}
    assert all(j < i for i in range(n) for j in bootstrap_for(i, n, topology))
    # connected: every peer reaches peer 0
    reach, frontier = {0}, [0]
    while frontier:
        k = frontier.pop()
        for a, b in links:
            for x, y in ((a, b), (b, a)):
                if x == k and y not in reach:
                    reach.add(y)
                    frontier.append(y)
    assert reach == set(range(n))
    hypercube = sum(len(v) for v in onepeer_neighbours(n).values()) // 2
    expected = {"chain": n - 1, "ring": n if n > 2 else 1, "full": n * (n - 1) // 2, "onepeer-exp": hypercube}[topology]
    assert len(links) == expected
    assert sum(degree(i, n, topology) for i in range(n)) == 2 * len(links)


def test_onepeer_exp_links_every_partner_of_the_schedule():
    assert [degree(i, 8, "onepeer-exp") for i in range(8)] == [3] * 8
    assert bootstrap_for(7, 8, "onepeer-exp") == [3, 5, 6]


def test_ring_degree_is_two_for_everyone():
    assert [degree(i, 5, "ring") for i in range(5)] == [2] * 5


def test_unknown_topology_is_a_launch_error():
    with pytest.raises(LaunchError, match="unknown topology"):
        bootstrap_for(1, 3, "star")


def running_status(**view_fields):
    """A ``/status`` document as a running peer serves it (the peer's own writer, through JSON)."""
    base = dict(round=5, neighbours=("b",), suspected=(), loss=0.4, metric=0.61, distance=0.02, voted=False,
                stop_round=None, reason="", rounds_completed=5, rejected={}, bad_control=0, exited=False)
    status = PeerStatus("12D3", site=0, name="hospital-0")
    status.state = "running"
    return json.loads(json.dumps(status_snapshot(status, RunnerView(**{**base, **view_fields}))))


def test_the_live_view_follows_the_peers_status_document(tmp_path):
    peer = LaunchedPeer(0, "hospital-0", tmp_path)
    update_from_status(peer, json.loads(json.dumps(status_snapshot(PeerStatus("12D3", 0, start_round=3), None))))
    assert (peer.state, peer.round, peer.rounds_completed) == ("starting", 3, 0)
    update_from_status(peer, running_status())
    assert (peer.state, peer.round, peer.rounds_completed, peer.metric, peer.distance) == \
        ("running", 5, 5, 0.61, 0.02)
    update_from_status(peer, running_status(round=6, metric=math.nan, distance=None))
    assert (peer.round, peer.metric, peer.distance) == (6, None, None)
    update_from_status(peer, running_status(round=9, stop_round=9, voted=True, reason="max-rounds"))
    assert peer.state == "stopping at 9"


def test_a_peer_that_does_not_answer_keeps_its_last_figures(tmp_path):
    peer = LaunchedPeer(0, "hospital-0", tmp_path)
    update_from_status(peer, running_status())
    update_from_status(peer, None)
    assert (peer.state, peer.round, peer.metric) == ("running", 5, 0.61)


def test_a_failed_peers_own_error_line_is_quoted(tmp_path):
    from peers.launch import last_error

    log = tmp_path / "peer.log"
    log.write_text("2026 INFO peer starting\nmedswarm: error: data.csv, row 3: no such file img.png\n")
    assert last_error(log) == "data.csv, row 3: no such file img.png"
    log.write_text("2026 INFO peer starting\nTraceback (most recent call last):\n")
    assert last_error(log) is None
    assert last_error(tmp_path / "absent.log") is None
