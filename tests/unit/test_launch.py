"""The pure parts of ``medswarm launch``: who dials whom, log parsing, collecting rows."""

from __future__ import annotations

import json

import pytest

from peers.launch import LaunchedPeer, LaunchError, bootstrap_for, degree, parse_log_line, read_rows


@pytest.mark.parametrize("n", [2, 3, 4, 7])
@pytest.mark.parametrize("topology", ["ring", "chain", "full"])
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
    expected = {"chain": n - 1, "ring": n if n > 2 else 1, "full": n * (n - 1) // 2}[topology]
    assert len(links) == expected
    assert sum(degree(i, n, topology) for i in range(n)) == 2 * len(links)


def test_ring_degree_is_two_for_everyone():
    assert [degree(i, 5, "ring") for i in range(5)] == [2] * 5


def test_unknown_topology_is_a_launch_error():
    with pytest.raises(LaunchError, match="unknown topology"):
        bootstrap_for(1, 3, "star")


def test_round_and_stop_lines_update_the_live_view(tmp_path):
    peer = LaunchedPeer(0, "hospital-0", tmp_path)
    parse_log_line(peer, "2026 INFO medswarm.peer event=round peer=12D3 round=4 loss=0.5 metric=0.61 distance=0.02")
    assert (peer.round, peer.metric, peer.distance, peer.state) == (4, 0.61, 0.02, "running")
    parse_log_line(peer, "2026 INFO medswarm.peer event=round peer=12D3 round=5 loss=None metric=None distance=None")
    assert (peer.round, peer.metric, peer.distance) == (5, None, None)
    parse_log_line(peer, "2026 INFO medswarm.peer event=stop peer=12D3 round=9 reason=max-rounds")
    assert peer.state == "stopping at 9"
    parse_log_line(peer, "2026 INFO gossip event=served peer=12D3 round=77")
    assert peer.round == 5


def test_rows_keep_the_newest_per_round_and_skip_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"round": 0, "auroc": 0.5}, {"round": 1, "auroc": 0.6}, {"round": 1, "auroc": 0.7}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"round": 2, "auro')
    assert read_rows(path) == [{"round": 0, "auroc": 0.5}, {"round": 1, "auroc": 0.7}]
    assert read_rows(tmp_path / "missing.jsonl") == []
