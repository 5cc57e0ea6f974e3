"""``--ray`` against a Ray cluster of two processes on loopback: the same run as without Ray.

The cluster (``ray start --head`` plus one ``ray start --address`` worker node, one CPU
each) is started by the test and torn down after it. Ray is an optional extra, left out of
the ``test`` extra to keep CI short: without it this module is skipped with the reason.
Run it with ``pip install -c constraints.txt -e '.[ray]'`` and
``pytest tests/integration/test_ray_cluster.py``.
"""

from __future__ import annotations

import os

import pytest

# Ray reads its authentication mode when it is imported: token, as the started cluster uses
os.environ["RAY_AUTH_MODE"] = "token"
pytest.importorskip("ray", reason="Ray is not installed (pip install 'medswarm[ray]'); CI leaves it out")

import torch  # noqa: E402

from swarm.config import LearningConfig, OutputConfig, SimSetup  # noqa: E402
from swarm.ray_cluster import LocalRayCluster  # noqa: E402
from swarm.simulate import Simulation, SimConfig  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]

PEERS, ROUNDS = 4, 2


@pytest.fixture(scope="module")
def cluster():
    with LocalRayCluster(workers=1, cpus=1) as address:
        yield address


def run(ray: str | None) -> Simulation:
    config = SimConfig(setup=SimSetup(peers=PEERS, topology="ring", arms=("swarm", "fedavg"), ray=ray),
                       learning=LearningConfig(data="breastmnist", partition="iid", rounds=ROUNDS, converge=False),
                       output=OutputConfig(eval_peers=2))
    sim = Simulation(config)
    sim.results = sim.run()
    return sim


def test_a_run_on_a_two_process_ray_cluster_is_the_run_without_ray(cluster):
    torch.set_num_threads(1)  # as medswarm simulate and every Ray task
    local, remote = run(None), run(cluster)
    assert local.training == {"backend": "local"}
    assert remote.training["backend"] == "ray" and remote.training["cluster_cpus"] == 2.0
    # every swarm peer trained every round, fedavg's sites too, all on the cluster
    assert remote.training["trainings"] >= 2 * PEERS * ROUNDS
    assert sum(remote.training["trainings_per_node"]) == remote.training["trainings"]
    for a, b in zip(local.results, remote.results, strict=True):
        assert a.per_site == b.per_site, a.arm  # per-peer AUROC and accuracy
        assert a.rows == b.rows, a.arm  # every per-round figure, the same sampled peers
    assert local.results[0].extra["weights_digest"] == remote.results[0].extra["weights_digest"]
