"""``--data PATH.csv``: an image folder's labels, or a table of patient features, as sites.

Which rows go where:

* ``split`` column: rows of split ``test`` with an empty ``site`` are the global test set.
  With ``--partition sites``, a site's ``train`` rows are its training data and its ``val``
  and ``test`` rows its local test split (what a peer validates on). With any other
  partition, every ``test`` row is global test and the other rows are pooled and split
  among the sites as for MedMNIST.
* no ``split`` column: each site keeps a seeded, stratified 20 % as its local test split.
* no global test rows: the global test set is the union of the sites' local test splits
  (no site trains on any of it), unless the loader is given a ``holdout`` share: then, with
  no ``split`` column, that seeded stratified share of each site's rows (of all rows, for a
  synthetic partition) is held out first as the global test set (the shipped ``heart``: 20 %).
* ``--partition sites`` takes the ``site`` column: one site per distinct name, in sorted
  order; ``--peers``/``--sites`` may be left out, or must equal that count.
* tables: with ``sites``, each site's preprocessing (``swarm.tabular_csv``) is fitted on its
  own training rows; global test rows (no site) and synthetic partitions use one fitted on
  all sites' training rows; held-out rows of a site take that site's preprocessing.

Everything is read and checked before anything is returned: a bad row is a one-line
:class:`~swarm.errors.DataError` naming the file and row, never a half-loaded federation.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from swarm.csv_table import CsvTable, read_csv_table, read_header
from swarm.datasets import ArrayDataset
from swarm.errors import ConfigError, DataError
from swarm.image_folder import ImageOptions, ProgressFn, load_images
from swarm.partition import (
    Federation,
    PartitionSpec,
    Site,
    concatenate,
    partition_labels,
    shift_images,
    spawn_rngs,
    split_stratified,
)
from swarm.tabular_csv import RawTable, TableScaler, infer_schema, raw_table

if TYPE_CHECKING:
    from swarm.task import DataRequest

#: folders at least this large show a progress bar while loading
PROGRESS_FROM = 500
_RESERVED = ("site", "split")


@dataclass(frozen=True, eq=False)
class _Layout:
    """Row indices per site (train, local test, held out for the global test set) and of the
    global test rows of no site."""

    names: list[str]
    train: list[np.ndarray]
    test: list[np.ndarray]
    hold: list[np.ndarray]
    glob: np.ndarray


def _sites_layout(table: CsvTable, n_sites: int | None, fraction: float, holdout: float,
                  rngs_seq: np.random.SeedSequence) -> _Layout:
    if table.site is None:
        raise ConfigError("partition", f"'sites' needs a 'site' column; {table.path} has none")
    site = np.array(table.site, dtype=object)
    split = np.array(table.split, dtype=object) if table.split is not None else None
    glob = np.flatnonzero((site == "") & (split == "test")) if split is not None else np.array([], dtype=np.int64)
    orphan = np.flatnonzero(site == "")
    orphan = orphan[~np.isin(orphan, glob)]
    if len(orphan):
        raise DataError(f"{table.where(int(orphan[0]))}: empty site (only rows of split test may have no site)")
    names = sorted(set(table.site) - {""})
    if n_sites is not None and n_sites != len(names):
        raise ConfigError("n_sites", f"{table.path} has {len(names)} sites ({', '.join(names)}); 'sites' needs "
                                     f"{len(names)} peers, got {n_sites}")
    trains, tests, holds = [], [], []
    for name, rng in zip(names, spawn_rngs(rngs_seq, len(names))):
        rows = np.flatnonzero(site == name)
        hold = np.array([], dtype=np.int64)
        if split is None and holdout > 0:
            if len(rows) < 3:
                raise DataError(f"{table.path}: site {name!r} has {len(rows)} row(s); at least 3 are needed "
                                "(train, test and held out)")
            rest, held_out = split_stratified(table.labels[rows], holdout, rng)
            rows, hold = rows[rest], rows[held_out]
        if split is not None:
            train, test = rows[split[rows] == "train"], rows[split[rows] != "train"]
            if not len(train) or not len(test):
                missing = "train" if not len(train) else "val or test"
                raise DataError(f"{table.path}: site {name!r} has no {missing} rows")
        else:
            if len(rows) < 2:
                raise DataError(f"{table.path}: site {name!r} has {len(rows)} row(s) ({table.where(int(rows[0]))}); "
                                "at least 2 are needed (train and test)")
            keep, held = split_stratified(table.labels[rows], fraction, rng)
            train, test = rows[keep], rows[held]
        trains.append(train)
        tests.append(test)
        holds.append(hold)
    return _Layout(names, trains, tests, holds, glob)


def _pooled_layout(table: CsvTable, n_sites: int, spec: PartitionSpec, fraction: float, holdout: float,
                   streams: list[np.random.SeedSequence]) -> _Layout:
    split = np.array(table.split, dtype=object) if table.split is not None else None
    glob = np.flatnonzero(split == "test") if split is not None else np.array([], dtype=np.int64)
    pool = np.setdiff1d(np.arange(len(table)), glob)
    if split is None and holdout > 0:
        rest, held_out = split_stratified(table.labels, holdout, np.random.default_rng(streams[1]))
        pool, glob = rest, held_out
    parts = partition_labels(table.labels[pool], n_sites, spec, np.random.default_rng(streams[0]))
    trains, tests = [], []
    for idx, rng in zip(parts, spawn_rngs(streams[2], n_sites)):
        keep, held = split_stratified(table.labels[pool[idx]], fraction, rng)
        trains.append(pool[idx[keep]])
        tests.append(pool[idx[held]])
    return _Layout([f"site-{i}" for i in range(n_sites)], trains, tests, [np.array([], dtype=np.int64)] * n_sites, glob)


@contextmanager
def _progress(total: int, label: str) -> Iterator[ProgressFn | None]:
    """A transient rich progress bar on stderr for large folders; nothing for small ones."""
    if total < PROGRESS_FROM:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=sys.stderr), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda done, _total: bar.update(task, completed=done)


def _image_sites(table: CsvTable, layout: _Layout, request: DataRequest,
                 shift_seq: np.random.SeedSequence) -> tuple[list[Site], ArrayDataset, tuple[int, ...]]:
    for i, text in enumerate(table.cells["image"]):
        if not text:
            raise DataError(f"{table.where(i)}: empty 'image'")
    paths = [table.path.parent / text for text in table.cells["image"]]
    options = ImageOptions(request.image_size, request.channels, request.window)
    with _progress(len(paths), f"loading {len(paths)} images") as progress:
        pixels = load_images(paths, table.where, options, progress)
    k = len(table.class_names)

    def rows(idx: np.ndarray) -> ArrayDataset:
        return ArrayDataset(pixels[idx].astype(np.float32) / np.float32(255.0), table.labels[idx], k)

    sites = []
    for i, (name, train_idx, test_idx, rng) in enumerate(
            zip(layout.names, layout.train, layout.test, spawn_rngs(shift_seq, len(layout.names)))):
        train, test = rows(train_idx), rows(test_idx)
        if request.site_shift > 0:
            both = shift_images(np.concatenate([train.x, test.x]), rng, request.site_shift)
            train, test = ArrayDataset(both[: len(train)], train.y, k), ArrayDataset(both[len(train):], test.y, k)
        sites.append(Site(i, name, train, test))
    held = [rows(h) for h in (*layout.hold, layout.glob) if len(h)]
    glob = concatenate(held) if held else concatenate([s.test for s in sites])
    return sites, glob, tuple(pixels.shape[1:])


def _table_sites(table: CsvTable, layout: _Layout, request: DataRequest,
                 per_site: bool) -> tuple[list[Site], ArrayDataset, tuple[int, ...]]:
    if request.site_shift > 0:
        raise ConfigError("site_shift", "applies to images only, not to a table")
    label = request.label_column or "label"
    features = tuple(c for c in table.columns if c not in (label, *_RESERVED))
    schema = infer_schema(table, features)
    raw = raw_table(table, schema)
    k = len(table.class_names)
    pooled = TableScaler.fit(schema, raw.rows(np.concatenate(layout.train)))

    def rows(scaler: TableScaler, idx: np.ndarray) -> ArrayDataset:
        part: RawTable = raw.rows(idx)
        return ArrayDataset(scaler.transform(part), table.labels[idx], k)

    sites, held = [], []
    for i, (name, train_idx, test_idx, hold_idx) in enumerate(
            zip(layout.names, layout.train, layout.test, layout.hold)):
        scaler = TableScaler.fit(schema, raw.rows(train_idx)) if per_site else pooled
        sites.append(Site(i, name, rows(scaler, train_idx), rows(scaler, test_idx)))
        if len(hold_idx):
            held.append(rows(scaler, hold_idx))
    # rows of no site have no site statistics: they take those of all sites' training rows
    if len(layout.glob):
        held.append(rows(pooled, layout.glob))
    glob = concatenate(held) if held else concatenate([s.test for s in sites])
    return sites, glob, (len(schema.feature_names),)


def load_csv_federation(request: DataRequest, spec: PartitionSpec, *, holdout: float = 0.0,
                        name: str | None = None) -> Federation:
    """Build the sites of ``request.data`` (a CSV), deterministically for ``request.seed``.

    An ``image`` column makes it an image folder (labels in ``label``, or ``--label-column``);
    otherwise it is a table whose target is ``--label-column``. See the module docstring for
    where rows go; ``holdout`` is the share of each site held out as the global test set when
    the file has no ``split`` column; ``name`` names the federation (default: the file's stem).

    Raises
    ------
    ConfigError
        For options that do not fit the file (a table without ``--label-column``, ``sites``
        without a ``site`` column, a site count other than the file's, image options on a table).
    DataError
        For a missing column, a bad label or split, an unreadable image, a site with too few
        rows; the message names the file and row.
    """
    path = Path(request.data)
    columns = read_header(path)
    images = "image" in columns
    if not images and request.label_column is None:
        raise ConfigError("label_column", f"{path} has no 'image' column: a table needs --label-column NAME")
    if not images and (request.image_size, request.channels, request.window) != (None, None, None):
        raise ConfigError("image_size", f"{path} is a table: --image-size, --channels and --window apply to images")
    if not 0 <= holdout < 1:
        raise ConfigError("holdout", f"must lie in [0, 1), got {holdout}")
    table = read_csv_table(path, request.label_column or "label", ("image",) if images else ())
    streams = np.random.SeedSequence(int(request.seed)).spawn(4)
    fraction = request.local_test_fraction
    if spec.kind == "sites":
        layout = _sites_layout(table, request.n_sites, fraction, holdout, streams[2])
    else:
        if request.n_sites is None:
            raise ConfigError("n_sites", f"{spec} needs a number of sites (--peers)")
        layout = _pooled_layout(table, request.n_sites, spec, fraction, holdout, streams)
    if images:
        sites, glob, shape = _image_sites(table, layout, request, streams[3])
    else:
        sites, glob, shape = _table_sites(table, layout, request, per_site=spec.kind == "sites")
    central = concatenate([s.train for s in sites])
    return Federation(name or path.stem, sites, glob, central, len(table.class_names), shape, table.class_names)
