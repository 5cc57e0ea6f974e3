"""The example of ``examples/``: a custom task (own model and training loop) on a generated
image folder, run by ``medswarm simulate``."""

from __future__ import annotations

import json

from peers.cli import main
from tests.example_folder import TINY_TASK, make_folder


def test_the_example_task_learns_in_simulate_and_reports_its_extra_metric(tmp_path):
    labels = make_folder(tmp_path / "folder")
    out = tmp_path / "run"
    code = main(["simulate", "--data", str(labels), "--partition", "sites", "--task", TINY_TASK,
                 "--rounds", "6", "--lr", "0.03", "--arms", "swarm,local", "--out", str(out), "--quiet"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["dataset"]["task"] == "tiny-blob-finder"
    assert report["dataset"]["model"].startswith("TinyNet-")
    assert report["dataset"]["site_names"] == ["clinic-a", "clinic-b", "clinic-c"]
    arms = report["arms"]
    assert arms["swarm"]["auroc"] > 0.85 and arms["swarm"]["auroc"] > arms["local"]["auroc"]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0.0 <= row["extra"]["sensitivity"] <= 1.0 for row in rows)
