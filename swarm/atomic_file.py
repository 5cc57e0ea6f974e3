"""Files that are either the old version or the complete new one, never half-written.

Reports, per-round rows, checkpoints, consortium files and benchmark results are read by
other processes (a launcher, a monitoring script, the next run of the same peer) while a
writer may be killed at any moment. :func:`atomic_write` writes a temporary file
``.NAME.XXXX.tmp`` in the target's directory, flushes and fsyncs it, ``os.replace``s it
onto ``NAME`` and fsyncs the directory, so the new name survives a power cut too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Union

#: bytes-like pieces of a file (``gossip.codec.encode`` gives read-only memoryviews)
Buffer = Union[bytes, bytearray, memoryview]


def atomic_write(path: str | Path, data: str | Buffer | Iterable[Buffer]) -> Path:
    """Replace ``path`` by ``data`` atomically and durably; return the path.

    ``data`` is text (written as UTF-8), one bytes-like object, or an iterable of them
    written one after the other (so a large model need not be joined into one copy).
    Missing parent directories are created.

    Raises
    ------
    OSError
        If writing fails (disk full, permissions); the temporary file is removed and the
        previous content of ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        pieces: Iterable[Buffer] = (data.encode("utf-8"),)
    elif isinstance(data, (bytes, bytearray, memoryview)):
        pieces = (data,)
    else:
        pieces = data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for piece in pieces:
                fh.write(piece)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def fsync_dir(directory: str | Path) -> None:
    """Make the directory's entries (new, renamed or removed files) durable.

    Raises ``OSError`` if the directory cannot be opened or synced.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
