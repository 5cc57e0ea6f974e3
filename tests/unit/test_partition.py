"""Partitioners, partition specs, scanner shift and the federation builder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.datasets import builtin_path, load_medmnist
from swarm.heart import heart_sites
from swarm.errors import ConfigError, DataError
from swarm.partition import (
    Federation,
    PartitionSpec,
    build_federation,
    parse_partition,
    partition_dirichlet,
    partition_iid,
    partition_quantity,
    shift_images,
)
from tests import fixtures

Partitioner = Callable[[np.ndarray, int, np.random.Generator], list[np.ndarray]]

PARTITIONERS: dict[str, Partitioner] = {
    "iid": partition_iid,
    "dirichlet": lambda y, n, rng: partition_dirichlet(y, n, 0.5, rng),
    "quantity": lambda y, n, rng: partition_quantity(y, n, 1.0, rng),
}


def _labels(n: int = 1000, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n)


def _mean_tv(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance of site label distributions from the global one."""
    k = labels.max() + 1
    overall = np.bincount(labels, minlength=k) / len(labels)
    return float(
        np.mean([0.5 * np.abs(np.bincount(labels[p], minlength=k) / len(p) - overall).sum()
                 for p in parts])
    )  # fmt: skip


# ----------------------------------------------------------------------------- partitioners


@pytest.mark.parametrize("kind", PARTITIONERS)
def test_partition_is_disjoint_and_covers_every_index(kind: str) -> None:
    labels = _labels()

    parts = PARTITIONERS[kind](labels, 8, np.random.default_rng(1))

    assert len(parts) == 8
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(labels)))


@pytest.mark.parametrize("kind", PARTITIONERS)
def test_partition_is_deterministic_per_seed_and_varies_across_seeds(kind: str) -> None:
    labels = _labels()

    def run(seed: int) -> list[np.ndarray]:
        return PARTITIONERS[kind](labels, 5, np.random.default_rng(seed))

    assert all(np.array_equal(a, b) for a, b in zip(run(3), run(3), strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(run(3), run(4), strict=True))


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 200),
    classes=st.integers(1, 6),
    n_sites=st.integers(1, 12),
    alpha=st.floats(0.05, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_every_partitioner_yields_an_exact_cover(
    n: int, classes: int, n_sites: int, alpha: float, seed: int
) -> None:
    labels = np.random.default_rng(seed).integers(0, classes, size=n)
    rng = np.random.default_rng(seed)
    runs = [
        partition_dirichlet(labels, n_sites, alpha, rng, min_size=0),
        partition_quantity(labels, n_sites, alpha, rng, min_size=0),
    ]
    if n >= n_sites:
        runs.append(partition_iid(labels, n_sites, rng))

    for parts in runs:
        assert len(parts) == n_sites
        np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(n))


def test_dirichlet_small_alpha_skews_labels_more_than_large_alpha() -> None:
    labels = _labels(2000)

    skewed = _mean_tv(labels, partition_dirichlet(labels, 10, 0.1, np.random.default_rng(0)))
    mild = _mean_tv(labels, partition_dirichlet(labels, 10, 100.0, np.random.default_rng(0)))

    assert skewed > 0.5 and mild < 0.1


@pytest.mark.parametrize("partitioner", [partition_dirichlet, partition_quantity])
def test_min_size_is_respected(partitioner: Callable[..., list[np.ndarray]]) -> None:
    labels = _labels(500)

    parts = partitioner(labels, 10, 0.1, np.random.default_rng(0), min_size=25)

    assert min(len(p) for p in parts) >= 25


def test_dirichlet_gives_up_with_data_error_when_min_size_is_unreachable() -> None:
    labels = np.zeros(100, dtype=np.int64)  # one class: sizes are one Dirichlet draw

    with pytest.raises(DataError, match="fewer than 25 samples"):
        partition_dirichlet(labels, 4, 0.01, np.random.default_rng(0), min_size=25)


def test_quantity_skew_sizes_vary_with_alpha() -> None:
    labels = _labels(2000)

    sizes_skewed = [len(p) for p in partition_quantity(labels, 10, 0.5, np.random.default_rng(0))]
    sizes_even = [len(p) for p in partition_quantity(labels, 10, 1e4, np.random.default_rng(0))]

    assert max(sizes_skewed) > 2 * min(sizes_skewed)
    assert max(sizes_even) - min(sizes_even) <= 10


def test_quantity_skew_keeps_labels_iid_within_sites() -> None:
    labels = _labels(4000, classes=4)

    parts = partition_quantity(labels, 4, 1e4, np.random.default_rng(0))

    assert _mean_tv(labels, parts) < 0.05


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: partition_iid(_labels(5), 0, np.random.default_rng(0)), ConfigError),
        (lambda: partition_iid(_labels(5), 6, np.random.default_rng(0)), DataError),
        (lambda: partition_dirichlet(_labels(), 3, 0.0, np.random.default_rng(0)), ConfigError),
        (lambda: partition_quantity(_labels(), 3, -1.0, np.random.default_rng(0)), ConfigError),
        (lambda: partition_quantity(_labels(20), 3, 1.0, np.random.default_rng(0)), DataError),
        (lambda: partition_iid(np.zeros(5), 2, np.random.default_rng(0)), DataError),
    ],
)
def test_bad_partition_arguments_raise(call: Callable[[], object], error: type) -> None:
    with pytest.raises(error):
        call()


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("iid", PartitionSpec("iid")),
        ("sites", PartitionSpec("sites")),
        ("dirichlet:0.5", PartitionSpec("dirichlet", 0.5)),
        (" Quantity:1.0 ", PartitionSpec("quantity", 1.0)),
    ],
)
def test_parse_partition_reads_valid_specs(text: str, spec: PartitionSpec) -> None:
    assert parse_partition(text) == spec
    assert parse_partition(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    ["", "iid:1", "dirichlet", "dirichlet:", "dirichlet:abc", "dirichlet:0", "quantity:-2",
     "dirichlet:nan", "dirichlet:inf", "label-skew:0.5", "sites:4"],
)  # fmt: skip
def test_parse_partition_rejects_junk_with_config_error(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_partition(text)

    assert info.value.field == "partition"


# ----------------------------------------------------------------------------- shift


def test_shift_images_is_seeded_clipped_and_identity_at_zero_strength() -> None:
    x = np.random.default_rng(0).random((20, 1, 28, 28), dtype=np.float32)

    a = shift_images(x, np.random.default_rng(5), 2.0)
    b = shift_images(x, np.random.default_rng(5), 2.0)

    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0.0 and a.max() <= 1.0
    assert not np.allclose(a, x)
    np.testing.assert_array_equal(shift_images(x, np.random.default_rng(5), 0.0), x)


# ----------------------------------------------------------------------------- federations


def _ids_of(fed: Federation) -> list[np.ndarray]:
    return [fixtures.image_ids(d.x) for s in fed.sites for d in (s.train, s.test)]


def test_federation_parts_never_overlap_and_use_the_whole_pool(tmp_path: Path) -> None:
    path = fixtures.write_medmnist(tmp_path / "tagged.npz", n_train=300, n_val=60, n_test=80)

    fed = build_federation(path, 8, parse_partition("dirichlet:0.5"), seed=0)

    site_ids = np.concatenate(_ids_of(fed))
    test_ids = fixtures.image_ids(fed.global_test.x)
    assert len(np.unique(site_ids)) == len(site_ids) == 360  # train + val, each sample once
    assert np.intersect1d(site_ids, test_ids).size == 0
    assert fed.name == "tagged" and fed.input_shape == (1, 28, 28)


def test_breastmnist_dirichlet_federation_is_consistent() -> None:
    source = load_medmnist(builtin_path("breastmnist"))

    fed = build_federation("breastmnist", 8, parse_partition("dirichlet:0.5"), seed=0)

    assert len(fed.sites) == 8 and fed.num_classes == 2
    assert all(len(s.train) >= 1 and len(s.test) >= 1 for s in fed.sites)
    assert sum(len(s.train) + len(s.test) for s in fed.sites) == 546 + 78
    np.testing.assert_array_equal(fed.global_test.x, source.test.x)
    np.testing.assert_array_equal(
        fed.central_train.x, np.concatenate([s.train.x for s in fed.sites])
    )
    np.testing.assert_array_equal(
        fed.central_train.y, np.concatenate([s.train.y for s in fed.sites])
    )


def test_build_federation_is_deterministic_per_seed() -> None:
    spec = parse_partition("dirichlet:0.5")

    a = build_federation("breastmnist", 4, spec, seed=7)
    b = build_federation("breastmnist", 4, spec, seed=7)
    c = build_federation("breastmnist", 4, spec, seed=8)

    assert all(np.array_equal(s.train.x, t.train.x) for s, t in zip(a.sites, b.sites, strict=True))
    assert [len(s.train) for s in a.sites] != [len(s.train) for s in c.sites]


def test_site_shift_changes_site_images_but_not_the_global_test() -> None:
    spec = parse_partition("iid")

    plain = build_federation("breastmnist", 3, spec, seed=1)
    shifted = build_federation("breastmnist", 3, spec, seed=1, site_shift=1.0)

    for p, s in zip(plain.sites, shifted.sites, strict=True):
        np.testing.assert_array_equal(p.train.y, s.train.y)  # same samples, shifted pixels
        assert not np.allclose(p.train.x, s.train.x) and not np.allclose(p.test.x, s.test.x)
        assert s.train.x.min() >= 0.0 and s.train.x.max() <= 1.0
    np.testing.assert_array_equal(plain.global_test.x, shifted.global_test.x)


def test_stratified_local_split_keeps_both_classes_at_each_iid_site() -> None:
    fed = build_federation("breastmnist", 4, parse_partition("iid"), seed=2)

    for site in fed.sites:
        assert set(site.test.y.tolist()) == {0, 1}
        assert abs(len(site.test) / (len(site.train) + len(site.test)) - 0.2) < 0.02


def test_heart_federation_has_the_four_hospitals_and_a_pooled_holdout() -> None:
    fed = build_federation("heart", 4, parse_partition("sites"), seed=0)

    assert [s.name for s in fed.sites] == list(heart_sites()) == ["cleveland", "hungarian", "switzerland", "va"]
    assert fed.input_shape == (32,) and fed.num_classes == 2  # 9 numeric, 13 one-hot, 10 missing flags
    total = sum(len(s.train) + len(s.test) for s in fed.sites) + len(fed.global_test)
    assert total == 303 + 294 + 123 + 200
    assert 0.18 < len(fed.global_test) / total < 0.22
    assert all(np.isfinite(s.train.x).all() for s in fed.sites)


def test_heart_can_also_be_pooled_and_partitioned() -> None:
    fed = build_federation("heart", 6, parse_partition("iid"), seed=0)

    assert [s.name for s in fed.sites] == [f"site-{i}" for i in range(6)]
    assert sum(len(s.train) + len(s.test) for s in fed.sites) + len(fed.global_test) == 920


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"dataset": "heart", "n_sites": 3, "partition": "sites"}, "n_sites"),
        ({"dataset": "breastmnist", "n_sites": 4, "partition": "sites"}, "partition"),
        ({"dataset": "breastmnist", "n_sites": 0, "partition": "iid"}, "n_sites"),
        ({"dataset": "heart", "n_sites": 4, "partition": "sites", "site_shift": 1.0}, "site_shift"),
        ({"dataset": "breastmnist", "n_sites": 2, "partition": "iid",
          "site_shift": -1}, "site_shift"),
        ({"dataset": "breastmnist", "n_sites": 2, "partition": "iid",
          "local_test_fraction": 1.0}, "local_test_fraction"),
        ({"dataset": "breastmnist", "n_sites": 2, "partition": "iid", "seed": -1}, "seed"),
    ],
)  # fmt: skip
def test_invalid_federation_settings_raise_config_error(kwargs: dict, field: str) -> None:
    kwargs = {"seed": 0, **kwargs, "partition": parse_partition(kwargs["partition"])}

    with pytest.raises(ConfigError) as info:
        build_federation(**kwargs)

    assert info.value.field == field


def test_unknown_dataset_raises_data_error() -> None:
    with pytest.raises(DataError, match="unknown dataset 'nope': expected breastmnist"):
        build_federation("nope", 2, parse_partition("iid"), seed=0)


def test_more_sites_than_samples_raise_data_error() -> None:
    with pytest.raises(DataError, match="cannot make 400 sites"):
        build_federation("breastmnist", 400, parse_partition("iid"), seed=0)


def test_heart_sites_without_a_site_count_gives_its_four_hospitals() -> None:
    fed = build_federation("heart", None, parse_partition("sites"), seed=0)
    assert [s.name for s in fed.sites] == list(heart_sites())


def test_no_site_count_is_refused_for_anything_but_natural_sites() -> None:
    with pytest.raises(ConfigError, match="n_sites"):
        build_federation("heart", None, parse_partition("iid"), seed=0)
    with pytest.raises(ConfigError, match="'sites' needs natural hospitals"):
        build_federation("breastmnist", None, parse_partition("sites"), seed=0)
