"""A private peer killed between rounds and restarted keeps its privacy ledger (real processes)."""

from __future__ import annotations

import json
import signal

import pytest

from swarm.checkpoint import CheckpointStore
from swarm.simulate import train_seed
from tests.integration.test_peer_processes import finish, start, wait_for_line

pytestmark = pytest.mark.slow

#: a budget the run never reaches (the test is about the ledger, not about running out)
DP = ("--dp-epsilon", "50", "--dp-accountant", "rdp")


def ledger(tmp_path, peer_id):
    state = CheckpointStore(tmp_path / "state-b").load_latest(peer_id)
    journal = tmp_path / "state-b" / "dp-ledger.json"
    return (state.extra["dp"] if state is not None else None,
            json.loads(journal.read_text()) if journal.exists() else None, state)


def test_a_killed_private_peer_resumes_without_forgetting_or_recounting_a_round(hospitals):
    tmp_path, ids = hospitals
    a, addr_a = start(tmp_path, "a", 0, rounds=40, extra=DP)
    b, _ = start(tmp_path, "b", 1, addr_a, rounds=40, extra=DP)
    wait_for_line(b, "event=round peer=")
    b.kill()  # SIGKILL: no clean-up, maybe between the charge of a round and its checkpoint
    finish(b, timeout=30)  # reaps it and closes its pipes
    ckpt_before, journal_before, _ = ledger(tmp_path, ids["b"])
    assert journal_before is not None and journal_before["entries"]
    spent_before = set(journal_before["entries"]) | set((ckpt_before or {}).get("entries", {}))

    b, _ = start(tmp_path, "b", 1, addr_a, rounds=40, extra=DP)
    lines = wait_for_line(b, "event=round peer=")
    wait_for_line(b, "event=round peer=")  # a second round: past whatever was in flight at the kill
    b.send_signal(signal.SIGTERM)
    code, _, err = finish(b, timeout=60)
    a.send_signal(signal.SIGTERM)
    finish(a, timeout=60)
    assert code == 130, err[-2000:]
    assert any("event=dp-plan" in line and "rounds_charged=0" not in line for line in lines), lines[:20]

    ckpt_after, journal_after, state = ledger(tmp_path, ids["b"])
    entries = set(ckpt_after["entries"]) | set(journal_after["entries"])
    assert spent_before < entries  # nothing forgotten, the rounds after the restart added
    assert ckpt_after["key"] == journal_before["key"]  # the same secret randomness
    # one entry per round at most: a round retrained from the same weights was not charged again
    rounds = {str(train_seed(0, 1, r)): r for r in range(state.round + 2)}
    assert not any("#" in tag for tag in entries), entries
    assert entries <= set(rounds), (entries, rounds)
    assert {tag for tag, r in rounds.items() if r <= state.round} <= entries  # every checkpointed round counted
