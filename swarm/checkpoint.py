"""Crash-safe checkpoints of one peer's state, so a killed peer restarts from its last round.

A peer calls :meth:`CheckpointStore.save` after every completed round (or gossip step) and
:meth:`CheckpointStore.load_latest` when it starts. A file appears under its final name only
once it is complete and on disk (temporary file, ``fsync``, ``os.replace``, ``fsync`` of the
directory), so a peer killed at any moment leaves either the new checkpoint or the previous
one, never a half-written file that looks final. Files damaged later (a truncated copy, a bad
disk block) are detected by their checksums and skipped in favour of the previous one.

No optimizer state is stored: medswarm, like FedAvg, starts a fresh optimizer every round, so
weights, round and step are all a peer needs to resume.

File layout (``ckpt-RRRRRR-SS.msw``: round zero-padded to 6 digits and step to 2, widened as
needed; files are ordered by the parsed numbers, never by the name's text)::

    offset 0        8 bytes  magic b"MSWCKPT1" (the trailing 1 is the format version)
    offset 8        8 bytes  W, length of the weights section, unsigned big-endian
    offset 16       8 bytes  M, length of the state section, unsigned big-endian
    offset 24       8 bytes  xxh3-64 of every other byte of the file (0-24, then 32-end)
    offset 32       W bytes  the weights: a :mod:`gossip.codec` message (sender = peer id,
                             round = round, sample count 0, never float16)
    offset 32 + W   M bytes  the state: a msgpack map with exactly the keys ``peer_id``,
                             ``round``, ``step``, ``members``, ``counters``, ``model_id``,
                             ``extra``
    end = 32 + W + M; a file of any other length is rejected.

The file-wide checksum is needed on top of the codec's: the codec checks only the tensor
bytes, so a flipped byte in its header (a tensor name, the model id) would otherwise pass.
Like the codec's, it catches accidents, not forgery.

A state directory belongs to one peer identity and one writer process at a time; nothing
here locks it.
"""

from __future__ import annotations

import logging
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import xxhash

from gossip.codec import WeightsMessage, decode, encode
from gossip.errors import CodecError
from swarm.atomic_file import atomic_write, fsync_dir
from swarm.errors import ConfigError, SwarmError

log = logging.getLogger("medswarm.checkpoint")

MAGIC: bytes = b"MSWCKPT1"
#: Largest state section (everything but the weights) accepted on save and load.
MAX_STATE_BYTES: int = 16 * 1024 * 1024
#: Short reasons a :class:`CheckpointError` carries.
REASONS: frozenset[str] = frozenset(
    {"bad-state", "truncated", "bad-magic", "bad-checksum", "bad-weights", "peer-mismatch"}
)

_PREFIX = struct.Struct(">8sQQQ")
_SUM_AT = 24  # offset of the checksum field inside the prefix
_MAX_INT = 2**63 - 1
_STATE_KEYS = frozenset({"peer_id", "round", "step", "members", "counters", "model_id", "extra"})
_NAME = re.compile(r"ckpt-(\d+)-(\d+)\.msw")
_TEMP = re.compile(r"\.ckpt-.*\.tmp")


class CheckpointError(SwarmError):
    """A peer state could not be saved, or a checkpoint file could not be used.

    Attributes
    ----------
    reason:
        One of :data:`REASONS`: ``bad-state`` (a state that cannot be saved, or a file whose
        state section is ill-formed or disagrees with its name or weights), ``truncated``,
        ``bad-magic``, ``bad-checksum``, ``bad-weights`` (the codec refused the weights) or
        ``peer-mismatch`` (the directory holds another peer's state).
    path:
        The checkpoint file concerned, when there is one.
    """

    def __init__(self, reason: str, detail: str = "", *, path: Path | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.path = path
        msg = f"{reason}: {detail}" if detail else reason
        super().__init__(f"{msg} ({path})" if path is not None else msg)


@dataclass(frozen=True, eq=False)
class PeerState:
    """Everything a peer needs to resume after its last completed round.

    There is deliberately no optimizer state: every round starts a fresh optimizer (as
    FedAvg does). ``extra`` holds small msgpack-able data (a convergence streak, a list of
    past deadlines); it comes back from a checkpoint with tuples turned into lists.
    Equality is exact (tensor names in order, dtypes, shapes, bytes); not hashable.
    """

    peer_id: str
    round: int  # last completed round
    step: int  # last completed gossip step within the round (0 if unused)
    weights: dict[str, np.ndarray]
    members: tuple[str, ...]  # known swarm members
    counters: dict[str, int]  # e.g. {"accepted": 3, "rejected": 1}
    model_id: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        """Exact comparison (see the class docstring); arrays make the default one ambiguous."""
        if not isinstance(other, PeerState):
            return NotImplemented
        return (
            (self.peer_id, self.round, self.step, self.members, self.counters, self.model_id,
             self.extra)
            == (other.peer_id, other.round, other.step, other.members, other.counters,
                other.model_id, other.extra)
            and _message(self) == _message(other)
        )


def _message(state: PeerState) -> WeightsMessage:
    return WeightsMessage(state.model_id, state.round, state.peer_id, 0, state.weights)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _check_state(fields: dict[str, Any]) -> None:
    """Raise ``bad-state`` unless the non-weight fields are well typed."""
    for key in ("peer_id", "model_id"):
        if not isinstance(fields[key], str) or not fields[key]:
            raise CheckpointError("bad-state", f"{key} must be a non-empty str")
    for key in ("round", "step"):
        if not _is_int(fields[key]) or not 0 <= fields[key] <= _MAX_INT:
            raise CheckpointError("bad-state", f"{key} must be an int in [0, 2**63)")
    members = fields["members"]
    if not isinstance(members, (tuple, list)) or not all(isinstance(m, str) for m in members):
        raise CheckpointError("bad-state", "members must be a sequence of str")
    counters = fields["counters"]
    if not isinstance(counters, dict) or not all(
        isinstance(k, str) and _is_int(v) for k, v in counters.items()
    ):
        raise CheckpointError("bad-state", "counters must map str to int")
    if not isinstance(fields["extra"], dict):
        raise CheckpointError("bad-state", "extra must be a dict")


def _unpack_state(data: bytes | memoryview) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=True, use_list=True)


def encode_state(state: PeerState) -> list[bytes | memoryview]:
    """Serialise ``state`` into the pieces of one checkpoint file (layout in the module doc).

    Pure: no I/O. Writing the pieces one after the other gives the file; ``b"".join`` them
    for a single buffer.

    Raises
    ------
    CheckpointError
        ``bad-state`` for ill-typed fields, an ``extra`` that msgpack cannot store and read
        back (e.g. numpy scalars, non-str map keys) or a state section over
        :data:`MAX_STATE_BYTES`; ``bad-weights`` when the codec refuses the weights (a
        dtype outside :data:`gossip.codec.ALLOWED_DTYPES`, an empty tensor name, ...).
    """
    if not isinstance(state, PeerState):
        raise CheckpointError("bad-state", f"expected a PeerState, got {type(state).__name__}")
    fields = {
        "peer_id": state.peer_id, "round": state.round, "step": state.step,
        "members": state.members, "counters": state.counters, "model_id": state.model_id,
        "extra": state.extra,
    }
    _check_state(fields)
    fields.update(round=int(state.round), step=int(state.step), members=list(state.members),
                  counters={k: int(v) for k, v in state.counters.items()})
    try:
        packed = msgpack.packb(fields, use_bin_type=True)
        _unpack_state(packed)  # what cannot be read back must not be written
    except Exception as exc:  # noqa: BLE001 - msgpack raises TypeError, ValueError, ...
        raise CheckpointError("bad-state", f"cannot pack state: {exc}") from None
    if len(packed) > MAX_STATE_BYTES:
        raise CheckpointError("bad-state", f"state is {len(packed)} bytes > {MAX_STATE_BYTES}")
    if not isinstance(state.weights, dict):
        raise CheckpointError("bad-state", "weights must be a dict of numpy arrays")
    try:
        weights = encode(_message(state), max_bytes=_MAX_INT)
    except CodecError as exc:
        raise CheckpointError("bad-weights", str(exc)) from exc
    hasher = xxhash.xxh3_64()
    head = _PREFIX.pack(MAGIC, len(weights), len(packed), 0)[:_SUM_AT]
    for piece in (head, weights, packed):
        hasher.update(piece)
    return [_PREFIX.pack(MAGIC, len(weights), len(packed), hasher.intdigest()), weights, packed]


def decode_state(data: bytes | bytearray | memoryview) -> PeerState:
    """Parse and check one checkpoint file's bytes; the inverse of :func:`encode_state`.

    The weights are copied into new writable arrays, so they do not keep ``data`` alive and
    can be trained on.

    Raises
    ------
    CheckpointError
        ``truncated``, ``bad-magic``, ``bad-checksum``, ``bad-weights`` or ``bad-state``
        (``path`` is ``None``; :class:`CheckpointStore` fills it in).
    """
    view = memoryview(data).cast("B")
    if len(view) < _PREFIX.size:
        raise CheckpointError("truncated", f"{len(view)} bytes, the prefix needs {_PREFIX.size}")
    magic, weights_len, state_len, checksum = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise CheckpointError("bad-magic", f"expected {MAGIC!r}, got {bytes(magic)!r}")
    if state_len > MAX_STATE_BYTES:
        raise CheckpointError("bad-state", f"state length {state_len} > {MAX_STATE_BYTES}")
    end = _PREFIX.size + weights_len + state_len
    if len(view) != end:
        raise CheckpointError("truncated", f"{len(view)} bytes, the lengths say {end}")
    hasher = xxhash.xxh3_64()
    hasher.update(view[:_SUM_AT])
    hasher.update(view[_PREFIX.size:])
    if hasher.intdigest() != checksum:
        raise CheckpointError("bad-checksum", "file does not match its checksum")
    try:
        msg = decode(view[_PREFIX.size:_PREFIX.size + weights_len], max_bytes=_MAX_INT)
    except CodecError as exc:
        raise CheckpointError("bad-weights", str(exc)) from exc
    try:
        fields = _unpack_state(view[_PREFIX.size + weights_len:])
    except Exception as exc:  # noqa: BLE001 - msgpack raises ValueError, StackError, ...
        raise CheckpointError("bad-state", f"state is not msgpack: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != _STATE_KEYS:
        raise CheckpointError("bad-state", f"state keys must be {sorted(_STATE_KEYS)}")
    _check_state(fields)
    if (msg.model_id, msg.round, msg.sender) != (
        fields["model_id"], fields["round"], fields["peer_id"]
    ):
        raise CheckpointError("bad-state", "weights and state disagree on model, round or peer")
    return PeerState(
        peer_id=fields["peer_id"], round=fields["round"], step=fields["step"],
        weights={name: np.array(arr, copy=True) for name, arr in msg.tensors.items()},
        members=tuple(fields["members"]), counters=fields["counters"],
        model_id=fields["model_id"], extra=fields["extra"],
    )


def _file_name(round_: int, step: int) -> str:
    return f"ckpt-{round_:06d}-{step:02d}.msw"


def _parse_name(name: str) -> tuple[int, int] | None:
    """(round, step) of a checkpoint file name in canonical form, else ``None``."""
    match = _NAME.fullmatch(name)
    if match is None:
        return None
    key = int(match[1]), int(match[2])
    return key if _file_name(*key) == name else None


class CheckpointStore:
    """The checkpoints of one peer, in one directory; see the module docstring.

    Parameters
    ----------
    directory:
        Where the files live; created (with parents) if missing.
    keep:
        How many checkpoints to keep; older ones are deleted after each save.

    Raises
    ------
    ConfigError
        If ``keep`` is not an int >= 1.
    OSError
        If the directory cannot be created.
    """

    def __init__(self, directory: str | Path, keep: int = 3) -> None:
        if not _is_int(keep) or keep < 1:
            raise ConfigError("keep", f"must be an int >= 1, got {keep!r}")
        self.directory = Path(directory)
        self.keep = int(keep)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _entries(self) -> list[tuple[tuple[int, int], Path]]:
        found = []
        for path in self.directory.iterdir():
            key = _parse_name(path.name)
            if key is not None and path.is_file():
                found.append((key, path))
        return sorted(found)

    def list(self) -> list[Path]:
        """Checkpoint files, oldest first (by round, then step). Temporary files are left out."""
        return [path for _, path in self._entries()]

    def save(self, state: PeerState) -> Path:
        """Write ``state`` durably and return its file; afterwards ``load_latest`` returns it.

        Steps: remove temporary files a crashed save left behind; write a new temporary file
        in the directory, flush and fsync it, ``os.replace`` it onto its final name and fsync
        the directory (:func:`swarm.atomic_file.atomic_write`); delete any checkpoint of a
        later (round, step), which would otherwise shadow this one (left over from a run
        whose newest files were damaged, or rolled back; logged at WARNING) and fsync the
        directory again; delete the oldest checkpoints beyond ``keep``. Saving the same
        (round, step) again replaces that file.

        Raises
        ------
        CheckpointError
            ``bad-state`` or ``bad-weights`` from :func:`encode_state`; nothing is written.
        OSError
            If writing fails (disk full, permissions); the temporary file is removed and the
            previous checkpoints are untouched.
        """
        pieces = encode_state(state)
        for path in self.directory.iterdir():
            if _TEMP.fullmatch(path.name):
                path.unlink(missing_ok=True)
        key = (int(state.round), int(state.step))
        final = self.directory / _file_name(*key)
        atomic_write(final, pieces)
        entries = self._entries()
        newer = [path for other, path in entries if other > key]
        for path in newer:
            log.warning("event=checkpoint-removed peer=%s round=%d step=%d file=%s "
                        "reason=newer-than-saved", state.peer_id, key[0], key[1], path.name)
            path.unlink(missing_ok=True)
        if newer:
            fsync_dir(self.directory)
        older = [path for other, path in entries if other < key]
        for path in older[: max(len(older) - (self.keep - 1), 0)]:
            path.unlink(missing_ok=True)
        log.debug("event=checkpoint-saved peer=%s round=%d step=%d file=%s",
                  state.peer_id, key[0], key[1], final.name)
        return final

    def load_latest(self, expect_peer: str | None = None) -> PeerState | None:
        """The newest complete, valid checkpoint, or ``None`` if there is none.

        Damaged files (truncated, corrupt, or whose name disagrees with their content) are
        skipped, newest first, each logged at WARNING, until a good one is found. A file that
        vanishes while being read (a concurrent prune) is skipped too.

        Parameters
        ----------
        expect_peer:
            The identity the caller runs as. If given, the newest valid checkpoint must
            belong to it: a state directory must never be resumed under another identity.

        Raises
        ------
        CheckpointError
            ``peer-mismatch`` if ``expect_peer`` is given and differs from the newest valid
            checkpoint's ``peer_id`` (older checkpoints are not tried).
        OSError
            If a file exists but cannot be read (other than vanishing).
        """
        for key, path in reversed(self._entries()):
            try:
                state = decode_state(path.read_bytes())
                if (state.round, state.step) != key:
                    raise CheckpointError(
                        "bad-state", f"content is round {state.round} step {state.step}")
            except FileNotFoundError:
                continue
            except CheckpointError as exc:
                log.warning("event=checkpoint-skipped file=%s reason=%s detail=%s",
                            path.name, exc.reason, exc.detail)
                continue
            if expect_peer is not None and state.peer_id != expect_peer:
                raise CheckpointError(
                    "peer-mismatch",
                    f"checkpoint belongs to {state.peer_id!r}, expected {expect_peer!r}",
                    path=path,
                )
            log.info("event=checkpoint-loaded peer=%s round=%d step=%d file=%s",
                     state.peer_id, state.round, state.step, path.name)
            return state
        return None
