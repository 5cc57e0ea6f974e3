"""Real ``medswarm peer`` processes talking libp2p on loopback.

Processes are synchronised on what they print (their listen address), never on sleeps;
every wait is bounded by a timeout.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

COMMON = ["--data", "heart", "--sites", "4", "--rounds", "6", "--heartbeat", "1",
          "--suspect-after", "8", "--deadline-max", "5", "--linger", "2"]


def medswarm(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "peers.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture
def hospitals(tmp_path):
    ids = {}
    for name in "abcd":
        out = subprocess.run([sys.executable, "-m", "peers.cli", "keygen", "--out", str(tmp_path / f"{name}.key")],
                             capture_output=True, text=True, check=True)
        ids[name] = out.stdout.strip()
    members = "".join(f'[[member]]\nname = "{n}"\npeer_id = "{ids[n]}"\n' for n in "abc")  # d is not a member
    (tmp_path / "consortium.toml").write_text(members)
    return tmp_path, ids


def start(tmp_path, name, site, bootstrap=None, rounds=6):
    args = ["-v", "peer", "--key", str(tmp_path / f"{name}.key"), "--consortium", str(tmp_path / "consortium.toml"),
            "--site", str(site), "--state-dir", str(tmp_path / f"state-{name}"), *COMMON, "--rounds", str(rounds)]
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
    a, addr_a = start(tmp_path, "a", 0)
    b, addr_b = start(tmp_path, "b", 1, addr_a)
    c, _ = start(tmp_path, "c", 2, addr_b)  # c knows only b, b only a
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
