"""Suite-wide settings for running the tests in parallel (``pytest -n 2``, pytest-xdist).

Each xdist worker trains with one torch thread, and so do the processes it starts (peers,
``medswarm launch``, scripts): two workers with a thread per core instead of four threads,
or more with real peer processes, fighting over two cores.

The suite is spread with ``--dist loadfile`` (scripts/test.sh): all tests of a file run on
one worker, one after the other. So a module-scoped fixture (a simulation, a Ray cluster)
is built once, and the network-namespace tests never run at the same time. Their namespace
names carry this session's process id (``MEDSWARM_NETNS_PREFIX``, see scripts/netns_swarm.py),
so that a second test session on the host neither shares nor removes them. ``--dist loadgroup`` with ``xdist_group`` marks would be finer,
but with pytest 9.2 it silently stops grouping (pytest-xdist issue 1386).
"""

from __future__ import annotations

import os

os.environ.setdefault("MEDSWARM_NETNS_PREFIX", f"msw{os.getpid()}-")

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
