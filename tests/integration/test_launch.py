"""``medswarm launch``: real peer processes on loopback, collected into one report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def launch(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "peers.cli", "launch", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_three_real_peers_run_and_their_reports_are_collected(tmp_path):
    out = tmp_path / "run"
    # the default graph (onepeer-exp, 3 peers: one sits each third step out), without the
    # final-agreement round, so that the stop round is the last trained one
    proc = launch("--peers", "3", "--rounds", "4", "--no-converge", "--final-agreement", "0", "--quiet",
                  "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    swarm = report["arms"]["swarm"]
    assert report["config"]["mode"] == "launch"
    assert swarm["decision"] == {"stop_rounds": [3], "same_round": True, "reasons": ["max-rounds"]}
    assert [p["site"] for p in swarm["per_site"]] == [0, 1, 2]
    assert all(0.0 <= p["auroc"] <= 1.0 for p in swarm["per_site"])
    assert len({p["peer_id"] for p in swarm["peers"]}) == 3
    assert all(p["rounds_completed"] == 4 and p["bytes_sent"] > 0 for p in swarm["peers"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sorted({(r["peer"], r["round"]) for r in rows}) == [(p, r) for p in range(3) for r in range(4)]
    assert swarm["auroc"] is not None and swarm["worst_auroc"] <= swarm["auroc"]
    assert (out / "curves.png").stat().st_size > 0
    assert "real peer processes" in (out / "report.md").read_text()
    # every peer's log and its checkpoints are there to inspect
    for i in range(3):
        assert "event=round" in (out / "peers" / f"hospital-{i}" / "peer.log").read_text()


@pytest.mark.parametrize("args, message", [
    (["--peers", "1"], "--peers must be at least 2"),
    (["--topology", "star"], "unknown topology"),
])
def test_bad_launch_options_are_one_line_errors(tmp_path, args, message):
    proc = launch(*args, "--quiet", "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_data_stops_launch_with_one_line_before_any_peer_starts(tmp_path):
    bad = tmp_path / "labels.csv"
    bad.write_text("image,label,site\nmissing.png,0,a\nalso-missing.png,1,a\nthird.png,0,b\nfourth.png,1,b\n")
    out = tmp_path / "x"
    proc = launch("--data", str(bad), "--partition", "sites", "--image-size", "8", "--quiet", "--out", str(out),
                  timeout=120)
    assert proc.returncode == 2
    assert "missing.png" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (out / "peers").exists()  # no key made, no peer started
