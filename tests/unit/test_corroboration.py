"""A hostile member's word alone moves nothing: signed records, corroborated catch-up and stop.

One peer "a" with neighbours "b" and "c" (and members "d", "h" further away), all with real
Ed25519 keys (``sim_keyring``), driven by hand as in ``test_protocol``; the default
``corroboration`` of 2.
"""

from __future__ import annotations

import dataclasses

from gossip.bitset import pack_bits
from gossip.control import Announce, Progress, StopDecision, Summary, decode_control, encode_control
from gossip.signing import KeyVerifier, RecordSigner, sim_keyring
from swarm.convergence import ConvergenceConfig
from swarm.protocol import (
    Adopt, ControlIn, Fetch, FetchDone, PeerProtocol, ProtocolConfig, SendControl, Stop, TimerFired,
)
from swarm.protocol_types import Reject
from swarm.round_counter import DeadlineConfig

MEMBERS = ["a", "b", "c", "d", "h"]
SIGNERS, VERIFY = sim_keyring(MEMBERS, seed=7)
CONFIG = ProtocolConfig(
    gossip_steps=1, deadline=DeadlineConfig(minimum=0.1, initial=1.0, maximum=5.0),
    suspect_after=10.0, heartbeat=2.0, fetch_timeout=0.5, fetch_retries=1,
    convergence=ConvergenceConfig(max_rounds=20, window=2, min_rounds=2),
)


def peer(config: ProtocolConfig = CONFIG) -> PeerProtocol:
    proto = PeerProtocol("a", ["b", "c"], config, is_member=set(MEMBERS).__contains__,
                         signer=SIGNERS["a"], verify=VERIFY)
    proto.start(0.0)
    return proto


def record(origin: str, seq: int, round_: int, converged: bool = False,
           signer: RecordSigner | None = None) -> Progress:
    msg = Progress(origin, seq, round_, 0.5, 0.5, 0.01, converged, int(converged), 5)
    return (signer or SIGNERS[origin]).sign(msg)


def decision(origin: str, seq: int, stop_round: int, signer: RecordSigner | None = None) -> StopDecision:
    return (signer or SIGNERS[origin]).sign(StopDecision(origin, seq, stop_round, "converged", 5))


def seen(proto: PeerProtocol, *members: str, via: str = "b", now: float = 0.6) -> None:
    """``via``'s summary saying it saw ``members`` alive (liveness travels in summaries)."""
    bits = sum(1 << proto.membership.index(m) for m in members)
    proto.handle(ControlIn(via, Summary(via, proto.membership.view.epoch, (pack_bits(bits),), pack_bits(0))), now)


def final_offer(sender: str, round_: int) -> ControlIn:
    return ControlIn(sender, Announce(sender, round_, 1, "ab" * 16, 1000, 50, 2))


def rejected(actions, reason: str) -> int:
    return sum(isinstance(a, Reject) and a.reason == reason for a in actions)


# ---------------------------------------------------------------- signatures
def test_own_records_go_out_signed_and_verify_after_the_wire():
    actions = peer().start(0.0)
    records = [a.msg for a in actions if isinstance(a, SendControl) and isinstance(a.msg, Progress)]
    assert records and all(VERIFY(decode_control(encode_control(m))) for m in records)


def test_a_record_forged_in_another_members_name_is_rejected_unforwarded_and_not_marked_seen():
    proto = peer()
    forged = record("d", 99, 15, converged=True, signer=SIGNERS["h"])  # h signs as d
    actions = proto.handle(ControlIn("b", forged), 0.1)
    assert rejected(actions, "bad-signature") == 1
    assert not [a for a in actions if isinstance(a, SendControl)]  # not flooded on
    assert "d" not in proto.convergence.votes and proto.membership.member_round("d", -1) == -1
    # d's own record with the same seq still gets through: the forgery did not use it up
    genuine = proto.handle(ControlIn("b", record("d", 99, 3)), 0.2)
    assert [a.peer for a in genuine if isinstance(a, SendControl)] == ["c"]
    assert proto.membership.member_round("d", -1) == 3


def test_an_unsigned_record_or_one_altered_in_transit_is_rejected():
    proto = peer()
    unsigned = Progress("d", 1, 3, None, None, None, True, 1, 5)
    altered = dataclasses.replace(record("d", 2, 3), round=19)
    relayed = dataclasses.replace(record("d", 3, 4), ttl=2)  # relays lower ttl: still valid
    actions = [*proto.handle(ControlIn("b", unsigned), 0.1), *proto.handle(ControlIn("b", altered), 0.2)]
    assert rejected(actions, "bad-signature") == 2
    assert not rejected(proto.handle(ControlIn("b", relayed), 0.3), "bad-signature")


def test_a_libp2p_peer_id_is_its_own_verification_key():
    from gossip.libp2p_identity import NodeKey

    key = NodeKey.generate()
    signer = RecordSigner(key.peer_id, key.key_pair.private_key.to_bytes())
    other = NodeKey.generate()
    good = signer.sign(Progress(key.peer_id, 1, 2, None, None, None, False, 0, 3))
    impostor = signer.sign(Progress(other.peer_id, 1, 2, None, None, None, False, 0, 3))
    verify = KeyVerifier()
    assert verify(good) and not verify(impostor)


# ---------------------------------------------------------------- catch-up
def test_one_neighbour_claiming_to_be_far_ahead_does_not_start_a_catch_up():
    proto = peer()
    actions = proto.handle(ControlIn("b", Announce("b", 15, 0, "ab" * 16, 1000, 50, 2)), 0.1)
    assert not [a for a in actions if isinstance(a, Fetch)]
    # a second member's signed progress at that round corroborates it: now it catches up
    actions = proto.handle(ControlIn("c", record("d", 1, 15)), 0.2)
    assert [(f.peer, f.round, f.catch_up) for f in actions if isinstance(f, Fetch)] == [("b", 15, True)]


def test_a_final_model_from_one_member_is_awaited_a_heartbeat_then_mixed_not_taken_whole():
    proto = peer()
    proto.handle(ControlIn("c", record("d", 1, 6)), 0.1)  # the round is corroborated ...
    assert not [a for a in proto.handle(final_offer("b", 6), 0.2) if isinstance(a, Fetch)]
    assert proto.next_timer() <= 0.2 + CONFIG.heartbeat  # ... it waits for a second offer
    fetches = [a for a in proto.handle(TimerFired(), 0.2 + CONFIG.heartbeat) if isinstance(a, Fetch)]
    assert [(f.peer, f.round, f.catch_up) for f in fetches] == [("b", 6, True)]
    adopt = [a for a in proto.handle(FetchDone("b", 6, 1, True), 2.5) if isinstance(a, Adopt)]
    assert adopt == [Adopt("b", 6, CONFIG.stale_weight)] and proto.stop_round is None


def test_final_models_of_two_members_are_fetched_both_and_combined_by_median():
    proto = peer()
    proto.handle(final_offer("c", 6), 0.1)
    fetches = [a for a in proto.handle(final_offer("b", 6), 0.2) if isinstance(a, Fetch)]
    assert sorted(f.peer for f in fetches) == ["b", "c"]
    assert proto.handle(FetchDone("c", 6, 1, True), 0.3) == []  # b's still on its way
    actions = proto.handle(FetchDone("b", 6, 1, True), 0.4)
    # an honest and a hostile final model: neither is taken whole, the median with the own one is
    assert [a for a in actions if isinstance(a, Adopt)] == [Adopt("b", 6, 0.0, ("c",))]
    assert Stop(6, proto.stop_reason) in actions and proto.stopped_at == 6


def test_a_final_model_source_that_fails_leaves_the_one_that_arrived_mixed():
    proto = peer()
    proto.handle(final_offer("b", 6), 0.1)
    proto.handle(final_offer("c", 6), 0.2)
    proto.handle(FetchDone("c", 6, 1, False), 0.3)
    adopt = [a for a in proto.handle(FetchDone("b", 6, 1, True), 0.4) if isinstance(a, Adopt)]
    assert adopt == [Adopt("b", 6, CONFIG.stale_weight)]


# ---------------------------------------------------------------- stop
def test_a_stop_in_another_members_name_is_rejected():
    proto = peer()
    forged = decision("b", 2**63 - 1, 1, signer=SIGNERS["h"])
    actions = proto.handle(ControlIn("b", forged), 0.1)
    assert rejected(actions, "bad-signature") == 1 and proto.stop_round is None
    assert proto.membership.fresh("stop:b", 5)  # b's later decisions are not shadowed


def test_one_members_signed_stop_waits_for_the_swarms_votes():
    proto = peer()
    proto.handle(ControlIn("b", record("h", 1, 1, converged=True)), 0.1)
    proto.handle(ControlIn("b", decision("h", 2, 1)), 0.2)
    assert proto.stop_round is None  # h alone has voted: a minority, below corroboration
    for i, origin in enumerate(("b", "c", "d")):
        proto.handle(ControlIn("b", record(origin, 1, 1, converged=True)), 0.3 + i / 10)
    assert proto.stop_round is None  # their signed votes, but only b is known alive
    seen(proto, "b", "c", "d", "h")  # b's summary: it has seen them all alive
    assert proto.stop_round == 1  # now a majority of the live members has voted converged
