"""Real ``medswarm peer`` processes talking libp2p on loopback.

Processes are synchronised on what they print (their listen address), never on sleeps;
every wait is bounded by a timeout.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

pytestmark = pytest.mark.slow

COMMON = ["--data", "heart", "--sites", "4", "--rounds", "6", "--heartbeat", "1",
          "--suspect-after", "8", "--deadline-max", "5", "--linger", "2"]


def medswarm(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "peers.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def start(tmp_path, name, site, bootstrap=None, rounds=6, extra=()):
    args = ["-v", "peer", "--key", str(tmp_path / f"{name}.key"), "--consortium", str(tmp_path / "consortium.toml"),
            "--site", str(site), "--state-dir", str(tmp_path / f"state-{name}"), *COMMON, "--rounds", str(rounds),
            *extra]
    if bootstrap:
        args += ["--bootstrap", bootstrap]
    proc = medswarm(*args)
    line = proc.stdout.readline()
    assert line.startswith("listening "), (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split()[1]


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_three_peers_found_by_bootstrap_chain_train_and_stop_together(hospitals):
    tmp_path, ids = hospitals
    # each waits for both others before round 0 (a learns of c by peer exchange), so that
    # peers started one after another train together instead of c catching up at the end
    # (no final-agreement round: the stop round is the last trained one, 5 of --rounds 6)
    together = ("--wait-neighbours", "2", "--deadline-max", "30", "--final-agreement", "0")
    a, addr_a = start(tmp_path, "a", 0, extra=together)
    b, addr_b = start(tmp_path, "b", 1, addr_a, extra=together)
    c, _ = start(tmp_path, "c", 2, addr_b, extra=together)  # c knows only b, b only a
    results = {n: finish(p) for n, p in (("a", a), ("b", b), ("c", c))}
    for name, (code, out, err) in results.items():
        assert code == 0, (name, err[-2000:])
    reports = {n: json.loads((tmp_path / f"state-{n}" / "report.json").read_text()) for n in "abc"}
    assert {r["stop_round"] for r in reports.values()} == {5}
    assert all(r["rounds_completed"] >= 3 and not r["rejected"] for r in reports.values())
    assert {r["peer_id"] for r in reports.values()} == {ids["a"], ids["b"], ids["c"]}


def test_a_peer_outside_the_consortium_is_refused(hospitals):
    tmp_path, ids = hospitals
    # d uses the members' consortium file but is not in it: it refuses to start at all
    d = medswarm("peer", "--key", str(tmp_path / "d.key"), "--consortium", str(tmp_path / "consortium.toml"),
                 "--site", "3", "--state-dir", str(tmp_path / "state-d"), *COMMON)
    code, out, err = finish(d, timeout=60)
    assert code == 2 and "not a member" in err and err.count("\n") == 1


@pytest.mark.parametrize("change, needle", [
    (lambda t: ["--key", str(t / "missing.key")], "missing.key"),
    (lambda t: ["--consortium", str(t / "nope.toml")], "nope.toml"),
    (lambda t: ["--bootstrap", "/ip4/127.0.0.1/tcp/notaport"], "bootstrap"),
    (lambda t: ["--listen", "/ip4/127.0.0.1/udp/4000"], "tcp"),
    (lambda t: ["--network-key", str(t / "swarm.key")], "swarm.key"),
])
def test_bad_config_is_one_line_and_nonzero(hospitals, change, needle):
    tmp_path, _ = hospitals
    args = {"--key": str(tmp_path / "a.key"), "--consortium": str(tmp_path / "consortium.toml")}
    extra = change(tmp_path)
    args[extra[0]] = extra[1]
    flat = [x for k, v in args.items() for x in (k, v)]
    p = medswarm("peer", *flat, "--site", "0", "--state-dir", str(tmp_path / "s"), *COMMON)
    code, out, err = finish(p, timeout=60)
    assert code == 2, err
    assert needle in err and "Traceback" not in err and err.strip().count("\n") == 0, err


def test_a_listen_port_in_use_is_one_line_and_nonzero(hospitals):
    import socket

    tmp_path, _ = hospitals
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = medswarm("peer", "--key", str(tmp_path / "a.key"), "--consortium", str(tmp_path / "consortium.toml"),
                     "--listen", f"/ip4/127.0.0.1/tcp/{port}", "--site", "0", "--state-dir", str(tmp_path / "s"),
                     *COMMON)
        code, out, err = finish(p, timeout=60)
    assert code == 2, err
    assert str(port) in err and "Traceback" not in err and err.strip().count("\n") == 0, err


def wait_for_line(proc, needle, timeout=90):
    """Read the process's stderr until a line contains ``needle``; all lines read so far."""
    import threading

    seen, found = [], threading.Event()

    def pump():
        for line in proc.stderr:
            seen.append(line)
            if needle in line:
                found.set()
                return

    threading.Thread(target=pump, daemon=True).start()
    assert found.wait(timeout), "".join(seen)[-2000:]
    return seen


def test_sigterm_ends_a_peer_cleanly_with_its_checkpoints_complete(hospitals):
    import signal

    from swarm.checkpoint import CheckpointStore

    tmp_path, ids = hospitals
    a, addr_a = start(tmp_path, "a", 0, rounds=40)
    b, _ = start(tmp_path, "b", 1, addr_a, rounds=40)
    wait_for_line(b, "event=round peer=")
    b.send_signal(signal.SIGTERM)
    code, _, err = finish(b, timeout=60)
    a.send_signal(signal.SIGTERM)
    finish(a, timeout=60)
    assert code == 130 and "Traceback" not in err, err[-2000:]
    store = CheckpointStore(tmp_path / "state-b")
    files = sorted((tmp_path / "state-b").glob("*"))
    state = store.load_latest(ids["b"])
    assert state is not None and state.round >= 0, files
    # no temporary file left behind: every file in the state directory is complete
    assert not [f for f in files if f.name.startswith(".") or f.suffix == ".tmp"], files


def read_until(proc, prefix):
    """The peer's stdout lines up to the one starting with ``prefix``, as {first word: rest}."""
    lines = {}
    for _ in range(5):
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.poll() is not None else "stdout closed"
        word, _, rest = line.strip().partition(" ")
        lines[word] = rest
        if word == prefix:
            return lines
    raise AssertionError(f"no {prefix!r} line in {lines}")


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers["Content-Type"], response.read().decode()


def test_a_peer_run_from_a_config_file_serves_its_status_until_it_stops(hospitals):
    tmp_path, ids = hospitals
    conf = tmp_path / "conf"
    conf.mkdir()
    # paths relative to the file; rounds = 40 is overridden by the command line below
    (conf / "a.toml").write_text(
        'key = "../a.key"\nconsortium = "../consortium.toml"\nsite = 0\nsites = 4\nstate_dir = "state-a"\n'
        'data = "heart"\nrounds = 40\nheartbeat = 1\nsuspect-after = 8\ndeadline_max = 20\nlinger = 2\n'
        'status_port = 0\n')
    # --target-neighbours 1: a starts as soon as b is linked (c never comes), not after deadline_max
    a = medswarm("peer", "--config", str(conf / "a.toml"), "--rounds", "6", "--target-neighbours", "1",
                 "--final-agreement", "0", cwd=tmp_path.parent)
    lines = read_until(a, "listening")
    url = lines["status"]
    assert url.startswith("http://127.0.0.1:")
    first = json.loads(get(url + "/status")[1])
    assert first["state"] == "starting" and first["neighbours"] == [] and first["name"] == "a"
    assert first["peer_id"] == ids["a"]

    b, _ = start(tmp_path, "b", 1, lines["listening"])
    docs, metrics = [], None
    deadline = time.monotonic() + 120
    while a.poll() is None and time.monotonic() < deadline:
        try:
            docs.append(json.loads(get(url + "/status")[1]))
            if metrics is None and docs[-1]["state"] == "running":
                metrics = get(url + "/metrics")
        except (urllib.error.URLError, ConnectionError):
            pass  # the peer is exiting: its server closes with it
        time.sleep(0.05)  # polling interval; the bound is the deadline above
    code_a, _, err_a = finish(a)
    code_b, _, err_b = finish(b)
    assert code_a == 0 and code_b == 0, (err_a[-2000:], err_b[-2000:])

    running = [d for d in docs if d["state"] == "running"]
    rounds = [d["round"] for d in running]
    assert rounds == sorted(rounds) and len(set(rounds)) >= 2, rounds  # seen advancing
    assert running[-1]["neighbours"] == [ids["b"]]
    assert [d["state"] for d in docs] == sorted((d["state"] for d in docs), key=["starting", "running", "stopped"].index)
    report = json.loads((conf / "state-a" / "report.json").read_text())
    assert report["stop_round"] == 5  # --rounds 6 on the command line beat the file's 40
    for doc in docs:
        if doc["state"] == "stopped":
            assert doc["round"] == 5 and doc["convergence"]["stop_round"] == 5
    assert metrics is not None
    content_type, text = metrics
    assert content_type.startswith("text/plain; version=0.0.4")
    assert "medswarm_neighbours 1.0" in text and "# TYPE medswarm_rejected_total counter" in text


def test_a_status_port_in_use_is_one_line_and_nonzero(hospitals):
    tmp_path, _ = hospitals
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        p = medswarm("peer", "--key", str(tmp_path / "a.key"), "--consortium", str(tmp_path / "consortium.toml"),
                     "--site", "0", "--state-dir", str(tmp_path / "s"), *COMMON, "--status-port", str(port))
        code, _, err = finish(p, timeout=60)
    assert code == 2 and f"--status-port {port}" in err and "in use" in err
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
