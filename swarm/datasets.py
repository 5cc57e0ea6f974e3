"""Dataset loaders: MedMNIST ``.npz`` files and the four-hospital UCI Heart Disease files.

Numpy only, local files only. Every loader validates what it reads and raises
:class:`~swarm.errors.DataError` with a one-line message naming the file (and line, for text
files), so a bad path or a corrupt download is reported where it happens, not as a shape
error deep inside training.

Heart Disease preprocessing (see :class:`HeartScaler`) is fitted per site, on that site's own
rows: in a federation no hospital sees another's statistics.
"""

from __future__ import annotations

import math
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
#: The four hospitals of the UCI Heart Disease data, in the fixed order :func:`load_heart` uses.
HEART_SITES = ("cleveland", "hungarian", "switzerland", "va")
#: Columns of a ``processed.*.data`` file; the last, ``num``, is the target.
HEART_COLUMNS = (
    "age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
    "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num",
)  # fmt: skip

_SPLITS = ("train", "val", "test")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError)

_RAW = HEART_COLUMNS[:-1]
_CONTINUOUS = ("age", "trestbps", "chol", "thalach", "oldpeak", "ca")
_CODES: dict[str, tuple[int, ...]] = {
    "sex": (0, 1), "fbs": (0, 1), "exang": (0, 1),
    "cp": (1, 2, 3, 4), "restecg": (0, 1, 2), "slope": (1, 2, 3), "thal": (3, 6, 7),
}  # fmt: skip
_BINARY = ("sex", "fbs", "exang")
_ONE_HOT = ("cp", "restecg", "slope", "thal")
#: A recorded 0 is physiologically impossible for these; the files use it for "not measured".
_ZERO_IS_MISSING = ("trestbps", "chol")
#: Every feature some hospital leaves blank; each gets a 0/1 "was missing" column.
_FLAGGED = (
    "trestbps", "chol", "fbs", "restecg", "thalach", "exang", "oldpeak", "slope", "ca", "thal",
)  # fmt: skip

#: Names of the columns :class:`HeartScaler` produces, in order.
HEART_FEATURE_NAMES: tuple[str, ...] = (
    *_CONTINUOUS,
    *_BINARY,
    *(f"{c}={v}" for c in _ONE_HOT for v in _CODES[c]),
    *(f"{c}_missing" for c in _FLAGGED),
)


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


def _asset(relative: str) -> Path:
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
    return _asset(f"{key}.npz")


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


# --------------------------------------------------------------------------- heart disease


@dataclass(frozen=True, eq=False)
class HeartSite:
    """One hospital's raw heart rows: ``features`` (N, 13) float64 with NaN for missing,
    ``target`` int64 (N,) equal to 1 where ``num > 0`` (disease)."""

    name: str
    features: np.ndarray
    target: np.ndarray


def _parse_heart_value(path: Path, lineno: int, column: str, field: str) -> float:
    text = field.strip()
    if text == "?":
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{path}, line {lineno}: {column} is not a number: {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{path}, line {lineno}: {column} is not finite: {text!r}")
    if column in _CODES and value not in _CODES[column]:
        allowed = ", ".join(str(v) for v in _CODES[column])
        raise DataError(f"{path}, line {lineno}: {column} is {text}; expected one of {allowed}")
    if column in _ZERO_IS_MISSING and value == 0:
        return math.nan
    return value


def _read_heart_file(path: Path, name: str) -> HeartSite:
    """Parse one ``processed.*.data`` file; errors name the file and line."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({_one_line(exc)})") from exc
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) != len(HEART_COLUMNS):
            raise DataError(
                f"{path}, line {lineno}: expected {len(HEART_COLUMNS)} comma-separated values,"
                f" found {len(fields)}"
            )
        row = [
            _parse_heart_value(path, lineno, c, f)
            for c, f in zip(HEART_COLUMNS, fields, strict=True)
        ]
        if math.isnan(row[-1]) or row[-1] < 0 or row[-1] != int(row[-1]):
            raise DataError(f"{path}, line {lineno}: num (the target) must be an integer >= 0")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no data rows")
    table = np.array(rows, dtype=np.float64)
    return HeartSite(name, table[:, :-1], (table[:, -1] > 0).astype(np.int64))


def read_heart(directory: str | Path | None = None) -> list[HeartSite]:
    """Read the four hospitals' raw rows (missing values as NaN), in :data:`HEART_SITES` order.

    ``directory`` holds ``processed.<site>.data``; ``None`` means the shipped copy. ``chol``
    and ``trestbps`` equal to 0 are read as missing (Switzerland records every ``chol`` as 0).

    Raises
    ------
    DataError
        If a file is missing or malformed (wrong column count, non-numeric value, unknown
        category code); the message names the file and line.
    """
    root = _asset("heart") if directory is None else Path(directory)
    return [_read_heart_file(root / f"processed.{site}.data", site) for site in HEART_SITES]


def _fill_value(column: np.ndarray, name: str) -> float:
    observed = column[~np.isnan(column)]
    if name in _CODES:
        if observed.size == 0:
            return float(_CODES[name][0])
        values, counts = np.unique(observed, return_counts=True)
        return float(values[np.argmax(counts)])
    return float(np.median(observed)) if observed.size else 0.0


def _encode(raw: np.ndarray, fill: np.ndarray) -> np.ndarray:
    missing = np.isnan(raw)
    filled = np.where(missing, fill, raw)
    col = {name: filled[:, j] for j, name in enumerate(_RAW)}
    parts = [col[c] for c in (*_CONTINUOUS, *_BINARY)]
    parts += [(col[c] == v).astype(np.float64) for c in _ONE_HOT for v in _CODES[c]]
    parts += [missing[:, _RAW.index(c)].astype(np.float64) for c in _FLAGGED]
    return np.stack(parts, axis=1)


def _check_raw(features: np.ndarray) -> np.ndarray:
    if not isinstance(features, np.ndarray) or features.ndim != 2 or features.shape[1] != len(_RAW):
        raise DataError(f"heart features must be an array of shape (N, {len(_RAW)})")
    return features.astype(np.float64)


@dataclass(frozen=True, eq=False)
class HeartScaler:
    """Imputation, encoding and standardization of heart features, fitted on one site's rows.

    Choices (fitted by :meth:`fit` on the rows it is given, normally one site's training rows,
    so no statistic crosses a hospital boundary):

    * missing continuous values (age, trestbps, chol, thalach, oldpeak, ca) take the median of
      the observed values; missing binary or categorical values take the most frequent code;
      a feature the site never records takes 0 / the first code (it is constant, so it
      standardizes to 0 and carries no signal at that site);
    * cp, restecg, slope and thal are one-hot encoded (their codes are not ordered);
    * every feature some hospital leaves blank gets a 0/1 ``<name>_missing`` column, so the model
      can tell an imputed value from a measured one;
    * every column is then standardized with the fitted mean and standard deviation (a
      constant column is only centered).

    The output columns are :data:`HEART_FEATURE_NAMES`.
    """

    fill: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> HeartScaler:
        """Fit imputation values and standardization statistics to raw ``(N, 13)`` rows.

        Raises
        ------
        DataError
            If ``features`` has the wrong shape or no rows.
        """
        raw = _check_raw(features)
        if len(raw) == 0:
            raise DataError("cannot fit heart preprocessing on zero rows")
        fill = np.array([_fill_value(raw[:, j], name) for j, name in enumerate(_RAW)])
        encoded = _encode(raw, fill)
        std = encoded.std(axis=0)
        return cls(fill, encoded.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Impute, encode and standardize raw ``(N, 13)`` rows into float32 ``(N, F)``.

        Raises
        ------
        DataError
            If ``features`` has the wrong shape.
        """
        encoded = _encode(_check_raw(features), self.fill)
        return ((encoded - self.mean) / self.scale).astype(np.float32)


def load_heart(directory: str | Path | None = None) -> list[tuple[str, ArrayDataset]]:
    """Load the four hospitals as ``[(site name, data)]`` in :data:`HEART_SITES` order.

    Each site is preprocessed with a :class:`HeartScaler` fitted on all of that site's rows
    (per-site standardization: data and statistics stay local, as in a real federation).
    :func:`swarm.partition.build_federation` instead fits on each site's training rows only,
    so its test rows do not leak into the statistics. Target is ``num > 0``; two classes.

    Raises
    ------
    DataError
        If a file is missing or malformed; the message names the file and line.
    """
    out = []
    for site in read_heart(directory):
        x = HeartScaler.fit(site.features).transform(site.features)
        out.append((site.name, ArrayDataset(x, site.target, 2)))
    return out
