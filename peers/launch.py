"""``medswarm launch``: a real swarm on one host, to try libp2p before a second hospital joins.

It generates an Ed25519 key per peer and a consortium file listing them, starts that many
``medswarm peer`` processes on 127.0.0.1 (each dialling the previous one: a bootstrap
chain, closed into a ring by default), shows their rounds live (from each peer's ``/status``
on a free loopback port), and collects their per-round rows (``metrics.jsonl``) and final
reports (``report.json``) into the same ``metrics.jsonl`` / ``report.json`` / ``report.md`` /
``curves.png`` as ``medswarm simulate``, so the two can be compared on the same data and seed.
Every peer is a separate OS process talking Noise-encrypted libp2p: nothing is shared but
the files written here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from peers.errors import PeerError
from peers.metrics_log import read_rows
from peers.status import fetch_status
from swarm.atomic_file import atomic_write
from swarm.config import LearningConfig, TimingConfig
from swarm.options import from_args, to_argv
from swarm.schedule import onepeer_neighbours

TOPOLOGIES = ("ring", "chain", "full", "onepeer-exp")


class LaunchError(PeerError):
    """A launched peer failed, or the launch itself could not proceed."""


@dataclass
class LaunchedPeer:
    """One ``medswarm peer`` process and what the launcher has seen of it."""

    index: int
    name: str
    dir: Path
    proc: subprocess.Popen | None = None
    addr: str | None = None
    status_url: str | None = None
    round: int | None = None
    rounds_completed: int = 0
    metric: float | None = None
    distance: float | None = None
    state: str = "starting"
    started: float = 0.0
    ended: float | None = None
    listening: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> Path:
        """This peer's identity key file."""
        return self.dir / "peer.key"

    @property
    def state_dir(self) -> Path:
        """This peer's checkpoints, metrics rows and final report."""
        return self.dir / "state"

    @property
    def log(self) -> Path:
        """This peer's structured log (its stderr)."""
        return self.dir / "peer.log"


def bootstrap_for(index: int, n: int, topology: str) -> list[int]:
    """Which earlier peers peer ``index`` dials: the previous one (``chain``), plus peer 0 for
    the last peer (``ring``, as ``medswarm simulate``'s default topology), or all earlier ones
    (``full``), or its earlier partners of the one-peer exponential graph (``onepeer-exp``,
    ``index XOR 2**k``; the peers then exchange with one of them per step)."""
    if topology not in TOPOLOGIES:
        raise LaunchError(f"unknown topology {topology!r}; expected one of {', '.join(TOPOLOGIES)}")
    if index == 0:
        return []
    if topology == "full":
        return list(range(index))
    if topology == "onepeer-exp":
        return [j for j in onepeer_neighbours(n)[index] if j < index]
    dial = [index - 1]
    if topology == "ring" and index == n - 1 and n > 2:
        dial.append(0)
    return dial


def write_consortium(path: Path, members: dict[str, str]) -> None:
    """The allow-list TOML (``[[member]] name, peer_id``) for ``members`` (name -> peer id)."""
    atomic_write(path, "".join(f'[[member]]\nname = "{name}"\npeer_id = "{pid}"\n\n' for name, pid in members.items()))


def degree(index: int, n: int, topology: str) -> int:
    """How many neighbours peer ``index`` has once everyone dialled (see ``bootstrap_for``)."""
    return sum(index in bootstrap_for(j, n, topology) for j in range(n)) + len(bootstrap_for(index, n, topology))


def peer_command(args: argparse.Namespace, peer: LaunchedPeer, consortium: Path, bootstrap: list[str]) -> list[str]:
    """The ``medswarm peer`` command line of one launched peer; it waits for all its
    neighbours before round 0, so that peers started one after another train together."""
    cmd = [sys.executable, "-m", "peers.cli", "-v", "peer",
           "--key", str(peer.key), "--consortium", str(consortium), "--listen", "/ip4/127.0.0.1/tcp/0",
           "--sites", str(args.peers), "--site", str(peer.index),
           *to_argv(from_args(LearningConfig, args)), *to_argv(from_args(TimingConfig, args)),
           "--state-dir", str(peer.state_dir), "--eval-global", "--status-port", "0",
           "--wait-neighbours", str(degree(peer.index, args.peers, args.topology)),
           # only its bootstrap links: discovery must not add links the topology does not have
           "--target-neighbours", str(max(1, len(bootstrap_for(peer.index, args.peers, args.topology)))),
           "--onepeer-exp", "on" if args.topology == "onepeer-exp" else "off"]
    for addr in bootstrap:
        cmd += ["--bootstrap", addr]
    return cmd


def update_from_status(peer: LaunchedPeer, doc: dict | None) -> None:
    """Update what the launcher shows from the peer's ``/status`` document (``None``: it did
    not answer, e.g. it has just exited: the last figures stay)."""
    if doc is None:
        return
    last, vote = doc["last"], doc["convergence"]
    peer.round, peer.rounds_completed = doc["round"], doc["rounds_completed"]
    peer.metric, peer.distance = last["metric"], last["distance"]
    if doc["state"] == "running" and vote["stop_round"] is not None:
        peer.state = f"stopping at {vote['stop_round']}"
    else:
        peer.state = doc["state"]


def last_error(log: Path) -> str | None:
    """The ``medswarm: error:`` line a failed peer wrote last in its log, if any."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    errors = [line.split("error:", 1)[1].strip() for line in lines if line.startswith("medswarm: error:")]
    return errors[-1] if errors else None


def _pump_stdout(peer: LaunchedPeer, stream: IO[str], sink: IO[str]) -> None:
    for line in stream:
        sink.write(line)
        sink.flush()
        if line.startswith("status ") and peer.status_url is None:
            peer.status_url = line.split()[1] + "/status"
        if line.startswith("listening ") and peer.addr is None:
            peer.addr = line.split()[1]
            peer.listening.set()


def collect(peers: list[LaunchedPeer], config: dict, wall_s: float) -> tuple[dict, list[dict]]:
    """The launch's report and rows, in the shape ``swarm.report.write_report`` takes."""
    from swarm.arm_results import ArmResult, summarize

    reports = []
    for peer in peers:
        path = peer.state_dir / "report.json"
        if not path.exists():
            raise LaunchError(f"peer {peer.name} wrote no report ({path}); see {peer.log}")
        reports.append(json.loads(path.read_text(encoding="utf-8")))
    rows = [row for peer in peers for row in read_rows(peer.state_dir / "metrics.jsonl")]
    per_site = [{k: rep.get(k) for k in ("site", "name", "train_samples", "accuracy", "auroc",
                                         "local_accuracy", "local_auroc")} for rep in reports]
    for entry, rep in zip(per_site, reports):  # under DP: each hospital's spend (swarm.privacy)
        entry.update({k: v for k, v in rep.items() if k.startswith("dp_") and k != "dp_epsilon_budget"})
    stop_rounds = sorted({rep["stop_round"] for rep in reports if rep.get("stop_round") is not None})
    per_round = [(p.ended - p.started) / max(1, rep["rounds_completed"])
                 for p, rep in zip(peers, reports) if p.ended is not None]
    extra = {
        "decision": {"stop_rounds": stop_rounds, "same_round": len(stop_rounds) == 1,
                     "reasons": sorted({rep["reason"] for rep in reports})},
        "wall_s_per_round": sum(per_round) / len(per_round) if per_round else None,
        "rejected": sum(sum(rep.get("rejected", {}).values()) for rep in reports),
        "peers": reports,
    }
    private = [rep for rep in reports if "dp_epsilon_budget" in rep]
    if private:
        extra.update(dp_epsilon_budget=max(rep["dp_epsilon_budget"] for rep in private),
                     dp_delta=max(rep["dp_delta"] for rep in private))
    arm = ArmResult("swarm", rows=rows, per_site=per_site, extra=extra)
    report = {"title": "medswarm launch report", "config": config, "arms": summarize([arm]), "wall_s": wall_s}
    return report, rows


class Launch:
    """Starts, watches and stops the peers of one ``medswarm launch`` run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out: Path = args.out
        self.peers = [LaunchedPeer(i, f"hospital-{i}", args.out / "peers" / f"hospital-{i}") for i in range(args.peers)]
        self._files: list[IO[str]] = []

    def prepare(self) -> Path:
        """Fresh keys, state directories and the consortium file; returns the consortium path."""
        from gossip.libp2p_identity import generate_key_file

        members = {}
        for peer in self.peers:
            if peer.dir.exists():
                for old in sorted(peer.dir.rglob("*"), reverse=True):
                    old.unlink() if old.is_file() else old.rmdir()
            peer.state_dir.mkdir(parents=True)
            members[peer.name] = generate_key_file(peer.key).peer_id
        consortium = self.out / "consortium.toml"
        write_consortium(consortium, members)
        return consortium

    def start(self, consortium: Path) -> None:
        """Start every peer in order, each once its bootstrap peers are listening."""
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        for peer in self.peers:
            bootstrap = [self.peers[j].addr for j in bootstrap_for(peer.index, len(self.peers), self.args.topology)]
            cmd = peer_command(self.args, peer, consortium, [a for a in bootstrap if a])
            stdout_sink = open(peer.dir / "peer.out", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
            stderr_sink = open(peer.log, "w", encoding="utf-8")  # noqa: SIM115
            self._files += [stdout_sink, stderr_sink]
            peer.started = time.monotonic()
            peer.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr_sink, text=True, env=env,
                                         start_new_session=True)
            threading.Thread(target=_pump_stdout, args=(peer, peer.proc.stdout, stdout_sink), daemon=True).start()
            deadline = time.monotonic() + self.args.start_timeout
            while not peer.listening.wait(0.1):
                if peer.proc.poll() is not None or time.monotonic() > deadline:
                    why = last_error(peer.log) if peer.proc.poll() is not None else None
                    raise LaunchError(f"peer {peer.name} did not start listening"
                                      f"{f' ({why})' if why else ''}; see {peer.log}")

    def poll(self) -> bool:
        """Refresh each running peer's view from its ``/status`` and record exits; True once
        every peer has exited. A failed peer is a ``LaunchError``."""
        for peer in self.peers:
            assert peer.proc is not None
            if peer.ended is None and peer.status_url is not None:
                update_from_status(peer, fetch_status(peer.status_url, timeout=1.0))
            code = peer.proc.poll()
            if code is not None and peer.ended is None:
                peer.ended = time.monotonic()
                peer.state = "done" if code == 0 else f"failed ({code})"
                if code != 0:
                    why = last_error(peer.log)
                    raise LaunchError(f"peer {peer.name} exited with code {code}{f' ({why})' if why else ''}; "
                                      f"see {peer.log}")
        return all(p.ended is not None for p in self.peers)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every peer still running (each finishes its current write), then SIGKILL."""
        running = [p.proc for p in self.peers if p.proc is not None and p.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fh in self._files:
            fh.close()


def _table(peers: list[LaunchedPeer], rounds: int, elapsed: float):
    from rich.table import Table

    table = Table(title=f"medswarm launch: {len(peers)} peers on 127.0.0.1 ({elapsed:.0f} s)")
    for col in ("peer", "state", "round", "val loss", "distance"):
        table.add_column(col, justify="left" if col in ("peer", "state") else "right")
    for p in peers:
        table.add_row(p.name, p.state, f"{p.rounds_completed}/{rounds}" if p.round is not None else "–",
                      "–" if p.metric is None else f"{p.metric:.3f}",
                      "–" if p.distance is None else f"{p.distance:.3f}")
    return table


def launch_config(args: argparse.Namespace) -> dict:
    """The run's settings as recorded in ``report.json``."""
    return {"mode": "launch", "peers": args.peers, "topology": args.topology,
            **asdict(from_args(LearningConfig, args)), **asdict(from_args(TimingConfig, args))}


def run_launch(args: argparse.Namespace) -> int:
    """Run the local swarm to its end and write the collected report; 0 on success."""
    from rich.console import Console
    from rich.live import Live

    from swarm.report import write_report
    from swarm.task import prepare

    if args.peers < 2:
        raise LaunchError(f"--peers must be at least 2, got {args.peers}")
    bootstrap_for(0, args.peers, args.topology)  # validates the topology name
    console = Console(stderr=True, quiet=args.quiet)
    with console.status("checking the task, the data and the model"):
        # as every peer will: a bad file, row or task is one line here, not a peer that never listens
        prepare(from_args(LearningConfig, args), args.peers)
    launch = Launch(args)
    start = time.monotonic()
    try:
        consortium = launch.prepare()
        with Live(_table(launch.peers, args.rounds, 0), console=console, refresh_per_second=2,
                  transient=False) as live:
            launch.start(consortium)
            while not launch.poll():
                if time.monotonic() - start > args.timeout:
                    raise LaunchError(f"the swarm did not finish within --timeout {args.timeout:.0f} s")
                live.update(_table(launch.peers, args.rounds, time.monotonic() - start))
                time.sleep(0.5)
            live.update(_table(launch.peers, args.rounds, time.monotonic() - start))
    finally:
        launch.stop()
    wall = time.monotonic() - start
    report, rows = collect(launch.peers, launch_config(args), wall)
    paths = write_report(args.out, report, rows)
    arm = report["arms"]["swarm"]
    console.print()
    fmt = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    console.print(f"swarm AUROC {fmt(arm['auroc'])} (worst peer {fmt(arm['worst_auroc'])}), stopped at round(s) "
                  f"{arm['decision']['stop_rounds']}: {', '.join(arm['decision']['reasons'])}; "
                  f"{wall:.0f} s; outputs in {paths['report_md'].parent}/")
    return 0
