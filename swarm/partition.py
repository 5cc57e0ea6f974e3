"""Seeded partitioners and the federation builder: how one dataset becomes many hospitals.

A partitioner maps labels to one index array per site (disjoint, sorted, covering every
index). :func:`build_federation` turns a dataset name into a :class:`Federation`: each site's
train and local test split, a held-out global test set and the pooled training data.

Randomness: one ``np.random.SeedSequence(seed)`` is spawned into independent streams for
partitioning, holdout, per-site splitting and per-site acquisition shift, so turning the shift
on or off does not change which samples each site holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import numpy as np

from swarm.datasets import (
    BUILTIN_MEDMNIST,
    ArrayDataset,
    MedMNIST,
    builtin_path,
    concatenate,
    load_medmnist,
)
from swarm.errors import ConfigError, DataError

_KINDS = ("iid", "dirichlet", "quantity", "sites")
_MAX_ATTEMPTS = 1000


def _checked(labels: np.ndarray, n_sites: int, alpha: float | None, min_size: int) -> np.ndarray:
    """Validate partitioner arguments; return ``labels`` as an array."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"labels must be a 1-D integer array, got {labels.dtype} {labels.shape}")
    _check_n_sites(n_sites)
    if alpha is not None and not (isinstance(alpha, Real) and 0 < alpha < math.inf):
        raise ConfigError("alpha", f"must be a finite number > 0, got {alpha!r}")
    if min_size < 0:
        raise ConfigError("min_size", f"must be >= 0, got {min_size}")
    if n_sites * min_size > len(labels):
        raise DataError(
            f"cannot give {n_sites} sites at least {min_size} samples each from {len(labels)}"
        )
    return labels


def _check_n_sites(n_sites: int) -> None:
    if isinstance(n_sites, bool) or not isinstance(n_sites, (int, np.integer)) or n_sites < 1:
        raise ConfigError("n_sites", f"must be an integer >= 1, got {n_sites!r}")


def partition_iid(labels: np.ndarray, n_sites: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle and deal the samples into ``n_sites`` near-equal parts (the IID baseline).

    Raises
    ------
    ConfigError
        If ``n_sites < 1``.
    DataError
        If there are fewer samples than sites.
    """
    labels = _checked(labels, n_sites, None, 1)
    return [np.sort(part) for part in np.array_split(rng.permutation(len(labels)), n_sites)]


def _dirichlet_draw(
    by_class: list[np.ndarray], n: int, n_sites: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    sizes = np.zeros(n_sites, dtype=np.int64)
    buckets: list[list[np.ndarray]] = [[] for _ in range(n_sites)]
    for members in by_class:
        open_sites = sizes < n / n_sites  # never all full while samples remain
        share = rng.dirichlet(np.full(n_sites, alpha)) * open_sites
        if share.sum() <= 0:  # tiny alpha put all mass on full sites: its limit, one site
            share[rng.choice(np.flatnonzero(open_sites))] = 1.0
        cuts = (np.cumsum(share / share.sum()) * len(members)).astype(np.int64)[:-1]
        for site, chunk in enumerate(np.split(rng.permutation(members), cuts)):
            buckets[site].append(chunk)
            sizes[site] += len(chunk)
    return [np.sort(np.concatenate(b)) for b in buckets]


def partition_dirichlet(
    labels: np.ndarray,
    n_sites: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
) -> list[np.ndarray]:
    """Label-skewed split: each class is shared among sites in Dirichlet(alpha) proportions.

    Small ``alpha`` gives each site few classes (strong non-IID); large ``alpha`` tends to
    IID. As in NIID-Bench (Li et al., 2022), a site already holding its fair share ``N /
    n_sites`` receives no more classes, which keeps sizes workable. The draw is repeated until
    every site has at least ``min_size`` samples.

    Raises
    ------
    ConfigError
        If ``n_sites < 1``, ``alpha <= 0`` or ``min_size < 0``.
    DataError
        If ``min_size`` cannot be met, up front or after 1000 draws.
    """
    labels = _checked(labels, n_sites, alpha, min_size)
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(_MAX_ATTEMPTS):
        parts = _dirichlet_draw(by_class, len(labels), n_sites, alpha, rng)
        if min(len(p) for p in parts) >= min_size:
            return parts
    raise DataError(
        f"dirichlet:{alpha} gave some of {n_sites} sites fewer than {min_size} samples"
        f" in {_MAX_ATTEMPTS} draws; raise alpha or lower n_sites"
    )


def partition_quantity(
    labels: np.ndarray,
    n_sites: int,
    alpha: float,
    rng: np.random.Generator,
    min_size: int = 10,
) -> list[np.ndarray]:
    """Quantity-skewed split: site sizes follow Dirichlet(alpha), labels are IID within sites.

    Each site first gets ``min_size`` samples; the rest are shared in Dirichlet(alpha)
    proportions (largest remainder rounding), so the call never needs to retry.

    Raises
    ------
    ConfigError
        If ``n_sites < 1``, ``alpha <= 0`` or ``min_size < 0``.
    DataError
        If there are fewer than ``n_sites * min_size`` samples.
    """
    labels = _checked(labels, n_sites, alpha, min_size)
    spare = len(labels) - n_sites * min_size
    exact = rng.dirichlet(np.full(n_sites, alpha)) * spare
    sizes = np.floor(exact).astype(np.int64)
    leftover = spare - int(sizes.sum())
    sizes[np.argsort(sizes - exact, kind="stable")[:leftover]] += 1
    cuts = np.cumsum(sizes + min_size)[:-1]
    return [np.sort(part) for part in np.split(rng.permutation(len(labels)), cuts)]


@dataclass(frozen=True)
class PartitionSpec:
    """How to split a dataset among sites: ``kind`` and, for dirichlet/quantity, ``alpha``.

    Raises
    ------
    ConfigError
        (field ``partition``) for an unknown kind, a missing or superfluous alpha, or
        alpha that is not a finite number > 0.
    """

    kind: str
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ConfigError("partition", f"unknown kind {self.kind!r}; expected one of {_KINDS}")
        if self.kind in ("iid", "sites"):
            if self.alpha is not None:
                raise ConfigError("partition", f"{self.kind} takes no alpha")
        elif not isinstance(self.alpha, Real) or not (math.isfinite(self.alpha) and self.alpha > 0):
            raise ConfigError("partition", f"{self.kind} needs alpha > 0, got {self.alpha!r}")

    def __str__(self) -> str:
        """Return the spec in the form :func:`parse_partition` reads."""
        return self.kind if self.alpha is None else f"{self.kind}:{self.alpha:g}"


def parse_partition(spec: str) -> PartitionSpec:
    """Parse ``iid``, ``dirichlet:ALPHA``, ``quantity:ALPHA`` or ``sites`` (command-line form).

    Raises
    ------
    ConfigError
        (field ``partition``) if ``spec`` is not one of those forms or alpha is not > 0.
    """
    if not isinstance(spec, str):
        raise ConfigError("partition", f"expected a string, got {type(spec).__name__}")
    kind, colon, value = spec.strip().lower().partition(":")
    if kind in ("iid", "sites") and not colon:
        return PartitionSpec(kind)
    if kind in ("dirichlet", "quantity") and colon:
        try:
            alpha = float(value)
        except ValueError:
            raise ConfigError("partition", f"{spec!r}: alpha {value!r} is not a number") from None
        return PartitionSpec(kind, alpha)
    raise ConfigError(
        "partition", f"{spec!r}: expected iid, dirichlet:ALPHA, quantity:ALPHA or sites"
    )


@dataclass(frozen=True, eq=False)
class Site:
    """One hospital: its training data and its local test split."""

    site_id: int
    name: str
    train: ArrayDataset
    test: ArrayDataset


@dataclass(frozen=True, eq=False)
class Federation:
    """Every site, a global test set no site trains on, and the pooled training data.

    ``central_train`` is the concatenation of the sites' training splits in site order (the
    "pool everything" reference); ``input_shape`` is ``(C, H, W)`` or ``(F,)``;
    ``class_names[k]`` names label ``k`` when the data named its classes (a CSV's labels).
    """

    name: str
    sites: list[Site]
    global_test: ArrayDataset
    central_train: ArrayDataset
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: tuple[str, ...] | None = None


def shift_images(x: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Mimic one scanner's acquisition: apply one drawn contrast, brightness and noise level.

    Draws (scaled by ``strength``) a contrast factor ``exp(U(-0.3, 0.3))`` about mid-grey, a
    brightness offset ``U(-0.1, 0.1)`` and a noise level ``U(0, 0.05)``, applies them to all of
    ``x`` (float, in [0, 1]) and clips to [0, 1]. ``strength=0`` returns an unchanged copy.

    Raises
    ------
    ConfigError
        (field ``site_shift``) if ``strength`` is negative or not finite.
    """
    if not math.isfinite(strength) or strength < 0:
        raise ConfigError("site_shift", f"must be a finite number >= 0, got {strength!r}")
    contrast = math.exp(rng.uniform(-0.3, 0.3) * strength)
    offset = rng.uniform(-0.1, 0.1) * strength
    noise = rng.uniform(0.0, 0.05) * strength
    out = (x.astype(np.float32) - 0.5) * contrast + 0.5 + offset
    out += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def split_stratified(
    labels: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (keep, test) with ~``fraction`` of each class in test, >= 1 each.

    Systematic sampling per class: each member gets key ``(rank + u) / class size`` for a
    random rank and one offset ``u``; the smallest keys go to test.
    """
    n = len(labels)
    if n < 2:
        raise DataError(f"cannot split {n} sample(s) into a train and a test part")
    n_test = min(max(round(fraction * n), 1), n - 1)
    key = np.empty(n)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        key[members] = (rng.permutation(len(members)) + rng.random()) / len(members)
    order = np.argsort(key, kind="stable")
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def partition_labels(
    labels: np.ndarray, n_sites: int, spec: PartitionSpec, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split sample positions among ``n_sites`` by ``spec`` (iid, dirichlet or quantity).

    Raises
    ------
    DataError
        If there are fewer than 2 samples per site (each needs a train and a test sample).
    """
    if len(labels) < 2 * n_sites:
        raise DataError(
            f"{len(labels)} samples cannot make {n_sites} sites of at least 2 (train + test)"
        )
    if spec.kind == "iid":
        return partition_iid(labels, n_sites, rng)
    if spec.alpha is None:  # unreachable: PartitionSpec validates; narrows the type
        raise ConfigError("partition", f"{spec.kind} needs alpha")
    if spec.kind == "dirichlet":
        return partition_dirichlet(labels, n_sites, spec.alpha, rng)
    return partition_quantity(labels, n_sites, spec.alpha, rng)


def spawn_rngs(seq: np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    """``n`` independent generators spawned from ``seq`` (one per site)."""
    return [np.random.default_rng(s) for s in seq.spawn(n)]


def _federation(
    name: str, sites: list[Site], global_test: ArrayDataset, input_shape: tuple[int, ...],
    central: ArrayDataset | None = None,
) -> Federation:
    central = concatenate([s.train for s in sites]) if central is None else central
    return Federation(name, sites, global_test, central, central.num_classes, input_shape)


def _medmnist_federation(
    data: MedMNIST,
    n_sites: int,
    spec: PartitionSpec,
    streams: list[np.random.SeedSequence],
    site_shift: float,
    fraction: float,
) -> Federation:
    if spec.kind == "sites":
        raise ConfigError(
            "partition", f"'sites' needs natural hospitals (heart, or a CSV's site column); {data.name} has none"
        )
    pool = concatenate([data.train, data.val])
    parts = partition_labels(pool.y, n_sites, spec, np.random.default_rng(streams[0]))
    split_rngs, shift_rngs = spawn_rngs(streams[2], n_sites), spawn_rngs(streams[3], n_sites)
    splits = []
    for i, idx in enumerate(parts):
        keep, test = split_stratified(pool.y[idx], fraction, split_rngs[i])
        splits.append((idx[keep], idx[test]))
    # one copy of the pool in site order (every site's train, then every site's local test):
    # each site's splits and the pooled training data are slices (views) of it, not copies
    trains, tests = [len(tr) for tr, _ in splits], [len(te) for _, te in splits]
    order = np.concatenate([tr for tr, _ in splits] + [te for _, te in splits])
    x, y = pool.x[order], pool.y[order]
    del pool
    train_at = np.concatenate([[0], np.cumsum(trains)])
    test_at = train_at[-1] + np.concatenate([[0], np.cumsum(tests)])
    sites = []
    for i in range(n_sites):
        tr, te = slice(train_at[i], train_at[i + 1]), slice(test_at[i], test_at[i + 1])
        if site_shift > 0:
            both = shift_images(np.concatenate([x[tr], x[te]]), shift_rngs[i], site_shift)
            x[tr], x[te] = both[: trains[i]], both[trains[i]:]
        sites.append(Site(i, f"site-{i}", ArrayDataset(x[tr], y[tr], data.num_classes),
                          ArrayDataset(x[te], y[te], data.num_classes)))
    central = ArrayDataset(x[: train_at[-1]], y[: train_at[-1]], data.num_classes)
    return _federation(data.name, sites, data.test, tuple(data.train.x.shape[1:]), central)


def _resolve_medmnist(dataset: str | Path, data_path: str | Path | None) -> tuple[Path, str]:
    name = str(dataset).strip().lower()
    if name in BUILTIN_MEDMNIST:
        return (Path(data_path) if data_path is not None else builtin_path(name)), name
    if data_path is not None:
        raise ConfigError("data_path", "only used with breastmnist or pneumoniamnist")
    path = Path(dataset)
    if not path.exists():
        raise DataError(
            f"unknown dataset '{dataset}': expected breastmnist, pneumoniamnist, heart"
            " or a path to a MedMNIST .npz"
        )
    return path, path.stem


def build_federation(
    dataset: str | Path,
    n_sites: int | None,
    partition: PartitionSpec,
    *,
    seed: int,
    site_shift: float = 0.0,
    local_test_fraction: float = 0.2,
    data_path: str | Path | None = None,
) -> Federation:
    """Split a dataset into ``n_sites`` hospitals, deterministically for ``seed``.

    ``n_sites=None`` is allowed with the ``sites`` partition only: as many sites as the data
    has hospitals.

    ``dataset`` is ``breastmnist``, ``pneumoniamnist``, ``heart`` or a path to a MedMNIST
    ``.npz``; ``data_path`` replaces the shipped copy of a named MedMNIST dataset.

    * MedMNIST: train and val are pooled and partitioned (the sites' local test splits play
      the role of validation); each site's share is split stratified into train and local
      test (``local_test_fraction``, at least one sample each). The file's test split is the
      global test set. ``site_shift > 0`` applies :func:`shift_images` with one draw per site
      to that site's train and local test; the global test set stays unshifted.
    * heart: its shipped CSV through the tabular loader (:func:`swarm.heart.heart_federation`).

    Raises
    ------
    ConfigError
        For invalid settings (field named): ``n_sites``, ``partition`` (``sites`` on MedMNIST),
        ``site_shift`` (negative, or used with heart), ``local_test_fraction``, ``seed``,
        ``data_path``.
    DataError
        For an unknown dataset, an unreadable file, or too few samples for the sites.
    """
    if not isinstance(partition, PartitionSpec):
        raise ConfigError("partition", f"expected a PartitionSpec, got {partition!r}")
    if n_sites is not None or partition.kind != "sites":
        _check_n_sites(n_sites)
    if not (0 < local_test_fraction < 1):
        raise ConfigError("local_test_fraction", f"must lie in (0, 1), got {local_test_fraction}")
    if not math.isfinite(site_shift) or site_shift < 0:
        raise ConfigError("site_shift", f"must be a finite number >= 0, got {site_shift!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", f"must be an integer >= 0, got {seed!r}")
    # Independent streams: partition, global holdout, per-site split, per-site shift.
    streams = np.random.SeedSequence(int(seed)).spawn(4)
    if str(dataset).strip().lower() == "heart":
        if data_path is not None:
            raise ConfigError("data_path", "heart is a CSV: give its path as the data instead")
        from swarm.heart import heart_federation  # the CSV loader builds on this module

        return heart_federation(n_sites, partition, seed=int(seed), site_shift=site_shift,
                                local_test_fraction=local_test_fraction)
    path, name = _resolve_medmnist(dataset, data_path)
    data = load_medmnist(path, name=name)
    if n_sites is None:
        raise ConfigError("partition", f"'sites' needs natural hospitals (a site column); {name} has none")
    return _medmnist_federation(data, n_sites, partition, streams, site_shift, local_test_fraction)
