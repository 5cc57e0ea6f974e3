"""A hostile but allowed member against real ``medswarm peer`` processes on loopback.

The hostile peer runs in the test process: a ``Libp2pTransport`` with a consortium key
(so the handshake lets it in) whose weights handler ignores the size asked for. It
answers every announcement of an honest peer with its own announcement for the same
phase, each time backed by another kind of bad transfer, and starts with a few malformed
or forged control messages. The honest peers must reject and count each kind by reason,
never mix it, and still finish together.

Why "never mixed" is observable: the bad models carry a poison value, finite and under
the absolute validation bound (so only the transfer checks, or for ``scaled`` the relative
norm check, stand between it and the mix; ``wrong-round`` sends the initial model x5,
within the norm check) and a
large claimed sample count (so a mix would give it the full Metropolis weight, 1/3 with
two neighbours). One mix would put weights of about ``POISON / 3`` into the model; the
honest peers' final checkpoints must hold only small, finite weights.
``tests/unit/test_runner.py`` shows the same poison, honestly announced, is mixed.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trio

from gossip import libp2p_framing as fr
from gossip.codec import WeightsMessage, digest, encode
from gossip.control import Announce, decode_control, encode_control
from gossip.errors import CodecError, TransportError
from gossip.libp2p_identity import Consortium, load_key
from gossip.libp2p_streams import StreamReader, remote_peer, reset_quietly
from gossip.libp2p_transport import Libp2pTransport
from swarm.checkpoint import CheckpointStore
from swarm.partition import build_federation, parse_partition
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


def start(tmp_path: Path, name: str, site: int, bootstrap: str | None = None) -> tuple[subprocess.Popen, str]:
    """An honest peer that waits (up to 30 s) for its two neighbours, the other honest
    peer and the hostile one, before round 0: every phase then has all three."""
    args = ["-v", "peer", "--key", str(tmp_path / f"{name}.key"), "--consortium", str(tmp_path / "consortium.toml"),
            "--site", str(site), "--state-dir", str(tmp_path / f"state-{name}"), *COMMON,
            "--rounds", str(ROUNDS), "--wait-neighbours", "2", "--deadline-max", "30"]
    proc = medswarm(*args, *(["--bootstrap", bootstrap] if bootstrap else []))
    line = proc.stdout.readline()
    assert line.startswith("listening "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split()[1]


class HostileTransport(Libp2pTransport):
    """Serves whatever it offers in full, ignoring the size limit of the request, and
    remembers which digests each peer asked for (``requested``)."""

    requested: dict[str, set[str]]

    async def _serve_weights(self, stream) -> None:
        reader = StreamReader(stream)
        try:
            key, _max_bytes = await fr.read_request(reader)
            self.requested.setdefault(remote_peer(stream), set()).add(key)
            data = self._weights.get(key)
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
        poison = {k: v * 5 for k, v in ref.items()}
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


async def hostile_peer(key_path: Path, consortium_path: Path, targets: list[str],
                       procs: dict[str, subprocess.Popen]) -> tuple[dict, dict]:
    """Connect to ``targets`` and misbehave until every process in ``procs`` has exited.

    Each announcement backs the next kind of bad transfer that peer has not fetched yet
    (so a phase it happened to skip does not leave a kind untried). Returns the kinds each
    peer fetched, and each process's ``(code, stdout, stderr)``, read while it runs so a
    chatty peer never blocks on a full pipe.
    """
    key = load_key(key_path)
    model_id, ref = reference_weights()
    announced_kinds: dict[str, dict[str, str]] = {}  # peer -> {announced digest: kind}
    results: dict[str, tuple[int, str, str]] = {}

    def fetched(h: HostileTransport, peer: str) -> set[str]:
        asked = h.requested.get(peer, set())
        return {kind for key, kind in announced_kinds.get(peer, {}).items() if key in asked}

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

    async def collect(name: str, proc: subprocess.Popen) -> None:
        results[name] = await trio.to_thread.run_sync(finish, proc, abandon_on_cancel=True)

    with trio.fail_after(240):
        async with HostileTransport.start(key, consortium=Consortium.from_toml(consortium_path)) as h:
            h.requested = {}
            honest = [await h.connect(addr) for addr in targets]
            async with trio.open_nursery() as nursery:
                nursery.start_soon(misbehave, h, honest)
                async with trio.open_nursery() as waiting:
                    for name, proc in procs.items():
                        waiting.start_soon(collect, name, proc)
                nursery.cancel_scope.cancel()
            return {peer: fetched(h, peer) for peer in announced_kinds}, results


def test_bad_transfers_from_an_allowed_peer_are_rejected_counted_and_never_mixed(hospitals):  # noqa: F811
    tmp_path, ids = hospitals
    a, addr_a = start(tmp_path, "a", 0)
    b, addr_b = start(tmp_path, "b", 1, addr_a)
    try:
        served, results = trio.run(hostile_peer, tmp_path / "c.key", tmp_path / "consortium.toml",
                                   [addr_a, addr_b], {"a": a, "b": b})
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for name, (code, out, err) in results.items():
        assert code == 0 and "Traceback" not in err, (name, err[-3000:])
    reports = {n: json.loads((tmp_path / f"state-{n}" / "report.json").read_text()) for n in "ab"}
    assert {r["stop_round"] for r in reports.values()} == {ROUNDS - 1}
    for name, report in reports.items():
        # this peer fetched every kind of bad transfer at least once ...
        assert served[ids[name]] == set(KINDS), (name, served[ids[name]])
        # ... and rejected under its own reason; nothing else was rejected
        assert set(report["rejected"]) == set(KINDS.values()), (name, report["rejected"])
        assert report["bad_control"] >= BAD_CONTROLS, report
        assert report["auroc"] is not None and 0.5 < report["auroc"] <= 1.0, report
        assert f"from={ids['c']} reason=wrong-round" in results[name][2]
        # the final model never saw the poison (one mix would put ~POISON/3 in it)
        state = CheckpointStore(tmp_path / f"state-{name}").load_latest(ids[name])
        assert state.round == ROUNDS - 1
        flat = np.concatenate([np.ravel(v) for v in state.weights.values()])
        assert np.isfinite(flat).all() and np.abs(flat).max() < 50, np.abs(flat).max()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
