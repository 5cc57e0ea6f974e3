"""A hostile but allowed member against real ``medswarm peer`` processes on loopback.

The hostile peer runs in the test process: a ``Libp2pTransport`` with a consortium key
(so the handshake lets it in) whose weights handler ignores the size asked for. It
answers every announcement of an honest peer with its own announcement for the same
phase, each time backed by another kind of bad transfer, and starts with a few malformed
or forged control messages. The honest peers must reject and count each kind by reason,
never mix it, and still finish together.

Why "never mixed" is observable: the bad models carry a poison value, finite and under
the absolute validation bound (so only the transfer checks, or for ``scaled`` the relative
norm check, stand between it and the mix; ``wrong-round`` sends the initial model x1.5,
within the norm check) and a
large claimed sample count (so a mix would give it the full Metropolis weight, 1/3 with
two neighbours). One mix would put weights of about ``POISON / 3`` into the model; the
honest peers' final checkpoints must hold only small, finite weights.
``tests/unit/test_runner.py`` shows the same poison, honestly announced, is mixed.

Besides, it sends every kind of hostile control message, in bursts (``BURSTS``) that go
out on an honest peer's first announcement of a round, while it can still be fooled: stop
decisions and converged progress records of the last round forged under the honest peers'
names; its own validly signed decision to stop now and record claiming the last round,
converged (one forged vote more would corroborate both); a catch-up lure, a "final model"
of the last round that is the honest peer's own model fetched from it and sign-flipped (so
it passes every check of a transfer, and adopting it shows: the final model would point the
lure's way and score an AUROC of about 0.3); an announcement of 2**63-1 bytes; records of
invented non-member origins; and a flood of announcements and skips of phases ahead. The
honest peers must stop at the last round, keep their member table to the consortium, never
fetch the lure, count every forged record as ``bad-signature`` and every oversized
announcement before any transfer. Each of these checks was seen to fail with its defence
removed (signature check, stop corroboration, catch-up only to a corroborated round, the
consortium check of origins, the size and round checks of announcements).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
import trio

from gossip import libp2p_framing as fr
from gossip.codec import WeightsMessage, decode, digest, encode
from gossip.control import Announce, ControlMessage, Progress, Skip, StopDecision, decode_control, encode_control
from gossip.errors import CodecError, TransportError
from gossip.libp2p_identity import Consortium, NodeKey, load_key
from gossip.libp2p_streams import StreamReader, remote_peer, reset_quietly
from gossip.libp2p_transport import Libp2pConfig, Libp2pTransport
from gossip.signing import RecordSigner
from swarm.checkpoint import CheckpointStore
from swarm.config import LearningConfig
from swarm.partition import build_federation, parse_partition
from swarm.poison import sign_flipped
from swarm.training import TrainConfig, Trainer
from tests.integration.test_peer_processes import COMMON, finish, medswarm

pytestmark = pytest.mark.slow

POISON = 5000.0  # < the validation bound of 1e4
ROUNDS = 8
#: each kind of bad transfer and the reason a receiver must count it under
KINDS = {
    "garbage": "codec:bad-magic",
    "oversized": "oversized",
    "digest": "digest-mismatch",
    "wrong-round": "wrong-round",
    "nan": "non-finite",
    "shape": "tensor-shape",
    "scaled": "norm-ratio",
}
#: malformed or forged control messages sent once to each honest peer
BAD_CONTROLS = 3
#: the honest peers' exchanges per round (their default ``--gossip-steps``)
GOSSIP_STEPS = LearningConfig().gossip_steps
#: hops a flooded record may travel (what the peers use)
TTL = 16
#: the largest count on the wire (``gossip.control``): a stop's seq, an announced size
MAX_COUNT = 2**63 - 1
#: sequence numbers of records forged for other origins (above any a real peer uses)
FORGED_SEQ = 2**62
#: invented non-member origins of each sort (ids too long; valid keys of non-members)
INVENTED = 100
#: flooded messages of each sort
FLOOD = 30
#: duplicates of its own progress record in a flood (deduplicated, never counted)
DUPLICATES = 20
#: an announced size no receiver accepts (the flood's huge announcements)
HUGE = 2**40
#: (round, burst) sent to an honest peer on its first announcement of that round or later
BURSTS = ((1, "forge"), (2, "invent"), (3, "flood"), (ROUNDS // 2, "forge"))
#: what the hostile member sends an honest peer in all stays within the peer's control rate
#: limit even without refill (bursts of 500: ``Libp2pConfig.control_burst``), so every message
#: reaches its protocol and the counts below are the protocol's, not the rate limiter's
CONTROL_BUDGET = Libp2pConfig().control_burst
#: the honest peers' AUROC on the global test set is above this: 0.83 measured, the lure
#: taken whole 0.27 to 0.30, mixed half and half into the final model 0.43 to 0.68 (a
#: floor, not a control run without the hostile member, which would double the time)
AUROC_FLOOR = 0.7


def start(tmp_path: Path, name: str, site: int, bootstrap: str | None = None) -> tuple[subprocess.Popen, str]:
    """An honest peer that waits (up to 30 s) for its two neighbours, the other honest
    peer and the hostile one, before round 0: every phase then has all three."""
    args = ["-v", "peer", "--key", str(tmp_path / f"{name}.key"), "--consortium", str(tmp_path / "consortium.toml"),
            "--site", str(site), "--state-dir", str(tmp_path / f"state-{name}"), *COMMON,
            "--rounds", str(ROUNDS), "--wait-neighbours", "2", "--deadline-max", "30",
            "--final-agreement", "0"]  # the forged records aim at the stop round, the last trained one
    proc = medswarm(*args, *(["--bootstrap", bootstrap] if bootstrap else []))
    line = proc.stdout.readline()
    assert line.startswith("listening "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split()[1]


class HostileTransport(Libp2pTransport):
    """Serves whatever it offers in full, ignoring the size limit of the request, and
    remembers which digests each peer asked for (``requested``) and how many control messages
    it sent each (``sent``). ``pinned`` payloads are served for the whole run (the lures:
    ordinary offers are forgotten after ``max_offers``)."""

    requested: dict[str, set[str]]
    pinned: dict[str, bytes]
    sent: Counter

    async def send(self, peer: str, data: bytes) -> None:
        await super().send(peer, data)
        self.sent[peer] += 1

    async def _serve_weights(self, stream) -> None:
        reader = StreamReader(stream)
        try:
            key, _max_bytes = await fr.read_request(reader)
            self.requested.setdefault(remote_peer(stream), set()).add(key)
            data = self.pinned.get(key) or self._weights.get(key)
            if data is None:
                await stream.write(fr.encode_response_head(fr.NOT_FOUND, 0, key))
            else:
                await stream.write(fr.encode_response_head(fr.OK, len(data), key))
                await stream.write(bytes(data))
                with trio.move_on_after(5):
                    await fr.read_exactly(reader, 1, "acknowledgement")
            await stream.close()
        except Exception:  # noqa: BLE001 - the receiver hung up on us, as it should
            await reset_quietly(stream)


def reference_weights() -> tuple[str, dict[str, np.ndarray]]:
    """The honest peers' model id and initial weights (same construction as ``medswarm peer``)."""
    fed = build_federation("heart", 4, parse_partition("sites"), seed=0)
    trainer = Trainer(fed.input_shape, fed.num_classes, TrainConfig())
    return trainer.model_id, trainer.initial_weights(0)


def bad_transfer(kind: str, model_id: str, ref: dict[str, np.ndarray], sender: str,
                 round_: int) -> tuple[bytes, str, int]:
    """The bytes to offer for ``round_`` and the (digest, size) to announce for them."""
    poison = {k: np.full_like(v, POISON) for k, v in ref.items()}
    if kind == "wrong-round":  # within the norm check, so only the round check stops it
        poison = {k: v * 1.5 for k, v in ref.items()}
    if kind == "nan":
        poison = {k: np.full_like(v, np.nan) for k, v in ref.items()}
    if kind == "shape":
        poison = {k: np.zeros(v.shape[::-1] + (1,), v.dtype) for k, v in ref.items()}
    header_round = round_ + 1 if kind == "wrong-round" else round_
    data = encode(WeightsMessage(model_id, header_round, sender, 10_000, poison))
    if kind == "garbage":
        data = b"MSW0 this is not a weights message " * 20
    if kind == "oversized":
        return data, digest(data), len(data) // 2  # announces half of what it sends
    if kind == "digest":
        return data, digest(b"what was announced"), len(data)
    return data, digest(data), len(data)


# --- hostile control messages: each paired with what the receiver must count it as ---
#: None (it ignores it, or takes it as the harmless truth), "bad-signature" and
#: "oversized-announcement" (counted in its report's ``rejected``) or "bad-control"
Sent = list[tuple[ControlMessage, str | None]]


def forge(signer: RecordSigner, seqs: itertools.count, honest: list[str], receiver: str, round_: int,
          lure: Announce) -> Sent:
    """Stop decisions and converged progress records under the honest peers' names (signed
    with the hostile key, and unsigned: bad signatures; the receiver ignores its own name),
    its own valid decision to stop at ``round_`` and record claiming the last round,
    converged (so a single forged vote would corroborate the stop and the lure's round),
    the lure, and an announcement of 2**63-1 bytes."""
    me = signer.peer_id
    sent: Sent = []
    for origin in honest:
        counted = "bad-signature" if origin != receiver else None
        stop = StopDecision(origin, MAX_COUNT, 1, f"converged: {origin} says so", TTL)
        vote = Progress(origin, FORGED_SEQ + 2 * round_, ROUNDS - 1, 0.1, 0.1, 0.0, True, 100, TTL)
        sent += [(signer.sign(stop), counted), (replace(stop, seq=MAX_COUNT - 1), counted),
                 (signer.sign(vote), counted), (replace(vote, seq=vote.seq + 1), counted)]
    return sent + [
        (signer.sign(Progress(me, next(seqs), ROUNDS - 1, 0.1, 0.1, 0.0, True, 100, TTL)), None),
        (signer.sign(StopDecision(me, next(seqs), round_, "converged: 3 live members voted converged", TTL)), None),
        (lure, None),
        (Announce(me, round_ + 1, 0, "f" * 32, MAX_COUNT, 10_000, 2), "oversized-announcement"),
    ]


def invent(signer: RecordSigner, outsiders: list[RecordSigner], round_: int) -> Sent:
    """Converged records of the last round from invented origins: ids too long for a member
    (signed with the hostile key) and non-members' valid keys (validly signed)."""
    sent: Sent = []
    for i in range(INVENTED):
        origin = f"intruder-{round_}-{i}-".ljust(240, "x")
        sent.append((signer.sign(Progress(origin, 1 + round_, ROUNDS - 1, 0.1, 0.1, 0.0, True, 100, TTL)),
                     "bad-control"))
    for other in outsiders:
        sent.append((other.sign(Progress(other.peer_id, 1 + round_, ROUNDS - 1, 0.1, 0.1, 0.0, True, 100, TTL)),
                     "bad-control"))
    return sent


def flood(signer: RecordSigner, seqs: itertools.count, round_: int, size: int, rng: np.random.Generator) -> Sent:
    """Announcements of phases ahead with random digests (never served; never the lure's
    phase, so it stays buffered) or a huge size, skips of phases ahead, announcements and
    skips past the last round, and duplicates of one own progress record."""
    me = signer.peer_id

    def ahead(steps: int) -> tuple[int, int]:
        phase = (int(rng.integers(round_ + 1, ROUNDS)), int(rng.integers(0, steps)))
        return (phase[0], 0) if phase == (ROUNDS - 1, GOSSIP_STEPS) else phase

    sent: Sent = []
    for i in range(FLOOD):
        past = (ROUNDS + int(rng.integers(0, 8)), int(rng.integers(0, GOSSIP_STEPS)))
        sent += [(Announce(me, *ahead(GOSSIP_STEPS + 1), rng.bytes(16).hex(), size, 10_000, 2), None),
                 (Announce(me, *ahead(GOSSIP_STEPS + 1), rng.bytes(16).hex(), HUGE, 10_000, 2),
                  "oversized-announcement"),
                 (Skip(me, *ahead(GOSSIP_STEPS)), None),
                 (Announce(me, *past, rng.bytes(16).hex(), size, 10_000, 2) if i % 2 else Skip(me, *past),
                  "bad-control")]
    own = signer.sign(Progress(me, next(seqs), round_, 0.1, 0.1, 0.0, False, 0, TTL))
    return sent + [(own, None)] * DUPLICATES


@dataclass
class Hostile:
    """What the hostile member did to each honest peer."""

    #: the kinds of bad transfer each peer fetched
    served: dict[str, set[str]] = field(default_factory=dict)
    #: what each peer must have counted, by reason (see ``Sent``)
    expected: dict[str, Counter] = field(default_factory=dict)
    #: each peer's lures: digest -> the lure's weights
    lures: dict[str, dict[str, dict[str, np.ndarray]]] = field(default_factory=dict)
    #: the digests each peer fetched from the hostile member
    requested: dict[str, set[str]] = field(default_factory=dict)
    #: the bursts each peer was sent (see ``BURSTS``)
    bursts: dict[str, list[str]] = field(default_factory=dict)
    #: control messages sent to each peer
    sent: Counter = field(default_factory=Counter)
    #: each process's ``(code, stdout, stderr)``
    results: dict[str, tuple[int, str, str]] = field(default_factory=dict)


async def hostile_peer(key_path: Path, consortium_path: Path, targets: list[str],
                       procs: dict[str, subprocess.Popen]) -> Hostile:
    """Connect to ``targets`` and misbehave until every process in ``procs`` has exited.

    Each announcement backs the next kind of bad transfer that peer has not fetched yet
    (so a phase it happened to skip does not leave a kind untried); the first announcement
    of a round in ``BURSTS`` also brings that burst of hostile control messages. Reads each
    process's output while it runs, so a chatty peer never blocks on a full pipe.
    """
    key = load_key(key_path)
    signer = RecordSigner(key.peer_id, key.key_pair.private_key.to_bytes())
    outsiders = [RecordSigner(k.peer_id, k.key_pair.private_key.to_bytes())
                 for k in (NodeKey.generate() for _ in range(INVENTED))]
    seqs = itertools.count(1)
    rng = np.random.default_rng(0)
    model_id, ref = reference_weights()
    out = Hostile()
    announced_kinds: dict[str, dict[str, str]] = {}  # peer -> {announced digest: kind}

    def fetched(h: HostileTransport, peer: str) -> set[str]:
        asked = h.requested.get(peer, set())
        return {kind for key, kind in announced_kinds.get(peer, {}).items() if key in asked}

    async def send_all(h: HostileTransport, peer: str, sent: Sent) -> None:
        expected = out.expected.setdefault(peer, Counter())
        for msg, counted in sent:
            await h.send(peer, encode_control(msg))
            if counted is not None:
                expected[counted] += 1

    async def lure(h: HostileTransport, peer: str, ann: Announce) -> Announce:
        """The peer's model of ``ann`` (if it still offers it, else the initial one),
        sign-flipped, as the final model of the last round."""
        try:
            weights = sign_flipped(decode(await h.fetch(peer, ann.digest, ann.size)).tensors)
        except TransportError:
            weights = sign_flipped(ref)
        data = encode(WeightsMessage(model_id, ROUNDS - 1, h.peer_id, 10_000, weights))
        h.pinned[digest(data)] = data
        out.lures.setdefault(peer, {})[digest(data)] = weights
        return Announce(h.peer_id, ROUNDS - 1, GOSSIP_STEPS, digest(data), len(data), 10_000, 2)

    async def burst(h: HostileTransport, honest: list[str], peer: str, ann: Announce) -> None:
        done = out.bursts.setdefault(peer, [])
        for i, (round_, kind) in enumerate(BURSTS):
            if ann.round < round_ or i < len(done):
                continue
            if kind == "forge":
                sent = forge(signer, seqs, honest, peer, ann.round, await lure(h, peer, ann))
            elif kind == "invent":
                sent = invent(signer, outsiders, ann.round)
            else:
                sent = flood(signer, seqs, ann.round, ann.size, rng)
            await send_all(h, peer, sent)
            done.append(kind)

    async def misbehave(h: HostileTransport, honest: list[str]) -> None:
        while True:
            env = await h.receive()
            try:
                msg = decode_control(env.data)
            except CodecError:
                continue
            if env.sender not in announced_kinds:  # first contact: it counts us as a neighbour now
                announced_kinds[env.sender] = {}
                other = next(p for p in honest if p != env.sender)
                for bad in (b"\xc1 not msgpack",
                            encode_control(Announce(other, 0, 0, "0" * 32, 10, 5, 1)),  # forged sender
                            encode_control(Announce(h.peer_id, 10**6, 0, "0" * 32, 10, 5, 1))):
                    await h.send(env.sender, bad)
            if isinstance(msg, Announce) and msg.sender == env.sender:
                done = fetched(h, env.sender)
                kind = next((k for k in KINDS if k not in done), list(KINDS)[msg.round % len(KINDS)])
                data, announced, size = bad_transfer(kind, model_id, ref, h.peer_id, msg.round)
                announced_kinds[env.sender][announced] = kind
                h.offer(announced, data)
                with contextlib.suppress(TransportError):  # the peer may just have left
                    await h.send(env.sender, encode_control(
                        Announce(h.peer_id, msg.round, msg.step, announced, size, 10_000, 2)))
                if msg.step < GOSSIP_STEPS:  # still running: it must not leave before the bursts
                    await burst(h, honest, env.sender, msg)

    async def collect(name: str, proc: subprocess.Popen) -> None:
        out.results[name] = await trio.to_thread.run_sync(finish, proc, abandon_on_cancel=True)

    with trio.fail_after(240):
        async with HostileTransport.start(key, consortium=Consortium.from_toml(consortium_path)) as h:
            h.requested, h.pinned, h.sent = {}, {}, Counter()
            honest = [await h.connect(addr) for addr in targets]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(misbehave, h, honest)
                async with trio.open_nursery() as waiting:
                    for name, proc in procs.items():
                        waiting.start_soon(collect, name, proc)
                nursery.cancel_scope.cancel()
            out.served = {peer: fetched(h, peer) for peer in announced_kinds}
            out.requested, out.sent = h.requested, h.sent
            return out


def cosine(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """Cosine similarity of two models' floating-point weights."""
    x, y = (np.concatenate([np.ravel(w[k]).astype(np.float64) for k in sorted(w) if w[k].dtype.kind == "f"])
            for w in (a, b))
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def test_an_allowed_hostile_peer_is_refused_counted_never_mixed_nor_obeyed(hospitals):  # noqa: F811
    tmp_path, ids = hospitals
    a, addr_a = start(tmp_path, "a", 0)
    b, addr_b = start(tmp_path, "b", 1, addr_a)
    try:
        hostile = trio.run(hostile_peer, tmp_path / "c.key", tmp_path / "consortium.toml",
                           [addr_a, addr_b], {"a": a, "b": b})
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    results = hostile.results
    for name, (code, out, err) in results.items():
        assert code == 0 and "Traceback" not in err, (name, err[-3000:])
    reports = {n: json.loads((tmp_path / f"state-{n}" / "report.json").read_text()) for n in "ab"}
    # both ran to the last round together: no forged or uncorroborated stop was obeyed
    assert {r["stop_round"] for r in reports.values()} == {ROUNDS - 1}, reports
    for name, report in reports.items():
        me, other, log = ids[name], ids["b" if name == "a" else "a"], results[name][2]
        state = CheckpointStore(tmp_path / f"state-{name}").load_latest(me)
        assert state.round == ROUNDS - 1
        # no invented origin became a member
        assert set(state.members) == {ids["a"], ids["b"], ids["c"]}, len(state.members)
        # never taken over: the lure was never fetched, nothing caught up to the hostile member ...
        lured = [line for line in log.splitlines() if "event=catch-up" in line and f"from={ids['c']}" in line]
        fetched_lures = set(hostile.lures[me]) & hostile.requested.get(me, set())
        assert not fetched_lures and not lured, lured
        # ... and the final model points away from the lure (taken whole, the cosine is 1),
        # never saw the poison (one mix would put ~POISON/3 in it) and scores well
        assert all(cosine(state.weights, lure) < 0 for lure in hostile.lures[me].values())
        flat = np.concatenate([np.ravel(v) for v in state.weights.values()])
        assert np.isfinite(flat).all() and np.abs(flat).max() < 50, np.abs(flat).max()
        assert report["auroc"] is not None and AUROC_FLOOR < report["auroc"] <= 1.0, report

        # the hostile member sent this peer everything, and nothing was rate-limited ...
        expected = hostile.expected[me]
        assert hostile.bursts[me] == [kind for _, kind in BURSTS], hostile.bursts
        assert hostile.sent[me] <= CONTROL_BUDGET, hostile.sent
        # ... it fetched every kind of bad transfer at least once ...
        assert hostile.served[me] == set(KINDS), (name, hostile.served[me])
        # ... and rejected each under its own reason, every forged record as a bad signature
        # and every oversized announcement before any transfer; nothing else was rejected
        assert set(report["rejected"]) == {*KINDS.values(), "bad-signature", "oversized-announcement"}, report
        assert f"from={ids['c']} reason=wrong-round" in log
        assert report["rejected"]["bad-signature"] == expected["bad-signature"] > 0, (report, expected)
        assert f"from={other} reason=bad-signature detail=StopDecision seq {MAX_COUNT} " in log
        assert report["rejected"]["oversized-announcement"] == expected["oversized-announcement"], (report, expected)
        assert f"from={ids['c']} reason=oversized-announcement detail=announced {MAX_COUNT} bytes" in log
        # invented origins and phases past the end count as bad control
        assert report["bad_control"] >= BAD_CONTROLS + expected["bad-control"], (report, expected)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
