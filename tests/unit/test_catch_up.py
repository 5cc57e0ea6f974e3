"""Unit tests of ``CatchUp``: buffering announcements of phases ahead, fetching the model
furthest ahead, and what the adoption keeps of the peer's own model."""

from __future__ import annotations

from gossip.control import Announce
from swarm.catch_up import CatchUp, skipped_phases
from swarm.protocol_types import Adopt, Fetch, FetchDone, ProtocolConfig, ProtocolStats

CONFIG = ProtocolConfig(gossip_steps=2, catchup_lag=2, stale_weight=0.25, fetch_timeout=3.0)


def ann(sender: str, round_: int, step: int = 0) -> Announce:
    return Announce(sender, round_, step, f"{round_:032x}", 10, 5, 2)


def part() -> tuple[CatchUp, ProtocolStats]:
    stats = ProtocolStats()
    return CatchUp(CONFIG, stats), stats


def test_no_catch_up_for_a_neighbour_less_than_catchup_lag_ahead():
    catch_up, _ = part()
    catch_up.buffer("b", ann("b", 1))
    assert catch_up.check(0, False, 1.0) == [] and not catch_up.active


def test_the_model_furthest_ahead_is_fetched_with_the_full_fetch_timeout():
    catch_up, _ = part()
    for sender, round_ in (("b", 2), ("c", 4), ("d", 3)):
        catch_up.buffer(sender, ann(sender, round_))
    best = ann("c", 4)
    assert catch_up.check(0, False, 1.0) == [Fetch("c", 4, 0, best.digest, 10, 3.0, True)]
    assert catch_up.active and catch_up.due == 4.0


def test_one_catch_up_at_a_time_and_none_once_stopped():
    catch_up, _ = part()
    catch_up.buffer("b", ann("b", 5))
    assert catch_up.check(0, True, 1.0) == []
    catch_up.check(0, False, 1.0)
    assert catch_up.check(0, False, 1.1) == []


def test_a_successful_fetch_adopts_keeping_stale_weight_of_the_own_model():
    catch_up, stats = part()
    catch_up.buffer("b", ann("b", 5))
    catch_up.check(0, False, 1.0)
    done = FetchDone("b", 5, 0, True)
    assert catch_up.matches(done) and not catch_up.matches(FetchDone("b", 5, 1, True))
    assert catch_up.settle(done, 0, False) == Adopt("b", 5, 0.25)
    assert stats.catch_ups == 1 and not catch_up.active


def test_a_stopped_neighbours_final_model_alone_is_awaited_then_mixed_never_taken_whole():
    catch_up, _ = part()
    catch_up.buffer("b", ann("b", 5, step=CONFIG.gossip_steps))
    assert catch_up.check(0, False, 1.0) == [] and catch_up.timer == 1.0 + CONFIG.heartbeat
    assert [f.peer for f in catch_up.check(0, False, 1.0 + CONFIG.heartbeat)] == ["b"]
    assert catch_up.settle(FetchDone("b", 5, 2, True), 0, False) == Adopt("b", 5, 0.25)


def test_final_models_offered_by_several_neighbours_are_fetched_from_up_to_three():
    catch_up, _ = part()
    for sender in ("e", "d", "c", "b"):
        catch_up.buffer(sender, ann(sender, 5, step=CONFIG.gossip_steps))
    assert sorted(f.peer for f in catch_up.check(0, False, 1.0)) == ["b", "c", "d"]
    assert catch_up.settle(FetchDone("d", 5, 2, True), 0, False) is True
    timed_out = catch_up.timed_out(1.0 + CONFIG.fetch_timeout)
    assert timed_out is not None and timed_out.sender == "b" and not timed_out.ok
    assert catch_up.settle(timed_out, 0, False) is True
    assert catch_up.settle(FetchDone("c", 5, 2, True), 0, False) == Adopt("c", 5, 0.0, ("d",))
    assert not catch_up.active


def test_a_failed_fetch_forgets_that_announcement_so_the_next_best_is_tried():
    catch_up, stats = part()
    catch_up.buffer("b", ann("b", 5))
    catch_up.buffer("c", ann("c", 4))
    catch_up.check(0, False, 1.0)
    timeout = catch_up.timed_out(4.0)
    assert catch_up.timed_out(3.9) is None and timeout == FetchDone("b", 5, 0, False, "timeout")
    assert catch_up.settle(timeout, 0, False) is None
    assert stats.fetch_failures == 1
    assert [a.peer for a in catch_up.check(0, False, 4.0)] == ["c"]


def test_no_adoption_when_the_peer_came_close_meanwhile():
    catch_up, stats = part()
    catch_up.buffer("b", ann("b", 5))
    catch_up.check(0, False, 1.0)
    assert catch_up.settle(FetchDone("b", 5, 0, True), 4, False) is None
    assert stats.catch_ups == 0


def test_take_returns_the_phase_in_arrival_order_and_drops_older_phases():
    catch_up, _ = part()
    catch_up.buffer("c", ann("c", 2))
    catch_up.buffer("b", ann("b", 1))
    catch_up.buffer("b", ann("b", 2))
    catch_up.buffer("d", ann("d", 3))
    assert [s for s, _ in catch_up.take((2, 0))] == ["c", "b"]
    assert catch_up.take((2, 0)) == [] and catch_up.take((1, 0)) == []
    assert [s for s, _ in catch_up.take((3, 0))] == ["d"]


def test_skipped_phases_run_from_the_current_phase_through_the_target_round():
    assert skipped_phases((1, 1), 3, 2) == [(1, 1), (2, 0), (2, 1), (3, 0), (3, 1)]
