"""The example custom task with real peer processes: ``medswarm launch`` on a generated folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.example_folder import TINY_TASK, make_folder

pytestmark = pytest.mark.slow


def test_two_real_peers_train_the_example_task_on_their_own_sites(tmp_path):
    """No --peers: launch starts one peer per site of the CSV."""
    labels = make_folder(tmp_path / "folder", sites=2, per_site=20)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "peers.cli", "launch", "--data", str(labels),
                           "--partition", "sites", "--task", TINY_TASK, "--rounds", "3", "--no-converge",
                           "--final-agreement", "0", "--quiet", "--out", str(out)], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    swarm = json.loads((out / "report.json").read_text())["arms"]["swarm"]
    assert swarm["decision"]["stop_rounds"] == [2]
    assert all(p["rounds_completed"] == 3 and p["bytes_sent"] > 0 for p in swarm["peers"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["peer"] for r in rows} == {0, 1}
    assert all("sensitivity" in r["extra"] for r in rows)

