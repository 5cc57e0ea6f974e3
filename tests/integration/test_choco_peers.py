"""CHOCO-gossip between real peer processes: ``medswarm launch`` on heart's four hospitals."""

from __future__ import annotations

import json
import re

import pytest

from tests.integration.test_launch import launch

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("topology, compress", [("ring", "q8"), ("onepeer-exp", "topk:0.25")])
def test_real_peers_exchange_compressed_differences_and_stop_together(tmp_path, topology, compress):
    out = tmp_path / "run"
    proc = launch("--data", "heart", "--peers", "4", "--topology", topology, "--rounds", "5", "--no-converge",
                  "--choco", "--compress", compress, "--final-agreement", "2", "--final-tolerance", "0.01",
                  "--quiet", "--out", str(out), timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    swarm = json.loads((out / "report.json").read_text())["arms"]["swarm"]
    assert swarm["decision"]["same_round"] and swarm["decision"]["stop_rounds"] == [4 + 2]
    assert all(p["bytes_sent"] > 0 for p in swarm["peers"])
    assert swarm["auroc"] is not None and swarm["worst_auroc"] > 0.6
    logs = [(out / "peers" / f"hospital-{i}" / "peer.log").read_text() for i in range(4)]
    assert not any("event=rejected" in log for log in logs)  # every rebuilt copy passed validation
    # differences were served: most transfers are far smaller than the first, whole, copies
    sizes = [int(b) for log in logs for b in re.findall(r"event=served .* bytes=(\d+)", log)]
    assert sizes and sorted(sizes)[len(sizes) // 2] < 0.6 * max(sizes)
