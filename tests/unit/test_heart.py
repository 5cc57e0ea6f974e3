"""The shipped heart data: a CSV through the tabular loader, with a per-hospital holdout."""

from __future__ import annotations

import numpy as np
import pytest

from tests.scripts import load_script
from swarm.csv_data import load_csv_federation
from swarm.errors import ConfigError
from swarm.heart import HEART_LABEL, heart_csv, heart_federation, heart_sites
from swarm.partition import parse_partition
from swarm.task import DataRequest


def test_the_shipped_csv_is_the_conversion_of_the_uci_files() -> None:
    assert heart_csv().read_text(encoding="ascii") == load_script("make_heart_csv").heart_csv()


def test_four_hospitals_with_their_known_rows_and_positives() -> None:
    fed = heart_federation(None, parse_partition("sites"), seed=0)

    assert [s.name for s in fed.sites] == list(heart_sites()) == ["cleveland", "hungarian", "switzerland", "va"]
    rows, positives = [0] * 4, [0] * 4
    # every row is in exactly one of train, local test and the global holdout
    for i, site in enumerate(fed.sites):
        rows[i] += len(site.train) + len(site.test)
        positives[i] += int(site.train.y.sum() + site.test.y.sum())
    assert sum(rows) + len(fed.global_test) == 303 + 294 + 123 + 200
    assert sum(positives) + int(fed.global_test.y.sum()) == 139 + 106 + 115 + 149
    # a fifth of each hospital held out (stratified), before its train/test split
    for i, (total, site) in enumerate(zip((303, 294, 123, 200), fed.sites)):
        assert rows[i] == total - round(0.2 * total)
    assert fed.num_classes == 2 and fed.input_shape == (32,)


def test_each_hospital_is_standardized_on_its_own_training_rows() -> None:
    fed = heart_federation(None, parse_partition("sites"), seed=0)
    for site in fed.sites:
        x = site.train.x
        np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
        assert np.all((np.abs(x.std(axis=0) - 1) < 1e-4) | (x.std(axis=0) < 1e-6))


def test_a_feature_a_hospital_never_records_carries_no_signal_there() -> None:
    # Switzerland records every cholesterol as 0, which the CSV holds as missing
    table = heart_csv().read_text().splitlines()
    header = table[0].split(",")
    swiss = [r.split(",") for r in table[1:] if r.startswith("switzerland,")]
    assert swiss and all(r[header.index("chol")] == "" for r in swiss)
    fed = heart_federation(None, parse_partition("sites"), seed=0)
    site = fed.sites[2]
    assert site.name == "switzerland"
    # the imputed column and its missing flag are constant at that site: standardized to 0
    constant = np.flatnonzero(np.ptp(site.train.x, axis=0) == 0)
    assert len(constant) >= 2 and np.all(site.train.x[:, constant] == 0.0)


def test_the_holdout_is_seeded_and_synthetic_partitions_pool_the_rows() -> None:
    a = heart_federation(6, parse_partition("iid"), seed=3)
    b = heart_federation(6, parse_partition("iid"), seed=3)
    c = heart_federation(6, parse_partition("iid"), seed=4)
    assert [s.name for s in a.sites] == [f"site-{i}" for i in range(6)]
    assert sum(len(s.train) + len(s.test) for s in a.sites) + len(a.global_test) == 920
    assert 0.19 < len(a.global_test) / 920 < 0.21
    np.testing.assert_array_equal(a.global_test.x, b.global_test.x)
    assert not np.array_equal(a.global_test.x, c.global_test.x)


def test_heart_refuses_another_site_count_and_image_shifts() -> None:
    with pytest.raises(ConfigError, match="4 sites"):
        heart_federation(3, parse_partition("sites"), seed=0)
    with pytest.raises(ConfigError, match="images only"):
        heart_federation(4, parse_partition("sites"), seed=0, site_shift=1.0)


def test_a_holdout_share_is_a_loader_option_for_any_table_without_splits() -> None:
    request = DataRequest(str(heart_csv()), None, "sites", seed=0, label_column=HEART_LABEL)
    without = load_csv_federation(request, parse_partition("sites"))
    with_holdout = load_csv_federation(request, parse_partition("sites"), holdout=0.2)
    # without a holdout the global test set is the union of the local test splits
    assert len(without.global_test) == sum(len(s.test) for s in without.sites)
    assert len(with_holdout.global_test) == 185
    with pytest.raises(ConfigError, match="holdout"):
        load_csv_federation(request, parse_partition("sites"), holdout=1.0)
