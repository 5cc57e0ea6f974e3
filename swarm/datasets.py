"""Dataset loaders: MedMNIST ``.npz`` files, and the arrays every data set becomes.

Numpy only, local files only. Every loader validates what it reads and raises
:class:`~swarm.errors.DataError` with a one-line message naming the file (and line, for text
files), so a bad path or a corrupt download is reported where it happens, not as a shape
error deep inside training.

The shipped heart data is a CSV read like any hospital's table (:mod:`swarm.heart`).
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

from swarm.errors import DataError

#: Names of the MedMNIST files shipped in ``swarm/assets``.
BUILTIN_MEDMNIST = ("breastmnist", "pneumoniamnist")
_SPLITS = ("train", "val", "test")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)

@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """Features and labels held in memory, ready for training.

    ``x`` is float32: images ``(N, C, H, W)`` scaled to [0, 1], tabular ``(N, F)``
    standardized. ``y`` is int64 ``(N,)`` with values in ``[0, num_classes)``.
    Equality is identity (``eq=False``): comparing arrays with ``==`` is ambiguous.

    Raises
    ------
    DataError
        If the arrays have the wrong type, dtype or shape, or labels are out of range.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.x, np.ndarray) or self.x.dtype != np.float32 or self.x.ndim < 2:
            raise DataError("ArrayDataset.x must be a float32 array of shape (N, ...)")
        if not isinstance(self.y, np.ndarray) or self.y.dtype != np.int64 or self.y.ndim != 1:
            raise DataError("ArrayDataset.y must be an int64 array of shape (N,)")
        if len(self.x) != len(self.y):
            raise DataError(f"ArrayDataset has {len(self.x)} inputs but {len(self.y)} labels")
        if self.num_classes < 1:
            raise DataError(f"ArrayDataset.num_classes must be >= 1, got {self.num_classes}")
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= self.num_classes):
            raise DataError(f"ArrayDataset labels must lie in [0, {self.num_classes})")

    def __len__(self) -> int:
        """Return the number of samples."""
        return len(self.y)

    def subset(self, idx: np.ndarray) -> ArrayDataset:
        """Return the samples at ``idx`` (integer indices or a boolean mask) as a new dataset."""
        return ArrayDataset(self.x[idx], self.y[idx], self.num_classes)


def concatenate(parts: Sequence[ArrayDataset]) -> ArrayDataset:
    """Stack datasets end to end, e.g. to pool every site's training split.

    Raises
    ------
    DataError
        If ``parts`` is empty or the parts differ in class count or sample shape.
    """
    if not parts:
        raise DataError("cannot concatenate an empty list of datasets")
    first = parts[0]
    for part in parts[1:]:
        if part.num_classes != first.num_classes or part.x.shape[1:] != first.x.shape[1:]:
            raise DataError("cannot concatenate datasets of different shapes or class counts")
    x = np.concatenate([p.x for p in parts])
    y = np.concatenate([p.y for p in parts])
    return ArrayDataset(x, y, first.num_classes)


@dataclass(frozen=True, eq=False)
class MedMNIST:
    """One MedMNIST file: its three splits and the channel and class counts read from it."""

    name: str
    train: ArrayDataset
    val: ArrayDataset
    test: ArrayDataset
    channels: int
    num_classes: int


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def builtin_asset(relative: str) -> Path:
    """The path of a file shipped in ``swarm/assets`` (``relative`` to that folder)."""
    return Path(str(files("swarm") / "assets" / relative))


def builtin_path(name: str) -> Path:
    """Return the path of a MedMNIST file shipped with the package, so runs work offline.

    Raises
    ------
    DataError
        If ``name`` is not one of :data:`BUILTIN_MEDMNIST` (the message lists them).
    """
    key = name.strip().lower()
    if key not in BUILTIN_MEDMNIST:
        known = ", ".join(BUILTIN_MEDMNIST)
        raise DataError(f"unknown built-in dataset '{name}': known names are {known}")
    return builtin_asset(f"{key}.npz")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read the six MedMNIST arrays, translating every numpy/zip failure into DataError."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    keys = [f"{s}_{kind}" for s in _SPLITS for kind in ("images", "labels")]
    # Own the handle: np.load(path) leaks it when the zip turns out to be corrupt.
    with open(path, "rb") as fh:
        if not fh.read(6).startswith((b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")):
            raise DataError(f"{path}: not an .npz archive (no zip signature)")
        fh.seek(0)
        try:
            archive = np.load(fh, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise DataError(f"{path}: not a readable .npz archive ({_one_line(exc)})") from exc
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: holds a single array, not a MedMNIST .npz archive")
        with archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise DataError(f"{path}: missing key(s) {', '.join(missing)}")
            try:
                return {k: archive[k] for k in keys}
            except _READ_ERRORS as exc:
                raise DataError(f"{path}: corrupt .npz archive ({_one_line(exc)})") from exc


def _check_split(path: Path, split: str, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Validate one split and return its labels flattened to (N,)."""
    if images.ndim not in (3, 4):
        raise DataError(
            f"{path}: {split}_images has shape {images.shape}; expected (N, H, W) or (N, H, W, C)"
        )
    if images.dtype != np.uint8:
        raise DataError(f"{path}: {split}_images has dtype {images.dtype}; expected uint8")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise DataError(
            f"{path}: {split}_labels has shape {labels.shape}; expected (N,) or (N, 1)"
            " (multi-label sets are not supported)"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {split}_labels has dtype {labels.dtype}; expected integers")
    if len(images) != len(labels):
        raise DataError(
            f"{path}: {split}_images has {len(images)} rows but {split}_labels has {len(labels)}"
        )
    if len(labels) == 0:
        raise DataError(f"{path}: the {split} split is empty")
    if labels.min() < 0:
        raise DataError(f"{path}: {split}_labels has negative values")
    return labels.astype(np.int64)


def _to_nchw(images: np.ndarray) -> np.ndarray:
    x = images.astype(np.float32) / np.float32(255.0)
    if x.ndim == 3:
        return x[:, None, :, :]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_medmnist(path: str | Path, name: str | None = None) -> MedMNIST:
    """Load a MedMNIST-format ``.npz`` file, reading channels and classes from the data.

    Images ``(N, H, W)`` get one channel, ``(N, H, W, C)`` get ``C``; the class count is the
    largest label over all three splits plus one. ``name`` defaults to the file's stem.

    Raises
    ------
    DataError
        If the file is missing, not an ``.npz`` archive, corrupt, lacks a key, or holds
        arrays of the wrong shape, dtype or length. The message names the file.
    """
    path = Path(path)
    raw = _read_npz(path)
    labels = {s: _check_split(path, s, raw[f"{s}_images"], raw[f"{s}_labels"]) for s in _SPLITS}
    shapes = {raw[f"{s}_images"].shape[1:] for s in _SPLITS}
    if len(shapes) != 1:
        raise DataError(f"{path}: the splits have different image shapes {sorted(shapes)}")
    num_classes = int(max(labels[s].max() for s in _SPLITS)) + 1
    splits = {
        s: ArrayDataset(_to_nchw(raw[f"{s}_images"]), labels[s], num_classes) for s in _SPLITS
    }
    return MedMNIST(
        name=name if name is not None else path.stem,
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        channels=splits["train"].x.shape[1],
        num_classes=num_classes,
    )
