"""Patient features from a CSV: numeric and categorical columns, missing cells, per-site scaling.

The same choices as the heart loader (``swarm.datasets.HeartScaler``), for any table:

* a column is numeric when every non-empty cell is a number, otherwise categorical; the
  categories (sorted) come from the whole file, so every site encodes the same columns;
* empty cells (also ``NA``, ``NaN``, ``?``) are missing: a numeric one takes the median of the
  site's training rows, a categorical one their most frequent category; every column with a
  missing cell anywhere in the file gets a 0/1 ``<name>_missing`` column;
* categorical columns are one-hot encoded; every column is then standardized with the mean
  and standard deviation of the rows it was fitted on (a constant column is only centred).

:meth:`TableScaler.fit` is called on one site's training rows, so no statistic crosses a
hospital boundary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from swarm.csv_table import CsvTable
from swarm.errors import DataError

#: cell texts read as missing
MISSING = ("", "na", "nan", "?", "null", "none")


def _is_missing(text: str) -> bool:
    return text.lower() in MISSING


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class TableSchema:
    """Which columns are features and how each is encoded (fixed for the whole file)."""

    numeric: tuple[str, ...]
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    flagged: tuple[str, ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the encoded columns, in order."""
        return (*self.numeric, *(f"{c}={v}" for c, values in self.categories for v in values),
                *(f"{c}_missing" for c in self.flagged))


def infer_schema(table: CsvTable, features: tuple[str, ...]) -> TableSchema:
    """Decide numeric or categorical per feature column, and which columns have missing cells.

    Raises
    ------
    DataError
        If there are no feature columns, or a column is empty in every row.
    """
    if not features:
        raise DataError(f"{table.path}: no feature columns besides the label, site and split")
    numeric, categories, flagged = [], [], []
    for name in features:
        present = [t for t in table.cells[name] if not _is_missing(t)]
        if not present:
            raise DataError(f"{table.path}: column {name!r} is empty in every row")
        if len(present) < len(table):
            flagged.append(name)
        if all(_number(t) is not None for t in present):
            numeric.append(name)
        else:
            categories.append((name, tuple(sorted(set(present)))))
    return TableSchema(tuple(numeric), tuple(categories), tuple(flagged))


@dataclass(frozen=True, eq=False)
class RawTable:
    """The feature cells as numbers: ``numeric`` (N, n) with NaN where missing and
    ``codes`` (N, m) category indices with -1 where missing."""

    numeric: np.ndarray
    codes: np.ndarray

    def rows(self, idx: np.ndarray) -> RawTable:
        """The rows at ``idx``."""
        return RawTable(self.numeric[idx], self.codes[idx])


def raw_table(table: CsvTable, schema: TableSchema) -> RawTable:
    """Parse every feature cell (the schema guarantees numeric columns parse)."""
    numeric = np.array([[math.nan if _is_missing(t) else float(t) for t in table.cells[c]] for c in schema.numeric],
                       dtype=np.float64).reshape(len(schema.numeric), len(table)).T
    codes = np.full((len(table), len(schema.categories)), -1, dtype=np.int64)
    for j, (name, values) in enumerate(schema.categories):
        index = {v: k for k, v in enumerate(values)}
        codes[:, j] = [-1 if _is_missing(t) else index[t] for t in table.cells[name]]
    return RawTable(numeric, codes)


@dataclass(frozen=True, eq=False)
class TableScaler:
    """Imputation values and standardization statistics fitted on some rows (one site's)."""

    schema: TableSchema
    fill_numeric: np.ndarray
    fill_codes: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, schema: TableSchema, raw: RawTable) -> TableScaler:
        """Fit to ``raw`` (normally one site's training rows).

        Raises
        ------
        DataError
            If ``raw`` has no rows.
        """
        if len(raw.numeric) == 0:
            raise DataError("cannot fit table preprocessing on zero rows")
        fill_numeric = np.array([np.median(col[~np.isnan(col)]) if (~np.isnan(col)).any() else 0.0
                                 for col in raw.numeric.T])
        fill_codes = np.array([np.bincount(col[col >= 0]).argmax() if (col >= 0).any() else 0
                               for col in raw.codes.T], dtype=np.int64)
        encoded = _encode(schema, raw, fill_numeric, fill_codes)
        std = encoded.std(axis=0)
        return cls(schema, fill_numeric, fill_codes, encoded.mean(axis=0), np.where(std > 1e-8, std, 1.0))

    def transform(self, raw: RawTable) -> np.ndarray:
        """Impute, encode and standardize ``raw`` into float32 ``(N, F)``."""
        encoded = _encode(self.schema, raw, self.fill_numeric, self.fill_codes)
        return ((encoded - self.mean) / self.scale).astype(np.float32)


def _encode(schema: TableSchema, raw: RawTable, fill_numeric: np.ndarray, fill_codes: np.ndarray) -> np.ndarray:
    n = len(raw.numeric)
    parts = [np.where(np.isnan(raw.numeric), fill_numeric, raw.numeric)]
    codes = np.where(raw.codes < 0, fill_codes, raw.codes)
    for j, (_, values) in enumerate(schema.categories):
        parts.append((codes[:, j][:, None] == np.arange(len(values))[None, :]).astype(np.float64))
    numeric_names = list(schema.numeric)
    category_names = [c for c, _ in schema.categories]
    for name in schema.flagged:
        if name in numeric_names:
            missing = np.isnan(raw.numeric[:, numeric_names.index(name)])
        else:
            missing = raw.codes[:, category_names.index(name)] < 0
        parts.append(missing.astype(np.float64)[:, None])
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
