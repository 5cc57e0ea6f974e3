"""The shipped heart data: one CSV read by the tabular loader, plus its own holdout rule.

``swarm/assets/heart/heart.csv`` holds the four hospitals of the UCI Heart Disease data
(Cleveland, Hungary, Switzerland, Long Beach VA), one patient per row, with a ``site``
column and the target ``disease`` (``num > 0``); ``scripts/make_heart_csv.py`` made it from
the original ``processed.*.data`` files, which ship beside it for provenance. It goes through
:func:`swarm.csv_data.load_csv_federation` like any hospital's table: one-hot categories,
site medians and modes for missing cells with 0/1 indicators, standardisation fitted on
each site's training rows only. The one heart-specific rule: 20 % of each hospital's rows
(of all rows, for a synthetic partition) are held out first as the global test set, each
row preprocessed with its own hospital's statistics.
"""

from __future__ import annotations

from pathlib import Path

from swarm.csv_table import site_names
from swarm.datasets import builtin_asset
from swarm.partition import Federation, PartitionSpec

#: The target column of the heart CSV.
HEART_LABEL = "disease"
#: Share of every heart hospital's rows held out for the global test set.
HEART_HOLDOUT_FRACTION = 0.2


def heart_csv() -> Path:
    """The shipped heart CSV."""
    return builtin_asset("heart/heart.csv")


def heart_sites() -> tuple[str, ...]:
    """The hospitals of the heart CSV, sorted (``--partition sites`` makes one peer each)."""
    return site_names(heart_csv())


def heart_federation(n_sites: int | None, spec: PartitionSpec, *, seed: int, site_shift: float = 0.0,
                     local_test_fraction: float = 0.2) -> Federation:
    """The heart sites for ``spec`` (``sites``: the four hospitals), deterministically for ``seed``.

    Raises
    ------
    ConfigError, DataError
        As :func:`swarm.csv_data.load_csv_federation` (e.g. ``sites`` with a count other than 4).
    """
    from swarm.csv_data import load_csv_federation
    from swarm.task import DataRequest

    request = DataRequest(str(heart_csv()), n_sites, str(spec), seed=seed, site_shift=site_shift,
                          label_column=HEART_LABEL, local_test_fraction=local_test_fraction)
    return load_csv_federation(request, spec, holdout=HEART_HOLDOUT_FRACTION, name="heart")
