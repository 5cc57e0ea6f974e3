"""The one atomic file writer: old content or complete new content, durably renamed."""

import os
from pathlib import Path

import pytest

from swarm.atomic_file import atomic_write


def test_text_is_written_as_utf8_and_parents_are_created(tmp_path: Path):
    path = tmp_path / "a" / "b" / "report.md"
    assert atomic_write(path, "AUROC – 0.9\n") == path
    assert path.read_bytes() == "AUROC – 0.9\n".encode("utf-8")


def test_bytes_and_pieces_are_written_in_order(tmp_path: Path):
    atomic_write(tmp_path / "one", memoryview(b"abc"))
    atomic_write(tmp_path / "many", [b"ab", bytearray(b"cd"), memoryview(b"ef")])
    assert (tmp_path / "one").read_bytes() == b"abc"
    assert (tmp_path / "many").read_bytes() == b"abcdef"


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path: Path):
    path = tmp_path / "report.json"
    atomic_write(path, "old\n")

    def pieces():
        yield b"half of the new "
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, pieces())
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_the_file_is_synced_before_the_rename_and_the_directory_after(tmp_path: Path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls.append("fsync-dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync-file")
        real_fsync(fd)

    def replace(src, dst):
        calls.append("replace")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    atomic_write(tmp_path / "x", b"data")
    assert calls == ["fsync-file", "replace", "fsync-dir"]
