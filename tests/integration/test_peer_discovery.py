"""Discovery with real ``medswarm peer`` processes on loopback: peer exchange and redial.

Each process writes its log to a file (a pipe nobody reads would fill and stall it); the
tests wait on what the processes print or log, every wait bounded by a timeout.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gossip.libp2p_identity import generate_key_file
from swarm.checkpoint import CheckpointStore, decode_state
from tests.integration.test_peer_processes import COMMON, finish

pytestmark = pytest.mark.slow

NAMES = "abcd"


@pytest.fixture
def members(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Four consortium members with keys in ``tmp_path`` (made in-process: fast)."""
    ids = {n: generate_key_file(tmp_path / f"{n}.key").peer_id for n in NAMES}
    (tmp_path / "consortium.toml").write_text(
        "".join(f'[[member]]\nname = "{n}"\npeer_id = "{ids[n]}"\n' for n in NAMES))
    return tmp_path, ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(tmp_path: Path, name: str, site: int, port: int, *extra: str, log: str | None = None,
          consortium: str = "consortium.toml") -> subprocess.Popen[str]:
    """Start a peer listening on ``port``; its log goes to ``tmp_path/<log or name>.log``."""
    args = ["-v", "peer", "--key", str(tmp_path / f"{name}.key"),
            "--consortium", str(tmp_path / consortium), "--site", str(site),
            "--state-dir", str(tmp_path / f"state-{name}"),
            "--listen", f"/ip4/127.0.0.1/tcp/{port}", *COMMON, *extra]
    with open(tmp_path / f"{log or name}.log", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "peers.cli", *args], stdout=subprocess.PIPE,
                                stderr=err, text=True)


def wait_for_log(path: Path, needle: str, proc: subprocess.Popen[str], timeout: float = 90.0) -> None:
    """Poll a log file until it contains ``needle`` (bounded; fails if the process ends)."""
    end = time.monotonic() + timeout
    while needle not in path.read_text():
        assert proc.poll() is None, (needle, path.read_text()[-2000:])
        assert time.monotonic() < end, f"{needle!r} not logged within {timeout} s"
        time.sleep(0.05)


def report(tmp_path: Path, name: str) -> dict:
    return json.loads((tmp_path / f"state-{name}" / "report.json").read_text())


def addr(port: int, peer: str) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer}"


def test_four_peers_in_a_bootstrap_chain_all_link_to_all_by_peer_exchange(members):
    tmp_path, ids = members
    ports = {n: free_port() for n in NAMES}
    procs = {}
    for i, name in enumerate(NAMES):  # b knows a, c knows b, d knows c; started together
        boot = ["--bootstrap", addr(ports[NAMES[i - 1]], ids[NAMES[i - 1]])] if i else []
        procs[name] = spawn(tmp_path, name, i, ports[name], "--target-neighbours", "3", *boot)

    results = {n: finish(p, timeout=180) for n, p in procs.items()}

    logs = {n: (tmp_path / f"{n}.log").read_text() for n in NAMES}
    for name, (code, _out, _err) in results.items():
        assert code == 0, (name, logs[name][-3000:])
    reports = {n: report(tmp_path, n) for n in NAMES}
    for name, rep in reports.items():
        assert set(rep["neighbours_seen"]) == {ids[m] for m in NAMES if m != name}, name
        assert rep["rounds_completed"] >= 3 and not rep["rejected"] and rep["bad_control"] == 0
    assert len({r["stop_round"] for r in reports.values()}) == 1
    # d learnt of a (neither its bootstrap nor a bootstrap of a) by peer exchange, and one
    # of the two dialled the other
    learnt = [line for line in logs["d"].splitlines() if "event=peer-exchange" in line
              and ids["a"] in line.split(" new=")[1].split()[0]]
    assert learnt, logs["d"][-3000:]
    assert f"event=dial peer={ids['d']} to={ids['a']}" in logs["d"] or \
        f"event=dial peer={ids['a']} to={ids['d']}" in logs["a"]


def test_a_killed_peer_restarted_without_bootstrap_is_redialled_and_resumes(members):
    tmp_path, ids = members
    three = "abc"
    (tmp_path / "three.toml").write_text(
        "".join(f'[[member]]\nname = "{n}"\npeer_id = "{ids[n]}"\n' for n in three))
    ports = {n: free_port() for n in three}
    # c's former neighbours wait for it (not suspected for 40 s); a lone peer's rounds are
    # bounded by a 2 s deadline
    run = ["--rounds", "12", "--suspect-after", "40", "--deadline-max", "2", "--target-neighbours", "2"]
    procs = {}
    for i, name in enumerate(three):
        boot = ["--bootstrap", addr(ports[three[i - 1]], ids[three[i - 1]])] if i else []
        procs[name] = spawn(tmp_path, name, i, ports[name], *run, *boot, consortium="three.toml")

    wait_for_log(tmp_path / "c.log", "event=round ", procs["c"])
    procs["c"].send_signal(signal.SIGKILL)
    assert procs["c"].wait(timeout=30) == -signal.SIGKILL
    procs["c"].stdout.close()
    # same key, state directory and port; no --bootstrap: its neighbours must find it
    procs["c"] = spawn(tmp_path, "c", 2, ports["c"], *run, consortium="three.toml", log="c-again")

    results = {n: finish(p, timeout=240) for n, p in procs.items()}

    logs = {n: (tmp_path / f"{n}.log").read_text() for n in ["a", "b", "c-again"]}
    for name, (code, _out, _err) in results.items():
        assert code == 0, (name, logs.get(name, logs["c-again"])[-3000:])
    reports = {n: report(tmp_path, n) for n in three}
    assert len({r["stop_round"] for r in reports.values()}) == 1
    assert reports["c"]["start_round"] > 0  # resumed from its checkpoint, not from scratch
    first = next(line for line in logs["c-again"].splitlines() if "event=round " in line)
    assert int(first.split(" round=")[1].split()[0]) > 0
    assert "--bootstrap" not in " ".join(procs["c"].args)
    redialled = [n for n in "ab" if f"event=redial peer={ids[n]} to={ids['c']}" in logs[n]
                 and "ok=true" in logs[n].split(f"event=redial peer={ids[n]} to={ids['c']}")[-1]
                 .splitlines()[0]]
    assert redialled, "no neighbour redialled c"
    store = CheckpointStore(tmp_path / "state-c")
    files = store.list()
    assert files
    for path in files:
        state = decode_state(path.read_bytes())
        assert state.peer_id == ids["c"]
