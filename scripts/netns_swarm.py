#!/usr/bin/env python3
"""Run the docker-compose hospitals for real on one Linux host, one network namespace each.

No Docker engine is needed: for every service of ``docker-compose.yml`` this creates a
network namespace ``msw-<service>`` holding one veth end (``eth0``) with the service's static
address; the other ends are joined by a bridge in a namespace of their own (``msw-bridge``,
which also holds the compose network's gateway address, for observers). Nothing is created
in the host's namespace and only the compose subnet's addresses and loopback are used. Each
hospital then runs the very entrypoint (``docker/entrypoint.sh``), environment and command
of its compose service, with the volumes replaced by directories under ``--run-dir``.

Faults (``--fault``), on ``--victim`` (default the third hospital, not the bootstrap):

- ``cut``: its link goes down (``ip link set ... down``) until the others have advanced
  ``--advance`` rounds without it, then comes back up.
- ``kill``: its process is killed (SIGKILL) and, once the others have advanced, restarted
  with the same command; it resumes from its checkpoints and catches up.
- ``loss``: from the start, ``--loss`` of the packets arriving at every hospital are dropped
  (iptables ``statistic`` match inside each namespace) and every link gets ``--delay``
  seconds of one-way latency through a delaying TCP relay (``scripts/delay_relay.py``) in
  front of the bootstrap hospital, which every link goes through (this kernel has no
  ``tc netem``).

Namespaces, links and processes are removed on exit, on Ctrl-C, SIGTERM or an exception,
and leftovers of a crashed earlier run are removed at start. Needs root and ``ip``.
``MEDSWARM_NETNS_PREFIX`` (default ``msw-``) replaces the ``msw-`` of every name, so that two
runs on one host (two test sessions) neither share nor remove each other's namespaces; a
prefix ``msw<pid>-`` marks a run by its process, and at start the namespaces of such runs
whose process is gone are removed too.

    sudo .venv/bin/python scripts/netns_swarm.py                 # the compose scenario
    sudo .venv/bin/python scripts/netns_swarm.py --fault kill -- --rounds 60
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout

from peers import metrics_log  # noqa: E402
from peers.status import fetch_status  # noqa: E402

COMPOSE = ROOT / "docker-compose.yml"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"
RELAY = ROOT / "scripts" / "delay_relay.py"
TABLE = ROOT / "scripts" / "swarm_status.py"
#: namespace names start with this (see the module docstring)
PREFIX = os.environ.get("MEDSWARM_NETNS_PREFIX", "msw-")
if not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", PREFIX):
    sys.exit(f"netns_swarm: MEDSWARM_NETNS_PREFIX {PREFIX!r} is not 1-24 of a-z, 0-9 and -, "
             "starting with a letter")
#: a run's prefix that names its process (``msw<pid>-``)
PID_PREFIX = re.compile(r"msw(\d+)-")
BRIDGE_NS = PREFIX + "bridge"
BRIDGE = "br0"
RELAY_PORT = 4101
#: compose volume mount points -> the entrypoint variable that names them
VOLUME_VARS = {
    "/var/lib/medswarm/key": "MEDSWARM_KEY_DIR",
    "/var/lib/medswarm/state": "MEDSWARM_STATE_DIR",
    "/var/lib/medswarm/enrol": "MEDSWARM_ENROL_DIR",
}
CLONE_NEWNET = 0x40000000
#: added to every hospital's command: it appends a row per round to STATE_DIR/metrics.jsonl,
#: which is how the harness sees the rounds in which it mixed its neighbours' models
OBSERVE = ("--eval-global",)


class SetupError(RuntimeError):
    """The host cannot run the namespace swarm (not root, no ``ip``, a command failed)."""


# ------------------------------------------------------------------ the compose scenario
@dataclass(frozen=True)
class Service:
    """One hospital as the compose file describes it."""

    name: str
    address: str
    environment: Mapping[str, str]
    command: tuple[str, ...]
    volumes: tuple[str, ...]

    @property
    def netns(self) -> str:
        """The namespace this hospital runs in."""
        return PREFIX + self.name

    @property
    def link(self) -> str:
        """Its veth end in the bridge namespace (an interface name: at most 15 bytes)."""
        return self.name[:15]

    @property
    def status_port(self) -> int | None:
        """The ``--status-port`` of its command, if any."""
        value = option_value(self.command, "--status-port")
        return int(value) if value is not None else None

    @property
    def status_url(self) -> str | None:
        """Where its ``/status`` answers on the swarm network."""
        port = self.status_port
        return None if port is None else f"http://{self.address}:{port}/status"


@dataclass(frozen=True)
class Scenario:
    """The hospitals and their network, read from the compose file."""

    services: tuple[Service, ...]
    subnet: ipaddress.IPv4Network
    gateway: str

    def service(self, name: str) -> Service:
        """The service called ``name`` (KeyError if there is none)."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def option_value(command: Sequence[str], option: str) -> str | None:
    """The value of the last ``option VALUE`` or ``option=VALUE`` in ``command``, or None."""
    found = None
    for i, arg in enumerate(command):
        if arg == option and i + 1 < len(command):
            found = command[i + 1]
        elif arg.startswith(option + "="):
            found = arg.split("=", 1)[1]
    return found


def _environment(raw: Any) -> dict[str, str]:
    if isinstance(raw, list):  # the KEY=VALUE list form
        return dict(item.split("=", 1) for item in raw)
    return {str(k): "" if v is None else str(v) for k, v in (raw or {}).items()}


def scenario_from_compose(doc: Mapping[str, Any]) -> Scenario:
    """The scenario of a parsed compose document (pure: no I/O).

    Every service must sit on exactly one network with a static ``ipv4_address`` inside
    that network's subnet; ValueError otherwise.
    """
    networks = doc.get("networks") or {}
    if len(networks) != 1:
        raise ValueError(f"expected one network, found {sorted(networks)}")
    (net_name, net), = networks.items()
    ipam = (net or {}).get("ipam", {}).get("config", [{}])[0]
    subnet = ipaddress.IPv4Network(ipam["subnet"])
    gateway = ipam.get("gateway") or str(next(subnet.hosts()))
    services = []
    for name, svc in (doc.get("services") or {}).items():
        address = svc["networks"][net_name]["ipv4_address"]
        if ipaddress.IPv4Address(address) not in subnet:
            raise ValueError(f"{name}: {address} is outside {subnet}")
        command = svc.get("command") or []
        if isinstance(command, str):
            command = command.split()
        services.append(Service(name, address, _environment(svc.get("environment")),
                                tuple(str(c) for c in command), tuple(svc.get("volumes") or ())))
    return Scenario(tuple(services), subnet, gateway)


def load_scenario(path: Path = COMPOSE) -> Scenario:
    """Read the compose file (YAML, anchors and merge keys resolved) into a Scenario."""
    import yaml

    return scenario_from_compose(yaml.safe_load(path.read_text()))


def round_events(rows: Sequence[Mapping[str, Any]]) -> list[tuple[int, bool]]:
    """Every round of a peer's ``metrics.jsonl`` rows, with whether it mixed neighbours'
    models then (its distance to their average is a number, not null)."""
    return [(int(row["round"]), row.get("consensus_distance") is not None) for row in rows]


def rejoined(events: Sequence[tuple[int, bool]], catch_ups: int = 0) -> bool:
    """Whether a peer worked with the swarm again: it caught up to a neighbour's model
    (``catch_ups``, from its ``/status`` and report), mixed a neighbour's model in some
    round, or its rounds jumped two or more ahead at once."""
    if catch_ups > 0:
        return True
    previous = None
    for round_, mixed in events:
        if mixed or (previous is not None and round_ >= previous + 2):
            return True
        previous = round_
    return False


# ------------------------------------------------------------------ namespaces
def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise SetupError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


def host_problem(need_iptables: bool = False) -> str | None:
    """Why this host cannot run namespace swarms, or None if it can."""
    if os.geteuid() != 0:
        return "needs root (ip netns add)"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip`"
    if need_iptables and shutil.which("iptables") is None:
        return "needs iptables (Debian package iptables) for the loss scenario"
    return None


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def select_ours(names: Sequence[str], prefix: str, gone: Callable[[int], bool]) -> list[str]:
    """Of the namespaces ``names``: those of ``prefix`` (this run's), and those of runs marked
    by a process (``msw<pid>-``) that is ``gone``; never a live run's."""
    ours = []
    for name in names:
        owner = PID_PREFIX.match(name)
        if name.startswith(prefix) or (owner is not None and gone(int(owner.group(1)))):
            ours.append(name)
    return ours


def our_namespaces() -> list[str]:
    """The namespaces that exist now and are this run's or a dead run's (``select_ours``)."""
    out = _run("ip", "netns", "list", check=False).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return select_ours(names, PREFIX, _process_gone)


def remove_namespace(ns: str) -> None:
    """Kill every process left in ``ns``, then delete it (its veth ends go with it)."""
    for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run("ip", "netns", "del", ns, check=False)


def clean_leftovers() -> list[str]:
    """Remove the namespaces a crashed earlier run left behind; returns their names."""
    left = our_namespaces()
    for ns in left:
        remove_namespace(ns)
    return left


def _enter_netns(ns: str) -> None:
    """Move the calling thread into network namespace ``ns`` (setns(2); Python 3.11 has no
    os.setns). Sockets this thread opens afterwards live in that namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    with open(f"/run/netns/{ns}") as handle:
        if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {ns}: {os.strerror(err)}")


class NamespaceHTTP:
    """GET JSON documents from inside one namespace (the bridge's, which sees every
    hospital), through a worker thread that entered it: the host namespace stays as it is."""

    def __init__(self, ns: str) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(1, initializer=_enter_netns, initargs=(ns,))

    def get_json(self, url: str, timeout: float = 2.0) -> dict | None:
        """The JSON at ``url``, or None if it does not answer (in time) or is not JSON."""
        return self._pool.submit(fetch_status, url, timeout).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _wrapper(bin_dir: Path) -> None:
    """A ``medswarm`` on PATH that runs this checkout with this interpreter."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "medswarm"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m peers.cli "$@"\n')
    script.chmod(0o755)


# ------------------------------------------------------------------ the swarm
@dataclass
class Hospital:
    """A running (or stopped) hospital process and where its files are."""

    service: Service
    home: Path
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def stderr(self) -> Path:
        return self.home / f"stderr.{self.starts}.log"

    def log_text(self) -> str:
        """Everything it logged on stderr, over all its starts (for people reading a failure)."""
        return "".join(p.read_text(errors="replace") for p in self._logs("stderr"))

    def _logs(self, stream: str) -> list[Path]:
        return [self.home / f"{stream}.{n}.log" for n in range(1, self.starts + 1)
                if (self.home / f"{stream}.{n}.log").exists()]

    def stdout_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self._logs("stdout"))

    def round(self) -> int | None:
        """The last round it completed: the round of its newest checkpoint, or None."""
        from swarm.checkpoint import CheckpointStore

        if not self.state_dir.is_dir():
            return None
        latest = CheckpointStore(self.state_dir).load_latest()
        return None if latest is None else latest.round

    @property
    def state_dir(self) -> Path:
        return self.home / "state"

    @property
    def metrics(self) -> Path:
        """Its per-round rows (written because of ``OBSERVE``)."""
        return self.state_dir / "metrics.jsonl"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NetnsSwarm:
    """The compose scenario in network namespaces; a context manager that always cleans up.

    ``extra_args`` are appended to every service's command (later options override earlier
    ones): the tests use them to make rounds, heartbeats and timeouts short.
    """

    def __init__(self, scenario: Scenario, run_dir: Path, extra_args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None) -> None:
        self.scenario = scenario
        self.run_dir = Path(run_dir)
        self.extra_args = tuple(extra_args)
        self.env_overrides = dict(env or {})
        #: options added to one hospital's command only (after ``extra_args``)
        self.service_args: dict[str, list[str]] = {}
        self.http: NamespaceHTTP | None = None
        self.hospitals = {s.name: Hospital(s, self.run_dir / s.name) for s in scenario.services}
        self._namespaces: list[str] = []
        self._helpers: list[subprocess.Popen] = []

    # -------------------------------------------------------------- setup / teardown
    def __enter__(self) -> NetnsSwarm:
        problem = host_problem()
        if problem:
            raise SetupError(problem)
        left = clean_leftovers()
        if left:
            print(f"removed leftovers of an earlier run: {' '.join(left)}", file=sys.stderr)
        try:
            self._create_network()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _netns(self, ns: str) -> None:
        _run("ip", "netns", "add", ns)
        self._namespaces.append(ns)
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def _create_network(self) -> None:
        prefix = self.scenario.subnet.prefixlen
        self._netns(BRIDGE_NS)
        _run("ip", "-n", BRIDGE_NS, "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "-n", BRIDGE_NS, "addr", "add", f"{self.scenario.gateway}/{prefix}", "dev", BRIDGE)
        _run("ip", "-n", BRIDGE_NS, "link", "set", BRIDGE, "up")
        for service in self.scenario.services:
            self._netns(service.netns)
            # both ends are created straight in their namespaces: the host's is never touched
            _run("ip", "-n", BRIDGE_NS, "link", "add", service.link, "type", "veth",
                 "peer", "name", "eth0", "netns", service.netns)
            _run("ip", "-n", BRIDGE_NS, "link", "set", service.link, "master", BRIDGE, "up")
            _run("ip", "-n", service.netns, "addr", "add", f"{service.address}/{prefix}", "dev", "eth0")
            _run("ip", "-n", service.netns, "link", "set", "eth0", "up")
        _wrapper(self.run_dir / "bin")
        self.http = NamespaceHTTP(BRIDGE_NS)

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and delete every namespace."""
        if self.http is not None:
            self.http.close()
            self.http = None
        for proc in [h.proc for h in self.hospitals.values()] + self._helpers:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in [h.proc for h in self.hospitals.values()] + self._helpers:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for ns in reversed(self._namespaces):
            remove_namespace(ns)
        self._namespaces.clear()

    # -------------------------------------------------------------- processes
    def environment(self, service: Service) -> dict[str, str]:
        """The service's compose environment, with its volumes mapped to run-dir folders."""
        home = self.hospitals[service.name].home
        env = {
            "PATH": f"{self.run_dir / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "HOME": str(home),
            "LANG": "C.UTF-8",
        }
        env.update(service.environment)
        for volume in service.volumes:
            source, target = volume.split(":")[:2]
            var = VOLUME_VARS.get(target)
            if var is not None:
                env[var] = str(self.run_dir / source if source == "enrol" else home / target.rsplit("/", 1)[1])
        env.update(self.env_overrides)
        return env

    def start(self, name: str) -> Hospital:
        """Start (or restart) one hospital: its compose entrypoint and command in its namespace."""
        hospital = self.hospitals[name]
        hospital.home.mkdir(parents=True, exist_ok=True)
        hospital.starts += 1
        service = hospital.service
        argv = ["ip", "netns", "exec", service.netns, "/bin/sh", str(ENTRYPOINT),
                *service.command, *OBSERVE, *self.extra_args, *self.service_args.get(name, ())]
        with open(hospital.home / f"stdout.{hospital.starts}.log", "w") as out, \
                open(hospital.stderr, "w") as err:
            hospital.proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             env=self.environment(service), start_new_session=True)
        return hospital

    def start_all(self) -> None:
        """Start every hospital at once, as ``docker compose up`` does."""
        for name in self.hospitals:
            self.start(name)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to a hospital's process and wait for it; returns its exit status."""
        proc = self.hospitals[name].proc
        assert proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        return proc.wait(timeout=30)

    def set_link(self, name: str, up: bool) -> None:
        """Bring a hospital's link to the bridge down (cut) or back up."""
        _run("ip", "-n", BRIDGE_NS, "link", "set", self.hospitals[name].service.link,
             "up" if up else "down")

    def add_loss(self, probability: float) -> None:
        """Drop ``probability`` of the packets arriving at every hospital (iptables)."""
        if shutil.which("iptables") is None:
            raise SetupError("iptables is not installed (Debian package iptables)")
        for service in self.scenario.services:
            _run("ip", "netns", "exec", service.netns, "iptables", "-A", "INPUT", "-i", "eth0",
                 "-m", "statistic", "--mode", "random", "--probability", str(probability), "-j", "DROP")

    def dropped_packets(self) -> dict[str, int]:
        """Packets the loss rule has dropped so far, per hospital."""
        dropped = {}
        for service in self.scenario.services:
            out = _run("ip", "netns", "exec", service.netns, "iptables", "-L", "INPUT", "-v", "-x", "-n",
                       check=False).stdout
            dropped[service.name] = sum(int(line.split()[0]) for line in out.splitlines()
                                        if "DROP" in line and "statistic" in line)
        return dropped

    def add_delay_relay(self, name: str, port: int, delay: float) -> str:
        """A relay in ``name``'s namespace on ``port`` that forwards to its libp2p port after
        ``delay`` seconds each way; returns the relay's address (``/ip4/.../tcp/PORT``)."""
        service = self.hospitals[name].service
        target = option_value(service.command, "--listen") or ""
        match = re.fullmatch(r"/ip4/([\d.]+)/tcp/(\d+)", target)
        if match is None:
            raise SetupError(f"{name}: cannot relay to --listen {target!r}")
        with open(self.run_dir / f"relay-{name}.log", "w") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", service.netns, sys.executable, str(RELAY),
                 "--listen", f"{service.address}:{port}", "--to", f"{match[1]}:{match[2]}",
                 "--delay", str(delay)],
                stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
        self._helpers.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        proc.stdout.close()
        if not line.startswith("relaying"):
            raise SetupError(f"delay relay did not start: {line!r}")
        return f"/ip4/{service.address}/tcp/{port}"

    def show_table(self) -> None:
        """Run scripts/swarm_status.py in the bridge namespace (it sees every hospital's
        /status), drawing on this terminal until all hospitals stopped."""
        urls = [s.status_url for s in self.scenario.services if s.status_url]
        if urls:
            self._helpers.append(subprocess.Popen(
                ["ip", "netns", "exec", BRIDGE_NS, sys.executable, str(TABLE), "--interval", "0.5", *urls],
                start_new_session=True))

    # -------------------------------------------------------------- observing
    def statuses(self) -> dict[str, dict | None]:
        """Every hospital's ``/status`` document, seen from the bridge namespace (None where
        it does not answer: not started yet, killed, cut off, or no status port)."""
        out: dict[str, dict | None] = {}
        for name, h in self.hospitals.items():
            url = h.service.status_url
            out[name] = self.http.get_json(url, timeout=1.0) if url and self.http and h.running() else None
        return out

    def rounds(self) -> dict[str, int | None]:
        """Every hospital's current round: from ``/status`` when the compose services have a
        status port (None for one that does not answer), else its newest checkpoint's round."""
        if all(h.service.status_url for h in self.hospitals.values()):
            return {name: None if doc is None else int(doc["round"]) for name, doc in self.statuses().items()}
        return {name: h.round() for name, h in self.hospitals.items()}

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str,
                   every: float = 0.2) -> None:
        """Poll ``condition`` until true; TimeoutError naming ``what`` after ``timeout`` s.

        Fails early if a hospital that should be running has exited with an error.
        """
        deadline = time.monotonic() + timeout
        while not condition():
            for name, h in self.hospitals.items():
                code = h.proc.poll() if h.proc is not None else None
                if code not in (None, 0) and code > 0:
                    raise RuntimeError(f"{name} exited with {code} while waiting for {what}:\n"
                                       + h.log_text()[-1500:])
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout:.0f}s; rounds {self.rounds()}")
            time.sleep(every)

    def wait_all_exited(self, timeout: float) -> dict[str, int]:
        """Wait for every hospital's process to end; their exit codes."""
        deadline = time.monotonic() + timeout
        codes = {}
        for name, h in self.hospitals.items():
            assert h.proc is not None
            try:
                codes[name] = h.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{name} still running after {timeout:.0f}s; rounds {self.rounds()}") from None
        return codes

    def report(self, name: str) -> dict | None:
        """A hospital's final report (``STATE_DIR/report.json``), if it wrote one."""
        path = self.hospitals[name].state_dir / "report.json"
        return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------ checkpoints
@dataclass
class CheckpointCheck:
    """Every checkpoint file of one hospital, decoded."""

    files: int
    rounds: list[int]
    latest_round: int | None
    errors: list[str] = field(default_factory=list)


def check_checkpoints(state_dir: Path, peer_id: str | None) -> CheckpointCheck:
    """Decode every checkpoint in ``state_dir`` and load the latest as the peer would."""
    from swarm.checkpoint import CheckpointError, CheckpointStore, decode_state

    store = CheckpointStore(state_dir)
    rounds, errors = [], []
    for path in store.list():
        try:
            state = decode_state(path.read_bytes())
            rounds.append(state.round)
            if peer_id is not None and state.peer_id != peer_id:
                errors.append(f"{path.name}: belongs to {state.peer_id}")
        except CheckpointError as err:
            errors.append(f"{path.name}: {err}")
    latest = store.load_latest(peer_id)
    return CheckpointCheck(len(rounds) + len(errors), rounds, None if latest is None else latest.round, errors)


# ------------------------------------------------------------------ scenarios
@dataclass
class Outcome:
    """What a scenario run observed; the tests assert on it."""

    fault: str
    victim: str | None
    #: the victim's rounds (and whether it mixed) after it came back, from its metrics.jsonl
    victim_events_after: list[tuple[int, bool]] = field(default_factory=list)
    #: how often the victim adopted a neighbour's model after it came back
    victim_catch_ups_after: int = 0
    #: the round of the checkpoint a restarted victim resumed from (its report's start_round - 1)
    victim_resumed_from: int | None = None
    dropped_packets: dict[str, int] = field(default_factory=dict)
    relay_connections: int = 0
    rounds_at_fault: dict[str, int | None] = field(default_factory=dict)
    rounds_at_restore: dict[str, int | None] = field(default_factory=dict)
    exit_codes: dict[str, int] = field(default_factory=dict)
    reports: dict[str, dict | None] = field(default_factory=dict)
    checkpoints: dict[str, CheckpointCheck] = field(default_factory=dict)
    wall_s: float = 0.0

    def others(self) -> list[str]:
        return [n for n in self.exit_codes if n != self.victim]


def run_scenario(swarm: NetnsSwarm, fault: str = "none", victim: str | None = None, *,
                 warmup: int = 2, advance: int = 3, outage: float = 5.0, loss: float = 0.05,
                 delay: float = 0.05, timeout: float = 240,
                 say: Callable[[str], None] = lambda s: None) -> Outcome:
    """Run the swarm with one fault (none | cut | kill | loss) and collect what happened.

    cut and kill: once every hospital has done ``warmup`` rounds, the victim goes away for
    ``outage`` seconds and until every other hospital has done ``advance`` more rounds
    (whichever is later), then comes back. loss: from the
    start, ``loss`` packet loss at every hospital and ``delay`` s one-way latency on every
    link (through a relay in front of the bootstrap hospital).
    """
    started = time.monotonic()
    names = list(swarm.hospitals)
    victim = victim or (names[2] if len(names) > 2 else names[-1])
    outcome = Outcome(fault, victim if fault in ("cut", "kill") else None)
    if fault == "loss":
        swarm.add_loss(loss)
        # every hospital is dialled through a relay of its own: it announces the relay's
        # address, and the bootstrap address is the first hospital's relay
        relays = {name: swarm.add_delay_relay(name, RELAY_PORT, delay) for name in names}
        for name, relay in relays.items():
            swarm.service_args[name] = ["--announce", relay]
        boot = swarm.scenario.services[0].environment.get("MEDSWARM_BOOTSTRAP", "")
        boot_name = boot.split("=", 1)[0]
        if boot_name in relays:
            swarm.env_overrides["MEDSWARM_BOOTSTRAP"] = f"{boot_name}={relays[boot_name]}"
        say(f"loss {loss:.0%} at every hospital; {delay * 1000:.0f} ms each way through relays on port {RELAY_PORT}")
    swarm.start_all()
    say("started " + " ".join(names))
    if fault in ("cut", "kill"):
        swarm.wait_until(lambda: all((r or -1) >= warmup for r in swarm.rounds().values()),
                         timeout, f"round {warmup} at every hospital")
        outcome.rounds_at_fault = swarm.rounds()
        # a cut-off hospital cannot catch up; a killed one starts counting again from 0
        before_doc = swarm.statuses()[victim] if fault == "cut" else None
        catch_ups_before = before_doc["catch_ups"] if before_doc else 0
        if fault == "cut":
            swarm.set_link(victim, up=False)
        else:
            swarm.kill(victim)
        say(f"{fault} {victim} at rounds {outcome.rounds_at_fault}")
        before = outcome.rounds_at_fault

        def others_advanced() -> bool:
            now = swarm.rounds()
            return all((now[n] or 0) >= (before[n] or 0) + advance for n in names if n != victim)

        gone = time.monotonic()
        swarm.wait_until(lambda: others_advanced() and time.monotonic() - gone >= outage, timeout,
                         f"{advance} rounds without {victim}")
        outcome.rounds_at_restore = swarm.rounds()
        mark = metrics_log.size(swarm.hospitals[victim].metrics)
        if fault == "cut":
            swarm.set_link(victim, up=True)
        else:
            swarm.start(victim)
        say(f"restored {victim} at rounds {outcome.rounds_at_restore}")
    outcome.exit_codes = swarm.wait_all_exited(timeout)
    if outcome.victim is not None:
        outcome.victim_events_after = round_events(metrics_log.read_rows(swarm.hospitals[victim].metrics, mark))
        final = swarm.report(victim) or {}
        outcome.victim_catch_ups_after = final.get("catch_ups", 0) - catch_ups_before
        if fault == "kill" and final.get("start_round", 0) > 0:
            outcome.victim_resumed_from = final["start_round"] - 1
    if fault == "loss":
        outcome.dropped_packets = swarm.dropped_packets()
        outcome.relay_connections = sum((swarm.run_dir / f"relay-{name}.log").read_text().count(
            "event=relay-connection") for name in names)
    for name, h in swarm.hospitals.items():
        outcome.reports[name] = swarm.report(name)
        peer_id = (h.home / "key" / "peer.id").read_text().strip() if (h.home / "key" / "peer.id").exists() else None
        outcome.checkpoints[name] = check_checkpoints(h.state_dir, peer_id)
    outcome.wall_s = time.monotonic() - started
    return outcome


def summary(outcome: Outcome) -> str:
    """A few human lines about a finished scenario."""
    lines = [f"fault={outcome.fault} victim={outcome.victim} wall={outcome.wall_s:.1f}s"]
    for name, code in outcome.exit_codes.items():
        rep = outcome.reports.get(name) or {}
        ck = outcome.checkpoints.get(name)
        lines.append(f"  {name}: exit={code} stop_round={rep.get('stop_round')} reason={rep.get('reason')} "
                     f"rounds_completed={rep.get('rounds_completed')} auroc={rep.get('auroc')} "
                     f"checkpoints={ck.files if ck else 0} bad={len(ck.errors) if ck else 0}")
    return "\n".join(lines)


# ------------------------------------------------------------------ command line
def _on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the compose scenario (optionally with a fault) in namespaces; 0 if it converged."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compose", type=Path, default=COMPOSE)
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "netns")
    parser.add_argument("--fault", choices=("none", "cut", "kill", "loss"), default="none")
    parser.add_argument("--victim", default=None, help="service to cut or kill (default: the third)")
    parser.add_argument("--advance", type=int, default=3, help="rounds the others do without the victim")
    parser.add_argument("--outage", type=float, default=5.0, help="seconds the victim is gone at least")
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--delay", type=float, default=0.05, help="one-way latency, s (loss fault)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--table", action="store_true", help="show the live status table meanwhile")
    parser.add_argument("peer_args", nargs="*", help="after --: options added to every peer command")
    args = parser.parse_args(argv)
    problem = host_problem(need_iptables=args.fault == "loss")
    if problem:
        print(f"netns_swarm: error: {problem}", file=sys.stderr)
        return 2
    try:
        scenario = load_scenario(args.compose)
    except Exception as err:  # missing file, bad YAML, a service without a static address
        print(f"netns_swarm: error: {args.compose}: {err}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    if args.run_dir.exists():
        shutil.rmtree(args.run_dir)
    try:
        with NetnsSwarm(scenario, args.run_dir, args.peer_args) as swarm:
            if args.table:
                swarm.show_table()
            outcome = run_scenario(swarm, args.fault, args.victim, advance=args.advance, outage=args.outage,
                                   loss=args.loss,
                                   delay=args.delay, timeout=args.timeout,
                                   say=lambda line: print(line, file=sys.stderr))
    except KeyboardInterrupt:
        print("netns_swarm: interrupted; namespaces removed", file=sys.stderr)
        return 130
    except (SetupError, TimeoutError, RuntimeError, OSError) as err:
        print(f"netns_swarm: error: {err}", file=sys.stderr)
        return 1
    print(summary(outcome))
    stops = {(r or {}).get("stop_round") for r in outcome.reports.values()}
    ok = set(outcome.exit_codes.values()) == {0} and len(stops) == 1
    print(f"logs and state in {args.run_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
