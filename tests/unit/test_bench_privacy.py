"""bench_privacy's summary: paired by seed against the non-private local arm."""

from __future__ import annotations

import math

import pytest

from tests.scripts import load_script

bench = load_script("bench_privacy")


def run(eps, seed, swarm, local, worst=None, sites=(0.5, 0.5), t=1.0):
    arm = lambda a, w: {"auroc": a, "worst_auroc": w if w is not None else a, "site_auroc": list(sites),  # noqa: E731
                        "eps_spent_max": 0.0 if math.isinf(eps) else eps * 0.99, "train_s_per_round_per_peer": t}
    return {"data": "d", "eps": eps, "seed": seed, "swarm": arm(swarm, worst), "fedavg": arm(swarm, None),
            "local": arm(local, None)}


def test_the_private_swarm_is_compared_with_the_same_seeds_non_private_local_arm():
    rows = [run(math.inf, 0, 0.80, 0.70, sites=(0.6, 0.7), t=1.0), run(math.inf, 1, 0.82, 0.60, sites=(0.6, 0.7)),
            run(3.0, 0, 0.72, 0.65, worst=0.66, sites=(0.65, 0.65), t=3.0), run(3.0, 1, 0.58, 0.55, sites=(0.5, 0.6))]
    table = bench.summarise(rows, ["d"], [3.0, math.inf])["d"]
    got = table["3"]["private_swarm_minus_local_no_dp"]
    assert got["per_seed"] == pytest.approx([0.72 - 0.70, 0.58 - 0.60])
    assert got["worst_seed"] == pytest.approx(-0.02) and got["hospitals_beaten_mean"] == pytest.approx(0.5)
    assert table["3"]["swarm"]["auroc"] == pytest.approx(0.65) and table["3"]["swarm"]["worst_auroc"] == 0.58
    assert table["3"]["swarm_train_time_ratio_vs_no_dp"] == pytest.approx(2.0)
    assert table["inf"]["private_swarm_minus_local_no_dp"]["mean"] == pytest.approx((0.10 + 0.22) / 2)


def test_a_grid_cut_short_summarises_what_it_has():
    rows = [run(3.0, 0, 0.7, 0.6)]
    table = bench.summarise(rows, ["d", "e"], [3.0, math.inf])
    assert set(table["d"]) == {"3"} and "private_swarm_minus_local_no_dp" not in table["d"]["3"]
    assert table["e"] == {}


def test_merging_outputs_keeps_one_run_per_cell_the_later_file_winning(tmp_path):
    import json

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps({"runs": [{**run(1.0, 0, 0.5, 0.5), "eps": 1.0}, {**run(math.inf, 0, 0.6, 0.5), "eps": "inf"}]}))
    new.write_text(json.dumps({"runs": [{**run(1.0, 0, 0.7, 0.5), "eps": 1.0}]}))
    rows = bench.merge_runs([old, new])
    assert sorted((r["eps"], r["swarm"]["auroc"]) for r in rows) == [(1.0, 0.7), (math.inf, 0.6)]
