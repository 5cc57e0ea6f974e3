"""Suite-wide settings for running the tests in parallel (``pytest -n 2``, pytest-xdist).

- Each xdist worker trains with one torch thread, and so do the processes it starts: two
  workers with a thread per core each instead of four threads (or more, with real peer
  processes) fighting over two cores.
- ``--dist loadgroup`` keeps the tests of an ``xdist_group`` on one worker. Tests that share
  a module- or class-scoped fixture are put in one group per module, so the expensive
  fixture (a simulation, keys made by subprocesses, a cluster) is built once, not once per
  worker. The network-namespace tests share one group: their namespace names are fixed
  (``msw-*``), so two of them must never run at the same time.
"""

from __future__ import annotations

import os

import pytest

WORKER = os.environ.get("PYTEST_XDIST_WORKER")

if WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"  # the processes tests start (peers, launch, scripts)
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

#: directories whose tests must run one after the other, on one worker
SERIAL_GROUPS = {"netns": "netns"}


def _shares_a_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(d.scope in ("module", "class", "package")
               for defs in info.name2fixturedefs.values() for d in defs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        parts = item.nodeid.split("/")
        group = SERIAL_GROUPS.get(parts[1]) if len(parts) > 2 and parts[0] == "tests" else None
        if group is None and _shares_a_fixture(item):
            group = item.nodeid.split("::")[0]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
