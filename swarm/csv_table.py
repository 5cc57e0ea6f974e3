"""Reading a data CSV: its rows, their labels, splits and sites, checked row by row.

One CSV describes a data set: either an image folder (an ``image`` column of paths relative
to the CSV) or a table of patient features (``--label-column``). Optional ``split``
(``train`` / ``val`` / ``test``) and ``site`` columns say where each row belongs. Every
error is a :class:`~swarm.errors.DataError` naming the file and the row (the line number,
the header being line 1), raised before anything is kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from swarm.errors import DataError

#: the values the optional ``split`` column may hold
SPLITS = ("train", "val", "test")


@dataclass(frozen=True, eq=False)
class CsvTable:
    """The rows of a data CSV, with labels already mapped to class indices.

    Attributes
    ----------
    path: the CSV file.
    columns: the header, in file order.
    cells: ``cells[name][i]``: the text of column ``name`` in row ``i`` (stripped).
    lines: ``lines[i]``: the line number of row ``i`` in the file, for error messages.
    labels: int64 class index per row.
    class_names: name of each class index (the label text; integers stay as written).
    split: ``train``/``val``/``test`` per row, or ``None`` without a ``split`` column.
    site: site name per row (``""`` where empty), or ``None`` without a ``site`` column.
    """

    path: Path
    columns: tuple[str, ...]
    cells: dict[str, list[str]]
    lines: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    split: tuple[str, ...] | None
    site: tuple[str, ...] | None

    def __len__(self) -> int:
        """Return the number of rows."""
        return len(self.labels)

    def where(self, i: int) -> str:
        """``"FILE, row N"`` of row ``i``, the prefix of every error about it."""
        return f"{self.path}, row {int(self.lines[i])}"


def read_header(path: str | Path) -> tuple[str, ...]:
    """The column names of a CSV (its first non-empty line).

    Raises
    ------
    DataError
        If the file is missing, unreadable or empty.
    """
    rows = _read_rows(Path(path))
    return tuple(c.strip() for c in rows[0][1])


def site_names(path: str | Path) -> tuple[str, ...]:
    """The distinct non-empty values of a CSV's ``site`` column, sorted (none without one).

    Reads only the text (no images): how ``medswarm launch`` learns how many peers
    ``--partition sites`` needs before it starts them.

    Raises
    ------
    DataError
        If the file is missing, unreadable or empty.
    """
    rows = _read_rows(Path(path))
    columns = [c.strip() for c in rows[0][1]]
    if "site" not in columns:
        return ()
    j = columns.index("site")
    return tuple(sorted({row[j].strip() for _, row in rows[1:] if len(row) > j and row[j].strip()}))


def _read_rows(path: Path) -> list[tuple[int, list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if not rows:
        raise DataError(f"{path}: empty file")
    return rows


def _map_labels(path: Path, texts: list[str], lines: list[int], column: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integers are class indices (every class from 0 to the largest must occur); names are
    mapped in sorted order."""
    for text, line in zip(texts, lines):
        if text == "":
            raise DataError(f"{path}, row {line}: empty {column!r}")
    try:
        values = [int(t) for t in texts]
    except ValueError:
        names = tuple(sorted(set(texts)))
        index = {name: k for k, name in enumerate(names)}
        labels = np.array([index[t] for t in texts], dtype=np.int64)
    else:
        for value, line in zip(values, lines):
            if value < 0:
                raise DataError(f"{path}, row {line}: {column} {value} is negative; integer labels are "
                                "class indices 0, 1, ...")
        labels = np.array(values, dtype=np.int64)
        names = tuple(str(k) for k in range(int(labels.max()) + 1))
        absent = sorted(set(range(len(names))) - set(values))
        if absent:
            raise DataError(f"{path}: class {absent[0]} has no examples (integer labels must be 0 to "
                            f"{len(names) - 1}, each present)")
    if len(names) < 2:
        raise DataError(f"{path}: every row has {column} {names[0]!r}; at least 2 classes are needed")
    return labels, names


def read_csv_table(path: str | Path, label_column: str, required: tuple[str, ...] = ()) -> CsvTable:
    """Read and check a data CSV whose target is ``label_column``.

    Raises
    ------
    DataError
        If the file is missing or unreadable, a column (``label_column`` or one of
        ``required``) is missing, a row has the wrong number of cells, a label is empty or
        negative, an integer class has no examples, there are fewer than 2 classes, or a
        ``split`` value is not train/val/test. The message names the file and the row.
    """
    path = Path(path)
    rows = _read_rows(path)
    columns = tuple(c.strip() for c in rows[0][1])
    if len(set(columns)) != len(columns):
        raise DataError(f"{path}: the header repeats a column name")
    for name in (label_column, *required):
        if name not in columns:
            raise DataError(f"{path}: no {name!r} column (columns: {', '.join(columns)})")
    body = rows[1:]
    if not body:
        raise DataError(f"{path}: no data rows")
    cells: dict[str, list[str]] = {c: [] for c in columns}
    for line, row in body:
        if len(row) != len(columns):
            raise DataError(f"{path}, row {line}: {len(row)} cells, the header has {len(columns)}")
        for name, cell in zip(columns, row):
            cells[name].append(cell.strip())
    lines = [line for line, _ in body]
    labels, names = _map_labels(path, cells[label_column], lines, label_column)
    split = None
    if "split" in cells:
        split = tuple(s.lower() for s in cells["split"])
        for value, line in zip(split, lines):
            if value not in SPLITS:
                raise DataError(f"{path}, row {line}: split {value!r} is not one of train, val, test")
    site = tuple(cells["site"]) if "site" in cells else None
    return CsvTable(path, columns, cells, np.array(lines), labels, names, split, site)
