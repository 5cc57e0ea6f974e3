"""Peer checkpoints: round trips, damaged files, pruning, ordering, crashes mid-save, SIGKILL."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from swarm.checkpoint import (
    MAGIC,
    CheckpointError,
    CheckpointStore,
    PeerState,
    decode_state,
    encode_state,
)
from swarm.errors import ConfigError, SwarmError

REPO = Path(__file__).resolve().parents[2]
LOGGER = "medswarm.checkpoint"


def make_state(round_: int = 1, step: int = 0, *, peer: str = "hospital-a") -> PeerState:
    """A state whose every field is a deterministic function of (round, step)."""
    rng = np.random.default_rng(1000 * round_ + step)
    weights = {
        "conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.bias": rng.standard_normal(4).astype(np.float32),
        "head.weight": rng.standard_normal((2, 4)),
        "half": rng.standard_normal(3).astype(np.float16),
        "bn.num_batches": np.array(round_, dtype=np.int64),
        "codes": rng.integers(-100, 100, 7).astype(np.int8),
        "mask": rng.integers(0, 2, 5).astype(bool),
        "empty": np.empty((0, 3), dtype=np.float32),
    }
    return PeerState(
        peer_id=peer, round=round_, step=step, weights=weights,
        members=("hospital-a", "hospital-b", "hospital-c"),
        counters={"accepted": 3 * round_, "rejected": round_ % 2},
        model_id="heart-mlp",
        extra={"streak": round_, "deadlines": [1.5 * i for i in range(round_ % 5)]},
    )


def file_bytes(state: PeerState) -> bytes:
    return b"".join(bytes(piece) for piece in encode_state(state))


def section_lengths(data: bytes) -> tuple[int, int]:
    """(weights length W, state length M) of a checkpoint file's bytes."""
    return struct.unpack(">QQ", data[8:24])


def temp_files(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def skipped_files(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records
        if r.name == LOGGER and r.levelno == logging.WARNING and "checkpoint-skipped" in r.getMessage()
    ]


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "state" / "hospital-a", keep=3)


# --- round trip -------------------------------------------------------------------------------


def test_constructor_creates_directory_with_parents(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "b" / "c"

    CheckpointStore(directory)

    assert directory.is_dir()


def test_empty_directory_loads_none(store: CheckpointStore) -> None:
    assert store.load_latest() is None
    assert store.list() == []


def test_round_trip_preserves_weights_dtypes_and_fields(store: CheckpointStore) -> None:
    state = make_state(7, 2)

    store.save(state)
    loaded = store.load_latest()

    assert loaded is not None
    assert list(loaded.weights) == list(state.weights)
    for name, arr in state.weights.items():
        assert loaded.weights[name].dtype == arr.dtype, name
        assert loaded.weights[name].shape == arr.shape, name
        assert np.array_equal(loaded.weights[name], arr), name
    assert (loaded.peer_id, loaded.round, loaded.step, loaded.model_id) == (
        "hospital-a", 7, 2, "heart-mlp")
    assert loaded.members == state.members and isinstance(loaded.members, tuple)
    assert loaded.counters == state.counters
    assert loaded.extra == state.extra
    assert loaded == state


def test_loaded_weights_are_writable_copies(store: CheckpointStore) -> None:
    store.save(make_state(1))

    loaded = store.load_latest()

    assert loaded is not None
    for arr in loaded.weights.values():
        assert arr.flags.writeable and arr.flags.owndata and arr.flags.c_contiguous
    loaded.weights["conv.bias"] += 1  # trainable in place
    assert not np.array_equal(loaded.weights["conv.bias"], make_state(1).weights["conv.bias"])


def test_file_name_encodes_round_and_step_zero_padded(store: CheckpointStore) -> None:
    path = store.save(make_state(12, 3))

    assert path.name == "ckpt-000012-03.msw"
    assert path.parent == store.directory
    assert path.read_bytes()[:8] == MAGIC


def test_file_length_is_prefix_plus_both_sections(store: CheckpointStore) -> None:
    data = store.save(make_state(3)).read_bytes()

    weights_len, state_len = section_lengths(data)

    assert len(data) == 32 + weights_len + state_len


# --- damaged newest file ----------------------------------------------------------------------

TRUNCATIONS = {
    "empty": lambda w, m: 0,
    "mid-magic": lambda w, m: 5,
    "mid-prefix": lambda w, m: 20,
    "prefix-only": lambda w, m: 32,
    "mid-codec-header": lambda w, m: 32 + 12,
    "mid-weights": lambda w, m: 32 + w // 2,
    "weights-only": lambda w, m: 32 + w,
    "mid-trailer": lambda w, m: 32 + w + m // 2,
    "last-byte-missing": lambda w, m: 32 + w + m - 1,
}


@pytest.mark.parametrize("where", TRUNCATIONS)
def test_truncated_newest_falls_back_to_previous(
    store: CheckpointStore, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    previous = make_state(4)
    store.save(previous)
    newest = store.save(make_state(5))
    data = newest.read_bytes()
    cut = TRUNCATIONS[where](*section_lengths(data))
    assert 0 <= cut < len(data)
    newest.write_bytes(data[:cut])

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = store.load_latest()

    assert loaded == previous
    assert len(skipped_files(caplog)) == 1
    assert newest.name in skipped_files(caplog)[0]


def flip_positions(data: bytes) -> dict[str, int]:
    weights_len, state_len = section_lengths(data)
    return {
        "magic": 3,
        "weights-length": 15,
        "state-length": 23,
        "checksum": 27,
        # a tensor name in the codec's header: the codec's own checksum covers only the body
        "tensor-name": data.index(b"conv.bias"),
        "model-id-in-codec-header": data.index(b"heart-mlp"),
        "weights-body": 32 + weights_len - 40,
        "state-section": 32 + weights_len + state_len // 2,
        "last-byte": len(data) - 1,
    }


@pytest.mark.parametrize("where", [
    "magic", "weights-length", "state-length", "checksum", "tensor-name",
    "model-id-in-codec-header", "weights-body", "state-section", "last-byte",
])
def test_flipped_byte_in_newest_falls_back_to_previous(
    store: CheckpointStore, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    previous = make_state(4)
    store.save(previous)
    newest = store.save(make_state(5))
    data = bytearray(newest.read_bytes())
    data[flip_positions(bytes(data))[where]] ^= 0x01
    newest.write_bytes(bytes(data))

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = store.load_latest()

    assert loaded == previous
    assert len(skipped_files(caplog)) == 1


def test_all_files_corrupt_loads_none(store: CheckpointStore, caplog: pytest.LogCaptureFixture) -> None:
    for round_ in (1, 2, 3):
        path = store.save(make_state(round_))
        path.write_bytes(path.read_bytes()[:-1])

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = store.load_latest()

    assert loaded is None
    assert len(skipped_files(caplog)) == 3


def test_file_whose_name_disagrees_with_content_is_skipped(store: CheckpointStore) -> None:
    previous = make_state(2)
    path = store.save(previous)
    shutil.copy(path, store.directory / "ckpt-000003-00.msw")

    assert store.load_latest() == previous


@pytest.mark.parametrize("reason, data", [
    ("truncated", b""),
    ("bad-magic", b"MSWCKPT2" + bytes(24)),
    ("truncated", MAGIC + struct.pack(">QQQ", 10, 10, 0)),
])
def test_decode_state_reports_reason(reason: str, data: bytes) -> None:
    with pytest.raises(CheckpointError) as info:
        decode_state(data)

    assert info.value.reason == reason


def test_decode_state_of_encode_state_is_identity() -> None:
    state = make_state(9, 4)

    assert decode_state(file_bytes(state)) == state


# --- pruning and ordering ---------------------------------------------------------------------


def test_keep_prunes_older_files(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)

    for round_ in range(1, 6):
        store.save(make_state(round_))

    assert [p.name for p in store.list()] == ["ckpt-000004-00.msw", "ckpt-000005-00.msw"]
    assert store.load_latest() == make_state(5)


def test_keep_one_keeps_only_the_newest(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=1)

    for round_ in range(3):
        store.save(make_state(round_))

    assert [p.name for p in store.list()] == ["ckpt-000002-00.msw"]


@pytest.mark.parametrize("keep", [0, -1, 1.5, True])
def test_invalid_keep_is_a_config_error(tmp_path: Path, keep: object) -> None:
    with pytest.raises(ConfigError):
        CheckpointStore(tmp_path, keep=keep)  # type: ignore[arg-type]


def test_rounds_and_steps_order_numerically_across_many_rounds(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=100)
    keys = [(r, s) for r in range(12) for s in range(3)]

    for round_, step in keys:
        store.save(make_state(round_, step))

    assert [p.name for p in store.list()] == [f"ckpt-{r:06d}-{s:02d}.msw" for r, s in keys]
    assert store.load_latest() == make_state(11, 2)


def test_ordering_survives_numbers_wider_than_the_padding(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=10)
    keys = [(999_999, 99), (999_999, 100), (1_000_000, 0), (1_000_000, 1)]

    for round_, step in keys:
        store.save(make_state(round_, step))

    # As text, "ckpt-1000000-00" sorts before "ckpt-999999-99"; the store sorts by number.
    assert [p.name for p in store.list()] == [
        "ckpt-999999-99.msw", "ckpt-999999-100.msw", "ckpt-1000000-00.msw", "ckpt-1000000-01.msw",
    ]
    assert store.load_latest() == make_state(1_000_000, 1)


def test_other_files_are_ignored_and_kept(store: CheckpointStore) -> None:
    store.save(make_state(1))
    for name in ("notes.txt", "ckpt-12-0.msw", "ckpt-000009-00.msw.bak"):
        (store.directory / name).write_bytes(b"junk")
    (store.directory / "ckpt-000009-00.msw").mkdir()  # a directory is never a checkpoint

    store.save(make_state(2))

    assert [p.name for p in store.list()] == ["ckpt-000001-00.msw", "ckpt-000002-00.msw"]
    assert store.load_latest() == make_state(2)
    assert (store.directory / "notes.txt").exists()
    assert (store.directory / "ckpt-12-0.msw").exists()


def test_saving_same_round_and_step_replaces_the_file(store: CheckpointStore) -> None:
    store.save(make_state(3))
    replacement = dataclasses.replace(make_state(3), counters={"accepted": 99})

    store.save(replacement)

    assert len(store.list()) == 1
    assert store.load_latest() == replacement


def test_save_removes_later_checkpoints_so_the_saved_state_is_latest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Round 4's file is damaged, so the peer resumed from round 2 and now redoes round 3: the
    # damaged round 4 must neither shadow the new round 3 nor (keep=1) get it pruned.
    CheckpointStore(tmp_path, keep=3).save(make_state(2))
    CheckpointStore(tmp_path, keep=3).save(make_state(4))
    store = CheckpointStore(tmp_path, keep=1)
    assert [p.name for p in store.list()] == ["ckpt-000002-00.msw", "ckpt-000004-00.msw"]
    damaged = store.list()[-1]
    damaged.write_bytes(damaged.read_bytes()[:100])
    assert store.load_latest() == make_state(2)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        store.save(make_state(3))

    assert [p.name for p in store.list()] == ["ckpt-000003-00.msw"]
    assert store.load_latest() == make_state(3)
    assert any("ckpt-000004-00.msw" in r.getMessage() for r in caplog.records)


# --- crashes ----------------------------------------------------------------------------------


def test_stray_temp_files_are_ignored_and_cleaned_by_next_save(store: CheckpointStore) -> None:
    previous = make_state(4)
    store.save(previous)
    partial = file_bytes(make_state(5))
    strays = [
        store.directory / ".ckpt-000005-00.msw.k3j2h1.tmp",
        store.directory / ".ckpt-000006-00.msw.zz.tmp",
    ]
    strays[0].write_bytes(partial[: len(partial) // 2])
    strays[1].write_bytes(partial)  # even complete, a temp file is never a checkpoint

    assert store.list() == [store.directory / "ckpt-000004-00.msw"]
    assert store.load_latest() == previous

    store.save(make_state(5))

    assert not any(path.exists() for path in strays)

    assert temp_files(store.directory) == []
    assert store.load_latest() == make_state(5)


def test_crash_before_rename_leaves_previous_checkpoint(
    store: CheckpointStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = make_state(4)
    store.save(previous)
    expected_size = len(file_bytes(make_state(5)))
    written: list[int] = []

    def crash(src: str, dst: str) -> None:
        written.append(os.path.getsize(src))  # the temp file is complete at this point
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.save(make_state(5))
    monkeypatch.undo()

    assert written == [expected_size]
    assert store.list() == [store.directory / "ckpt-000004-00.msw"]
    assert temp_files(store.directory) == []
    assert store.load_latest() == previous


@pytest.mark.parametrize("bad, reason", [
    ({"round": -1}, "bad-state"),
    ({"step": 1.0}, "bad-state"),
    ({"peer_id": ""}, "bad-state"),
    ({"members": ("a", 1)}, "bad-state"),
    ({"counters": {"accepted": "3"}}, "bad-state"),
    ({"extra": {"streak": np.int64(3)}}, "bad-state"),  # msgpack cannot store numpy ints
    ({"extra": {"by_round": {1: 0.5}}}, "bad-state"),  # would not load back (int map keys)
    ({"weights": {"w": np.zeros(2, dtype=np.complex64)}}, "bad-weights"),
    ({"weights": {"": np.zeros(2)}}, "bad-weights"),
])
def test_unsaveable_state_raises_and_writes_nothing(
    store: CheckpointStore, bad: dict[str, object], reason: str
) -> None:
    state = dataclasses.replace(make_state(2), **bad)

    with pytest.raises(CheckpointError) as info:
        store.save(state)

    assert info.value.reason == reason
    assert isinstance(info.value, SwarmError)
    assert list(store.directory.iterdir()) == []


# --- identity ---------------------------------------------------------------------------------


def test_expect_peer_mismatch_raises(store: CheckpointStore) -> None:
    path = store.save(make_state(3, peer="hospital-b"))

    with pytest.raises(CheckpointError) as info:
        store.load_latest(expect_peer="hospital-a")

    assert info.value.reason == "peer-mismatch"
    assert info.value.path == path


def test_expect_peer_match_loads(store: CheckpointStore) -> None:
    store.save(make_state(3))

    assert store.load_latest(expect_peer="hospital-a") == make_state(3)


# --- a real crash: SIGKILL while saving in a loop ---------------------------------------------


def kill_loop_state(round_: int) -> PeerState:
    """What the child saves for ``round_``: 4 MB of weights, so kills often land mid-write."""
    rng = np.random.default_rng(round_)
    return PeerState(
        peer_id="hospital-k", round=round_, step=0,
        weights={"w": rng.standard_normal((1024, 1024), dtype=np.float32),
                 "b": np.full(3, round_, dtype=np.int64)},
        members=("hospital-k",), counters={"saved": round_}, model_id="kill-test",
        extra={"round_squared": round_ * round_},
    )


CHILD = """
import sys
from swarm.checkpoint import CheckpointStore
from tests.unit.test_checkpoint import kill_loop_state

store = CheckpointStore(sys.argv[1], keep=2)
state = kill_loop_state(1)
while True:
    store.save(state)
    following = kill_loop_state(state.round + 1)  # ready before reporting, so the parent's
    sys.stdout.write(f"{state.round}\\n")       # kill lands inside the next save
    sys.stdout.flush()
    state = following
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_during_save_loop_leaves_a_complete_latest_checkpoint(
    tmp_path: Path, seed: int
) -> None:
    wait_for = int(np.random.default_rng(seed).integers(2, 25))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], cwd=REPO, bufsize=0,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    watchdog = threading.Timer(30, proc.kill)  # a hung child makes readline see EOF, not hang
    watchdog.start()
    try:
        reported = 0
        while reported < wait_for:
            line = proc.stdout.readline()  # unbuffered: reads only what the child has written
            assert line, f"child exited early: {proc.stderr.read().decode()}"
            reported = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rest = proc.stdout.read().split()
        stderr = proc.stderr.read().decode()
    finally:
        watchdog.cancel()
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, stderr
    last_reported = int(rest[-1]) if rest else reported

    store = CheckpointStore(tmp_path, keep=2)
    loaded = store.load_latest(expect_peer="hospital-k")

    assert loaded is not None
    assert last_reported <= loaded.round <= last_reported + 1
    assert loaded == kill_loop_state(loaded.round)
    for path in store.list():  # nothing partial ever sits under a final name
        decode_state(path.read_bytes())
    store.save(kill_loop_state(loaded.round + 1))
    assert temp_files(tmp_path) == []


# A child that saves rounds 1 and 2, then SIGKILLs itself right after the k-th file-system
# step of saving round 3 (each half of each write, fsync, replace, unlink), so that every gap
# between two steps of ``save`` is a crash point. It prints each step before it is killed.
CRASH_CHILD = """
import os, signal, sys
from swarm.checkpoint import CheckpointStore
from tests.unit.test_checkpoint import kill_loop_state

directory, crash_after = sys.argv[1], int(sys.argv[2])
store = CheckpointStore(directory, keep=2)
store.save(kill_loop_state(1))
store.save(kill_loop_state(2))
steps = 0

def step(name):
    global steps
    steps += 1
    sys.stdout.write(name + "\\n")
    sys.stdout.flush()
    if steps == crash_after:
        os.kill(os.getpid(), signal.SIGKILL)

def after(name, real):
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        step(name)
        return result
    return wrapped

class Writer:
    def __init__(self, fh):
        self.fh = fh
    def write(self, data):
        view = memoryview(data).cast("B")
        self.fh.write(view[: len(view) // 2])
        self.fh.flush()
        step("write-half")
        self.fh.write(view[len(view) // 2 :])
        self.fh.flush()
        step("write")
    def __getattr__(self, name):
        return getattr(self.fh, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)

real_fdopen = os.fdopen
os.fdopen = lambda *args, **kwargs: Writer(real_fdopen(*args, **kwargs))
os.fsync = after("fsync", os.fsync)
os.replace = after("replace", os.replace)
os.unlink = after("unlink", os.unlink)
store.save(kill_loop_state(3))
sys.stdout.write("saved\\n")
"""


def test_sigkill_after_every_step_of_save_leaves_previous_or_new_checkpoint(
    tmp_path: Path,
) -> None:
    crash_after, outcomes = 0, []
    while True:
        crash_after += 1
        directory = tmp_path / f"crash-{crash_after}"
        done = subprocess.run(
            [sys.executable, "-c", CRASH_CHILD, str(directory), str(crash_after)],
            cwd=REPO, capture_output=True, timeout=60, check=False,
        )
        steps = done.stdout.decode().split()
        if steps[-1] == "saved":
            assert done.returncode == 0, done.stderr.decode()
            break
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()
        assert len(steps) == crash_after

        store = CheckpointStore(directory, keep=2)
        loaded = store.load_latest()

        expected = 3 if "replace" in steps else 2
        assert loaded == kill_loop_state(expected), steps
        for path in store.list():
            decode_state(path.read_bytes())
        store.save(kill_loop_state(4))
        assert temp_files(directory) == []
        assert store.load_latest() == kill_loop_state(4)
        outcomes.append((steps[-1], expected))

    # the crash points seen: 3 pieces x 2 halves, fsync, replace, fsync of the directory, prune
    assert [name for name, _ in outcomes] == (
        ["write-half", "write"] * 3 + ["fsync", "replace", "fsync", "unlink"])
