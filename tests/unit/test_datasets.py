"""Loaders: MedMNIST .npz files (synthetic, shipped, broken)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from swarm.datasets import (
    ArrayDataset,
    builtin_path,
    concatenate,
    load_medmnist,
)
from swarm.errors import DataError
from tests import fixtures

# ----------------------------------------------------------------------------- MedMNIST


def test_grayscale_binary_file_loads_as_one_channel_two_classes(tmp_path: Path) -> None:
    data = load_medmnist(fixtures.grayscale_binary(tmp_path))

    assert (data.channels, data.num_classes) == (1, 2)
    assert data.train.x.shape == (60, 1, 28, 28)
    assert (len(data.train), len(data.val), len(data.test)) == (60, 20, 30)


def test_rgb_file_loads_channels_first_with_five_classes(tmp_path: Path) -> None:
    path = fixtures.rgb_multiclass(tmp_path)
    raw = np.load(path)["train_images"]

    data = load_medmnist(path)

    assert (data.channels, data.num_classes) == (3, 5)
    assert data.train.x.shape == (100, 3, 28, 28)
    np.testing.assert_allclose(data.train.x[7, 2] * 255, raw[7, :, :, 2], atol=1e-3)


def test_images_are_float32_in_unit_interval_and_labels_flat_int64(tmp_path: Path) -> None:
    path = fixtures.grayscale_binary(tmp_path)
    raw = np.load(path)

    data = load_medmnist(path)

    assert data.test.x.dtype == np.float32 and data.test.y.dtype == np.int64
    assert data.test.y.shape == (30,)
    assert data.test.x.min() >= 0.0 and data.test.x.max() <= 1.0
    np.testing.assert_allclose(data.test.x[:, 0] * 255, raw["test_images"], atol=1e-3)
    np.testing.assert_array_equal(data.test.y, raw["test_labels"].ravel())


def test_class_count_is_largest_label_over_all_splits_plus_one(tmp_path: Path) -> None:
    arrays = fixtures.medmnist_arrays()
    arrays["test_labels"][0, 0] = 6

    data = load_medmnist(fixtures.write_npz(tmp_path / "x.npz", arrays))

    assert data.num_classes == 7
    assert data.train.num_classes == data.val.num_classes == data.test.num_classes == 7


def test_flat_labels_and_single_channel_last_axis_are_accepted(tmp_path: Path) -> None:
    arrays = fixtures.medmnist_arrays(channels=1)
    for split in fixtures.SPLITS:
        arrays[f"{split}_images"] = arrays[f"{split}_images"][..., None]
        arrays[f"{split}_labels"] = arrays[f"{split}_labels"].ravel()

    data = load_medmnist(fixtures.write_npz(tmp_path / "x.npz", arrays))

    assert data.channels == 1 and data.train.y.shape == (60,)


def test_name_defaults_to_file_stem_and_can_be_given(tmp_path: Path) -> None:
    path = fixtures.grayscale_binary(tmp_path)

    assert load_medmnist(path).name == "gray2"
    assert load_medmnist(path, name="custom").name == "custom"


def test_shipped_breastmnist_has_known_counts() -> None:
    data = load_medmnist(builtin_path("breastmnist"))

    assert (len(data.train), len(data.val), len(data.test)) == (546, 78, 156)
    assert (data.channels, data.num_classes) == (1, 2)
    assert np.bincount(data.train.y).tolist() == [147, 399]
    assert np.bincount(data.test.y).tolist() == [42, 114]


def test_shipped_pneumoniamnist_has_known_counts() -> None:
    data = load_medmnist(builtin_path("PneumoniaMNIST"))

    assert (len(data.train), len(data.val), len(data.test)) == (4708, 524, 624)
    assert np.bincount(data.test.y).tolist() == [234, 390]


def test_builtin_path_unknown_name_lists_known_names() -> None:
    with pytest.raises(DataError, match="breastmnist, pneumoniamnist"):
        builtin_path("dermamnist")


def _missing_key(arrays: dict[str, np.ndarray]) -> None:
    del arrays["val_labels"]


def _short_labels(arrays: dict[str, np.ndarray]) -> None:
    arrays["train_labels"] = arrays["train_labels"][:-1]


def _flat_images(arrays: dict[str, np.ndarray]) -> None:
    arrays["test_images"] = arrays["test_images"].reshape(30, -1)


def _float_labels(arrays: dict[str, np.ndarray]) -> None:
    arrays["train_labels"] = arrays["train_labels"].astype(np.float32) + 0.5


def _negative_labels(arrays: dict[str, np.ndarray]) -> None:
    arrays["train_labels"] = arrays["train_labels"].astype(np.int64) - 1


def _multi_label(arrays: dict[str, np.ndarray]) -> None:
    arrays["train_labels"] = np.zeros((60, 14), dtype=np.uint8)


def _float_images(arrays: dict[str, np.ndarray]) -> None:
    arrays["val_images"] = arrays["val_images"].astype(np.float32)


def _object_labels(arrays: dict[str, np.ndarray]) -> None:
    arrays["val_labels"] = np.array([object()] * 20, dtype=object)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (_missing_key, "missing key"),
        (_short_labels, "60 rows but train_labels has 59"),
        (_flat_images, "expected \\(N, H, W\\)"),
        (_float_labels, "expected integers"),
        (_negative_labels, "negative"),
        (_multi_label, "multi-label"),
        (_float_images, "expected uint8"),
        (_object_labels, "not a readable|corrupt"),
    ],
)
def test_malformed_archive_raises_one_line_data_error_naming_file(
    tmp_path: Path, breakage, message: str
) -> None:
    arrays = fixtures.medmnist_arrays()
    breakage(arrays)
    path = fixtures.write_npz(tmp_path / "broken.npz", arrays)

    with pytest.raises(DataError, match=message) as info:
        load_medmnist(path)

    assert "broken.npz" in str(info.value) and "\n" not in str(info.value)


def test_random_bytes_raise_data_error(tmp_path: Path) -> None:
    path = fixtures.random_bytes(tmp_path / "noise.npz")

    with pytest.raises(DataError, match="noise.npz: not an .npz archive"):
        load_medmnist(path)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_truncated_archive_raises_data_error(tmp_path: Path, keep: float) -> None:
    path = fixtures.truncated_copy(fixtures.rgb_multiclass(tmp_path), tmp_path / "cut.npz", keep)

    with pytest.raises(DataError, match="cut.npz"):
        load_medmnist(path)


def test_corrupted_member_data_raises_data_error(tmp_path: Path) -> None:
    path = fixtures.corrupted_copy(fixtures.rgb_multiclass(tmp_path), tmp_path / "bad.npz")

    with pytest.raises(DataError, match="bad.npz: corrupt"):
        load_medmnist(path)


def test_single_npy_array_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    with open(path, "wb") as fh:
        np.save(fh, np.zeros(3))

    with pytest.raises(DataError, match="single array"):
        load_medmnist(path)


def test_missing_file_raises_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="absent.npz: no such file"):
        load_medmnist(tmp_path / "absent.npz")


# ----------------------------------------------------------------------------- ArrayDataset


def test_subset_and_concatenate_keep_rows_and_classes() -> None:
    ds = ArrayDataset(np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5), 5)

    sub = ds.subset(np.array([4, 0]))
    both = concatenate([sub, ds])

    assert len(sub) == 2 and sub.y.tolist() == [4, 0] and sub.x[0].tolist() == [8.0, 9.0]
    assert len(both) == 7 and both.num_classes == 5


@pytest.mark.parametrize(
    ("x", "y", "k"),
    [
        (np.zeros((3, 2), np.float32), np.zeros(2, np.int64), 2),
        (np.zeros((3, 2), np.float64), np.zeros(3, np.int64), 2),
        (np.zeros((3, 2), np.float32), np.array([0, 1, 2]), 2),
    ],
)
def test_array_dataset_rejects_inconsistent_arrays(x: np.ndarray, y: np.ndarray, k: int) -> None:
    with pytest.raises(DataError):
        ArrayDataset(x, y, k)
