"""Deterministic synthetic MedMNIST-format files and broken variants for loader tests.

Every image carries a unique id in its first two pixels (high byte, low byte, channel 0), so a
test can check by content that no sample ends up in two places. Ids are unique across splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")


def medmnist_arrays(
    *,
    n_train: int = 60,
    n_val: int = 20,
    n_test: int = 30,
    num_classes: int = 2,
    channels: int = 1,
    size: int = 28,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Return the six MedMNIST arrays: uint8 images, (N, 1) uint8 labels, every class in train.

    ``channels=1`` gives (N, H, W) images, as MedMNIST stores grayscale sets; otherwise
    (N, H, W, C). Images are noise whose brightness depends on the class, plus the id tag.
    """
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    next_id = 0
    for split, n in zip(SPLITS, (n_train, n_val, n_test), strict=True):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.uint8)
        shape = (n, size, size) if channels == 1 else (n, size, size, channels)
        base = rng.integers(0, 120, size=shape)
        bright = (labels.astype(np.int64) * (120 // max(num_classes - 1, 1))).reshape(
            (n,) + (1,) * (len(shape) - 1)
        )
        images = np.clip(base + bright, 0, 255).astype(np.uint8)
        ids = np.arange(next_id, next_id + n)
        next_id += n
        first = images[:, 0] if channels == 1 else images[:, 0, :, 0]
        first[:, 0], first[:, 1] = ids // 256, ids % 256
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels.reshape(n, 1)
    return arrays


def image_ids(x: np.ndarray) -> np.ndarray:
    """Decode the ids written by :func:`medmnist_arrays` from loaded float (N, C, H, W) images."""
    tag = np.rint(x[:, 0, 0, :2] * 255).astype(np.int64)
    return tag[:, 0] * 256 + tag[:, 1]


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Save ``arrays`` as a compressed ``.npz`` at ``path`` and return the path."""
    with open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def write_medmnist(path: Path, **kwargs: int) -> Path:
    """Write a synthetic MedMNIST file (keywords as :func:`medmnist_arrays`) to ``path``."""
    return write_npz(path, medmnist_arrays(**kwargs))


def grayscale_binary(directory: Path) -> Path:
    """A (N, 28, 28) grayscale, two-class file: 60/20/30 samples."""
    return write_medmnist(directory / "gray2.npz")


def rgb_multiclass(directory: Path) -> Path:
    """A (N, 28, 28, 3) RGB, five-class file: 100/25/50 samples."""
    return write_medmnist(
        directory / "rgb5.npz", n_train=100, n_val=25, n_test=50, num_classes=5, channels=3
    )


def random_bytes(path: Path, n: int = 4096, seed: int = 0) -> Path:
    """A file of random bytes with an ``.npz`` name: corrupt, not a zip at all."""
    path.write_bytes(np.random.default_rng(seed).bytes(n))
    return path


def truncated_copy(source: Path, path: Path, keep: float = 0.5) -> Path:
    """The first ``keep`` share of ``source``'s bytes: a zip cut short mid-download."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def corrupted_copy(source: Path, path: Path) -> Path:
    """``source`` with bytes in its middle overwritten: the zip directory is intact, data is not."""
    data = bytearray(source.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return path
