"""scripts/bench_efficiency.py: paired differences to FedAvg and the target check."""

from __future__ import annotations

import pytest

from tests.scripts import load_script

bench = load_script("bench_efficiency")


def _run(seed: int, config: str, auroc: float, worst: float, sent: int) -> dict:
    return {"data": "heart", "seed": seed, "config": config, "auroc": auroc, "worst_auroc": worst,
            "bytes_sent": sent}


def test_differences_are_paired_by_seed_and_the_target_needs_all_three():
    runs = [_run(0, "fedavg", 0.80, 0.80, 100), _run(1, "fedavg", 0.70, 0.70, 100),
            _run(0, "ring", 0.79, 0.78, 100), _run(1, "ring", 0.71, 0.66, 200),
            _run(0, "ring q8", 0.80, 0.79, 30)]  # seed 1 missing: only seed 0 is paired
    summary = bench.aggregate(runs, ["heart"], [0, 1], ["ring", "ring q8"])["heart"]
    ring = summary["ring"]
    assert ring["mean_minus_fedavg"] == pytest.approx(0.0)  # -0.01 and +0.01
    assert ring["worst_minus_fedavg"] == pytest.approx(-0.03)  # -0.02 and -0.04
    assert ring["bytes_vs_fedavg"] == pytest.approx(1.5)
    assert ring["meets_target"]
    assert summary["ring q8"]["seeds"] == [0] and summary["ring q8"]["meets_target"]
    runs.append(_run(1, "ring q8", 0.70, 0.60, 30))
    assert not bench.aggregate(runs, ["heart"], [0, 1], ["ring q8"])["heart"]["ring q8"]["meets_target"]


def test_every_configuration_is_a_valid_learning_config():
    from swarm.config import LearningConfig
    from swarm.topology import TOPOLOGIES

    for topology, compress, float16, final, choco, tolerance in bench.CONFIGS.values():
        assert topology in TOPOLOGIES
        LearningConfig(data="heart", compress=compress, float16=float16, final_agreement=final, choco=choco,
                       final_tolerance=tolerance)  # raises ConfigError if not
