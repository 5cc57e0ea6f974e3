"""A Ray cluster of separate processes on this host, for tests and benchmarks of ``--ray``.

``ray start --head`` on loopback plus ``workers`` more ``ray start --address`` node
processes, ``cpus`` CPUs each, every one with ``--block`` so that it stays our child: on
exit exactly those processes are terminated (each stops the Ray daemons it started), never
anything found by name. Token authentication (Ray's default for a started head) is used
throughout: this process gets ``RAY_AUTH_MODE=token`` while the cluster runs, and must have
had it already when it imported ``ray`` (Ray reads it then), or it cannot connect.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from swarm.errors import SwarmError

#: what ``ray start --block`` prints once its node is up
_READY = "This command will now block forever"


class RayClusterError(SwarmError):
    """A local Ray node did not come up."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ray_binary() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    if found is None:
        raise RayClusterError("the ray command is not installed: pip install 'medswarm[ray]'")
    return found


class LocalRayCluster:
    """``with LocalRayCluster(workers=1) as address:`` a head and ``workers`` node processes."""

    def __init__(self, workers: int = 1, cpus: int = 1, timeout: float = 180.0) -> None:
        self.workers, self.cpus, self.timeout = workers, cpus, timeout
        self.procs: list[subprocess.Popen] = []
        self.address = ""
        self._dir: tempfile.TemporaryDirectory | None = None
        self._env_before: str | None = None

    def _start(self, args: list[str], env: dict[str, str]) -> None:
        proc = subprocess.Popen([_ray_binary(), "start", "--block", "--num-cpus", str(self.cpus),
                                 "--disable-usage-stats", "--node-ip-address", "127.0.0.1", *args],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.procs.append(proc)
        ready, tail = threading.Event(), []

        def drain() -> None:  # reads until the node is up, then keeps the pipe from filling
            assert proc.stdout is not None
            for line in proc.stdout:
                tail[:] = (tail + [line.rstrip()])[-5:]
                if _READY in line:
                    ready.set()
            ready.set()  # ended: the process is gone

        threading.Thread(target=drain, daemon=True).start()
        if not ready.wait(self.timeout) or proc.poll() is not None:
            raise RayClusterError(f"ray start {' '.join(args[:1])} did not come up: {' | '.join(tail)}")

    def __enter__(self) -> str:
        self._dir = tempfile.TemporaryDirectory(prefix="ray", dir="/tmp", ignore_cleanup_errors=True)  # short: Unix socket paths
        self._env_before = os.environ.get("RAY_AUTH_MODE")
        os.environ["RAY_AUTH_MODE"] = "token"
        env = dict(os.environ)
        port = _free_port()
        self.address = f"127.0.0.1:{port}"
        try:
            self._start(["--head", "--port", str(port), "--include-dashboard", "false",
                         "--temp-dir", self._dir.name], env)
            for _ in range(self.workers):
                self._start(["--address", self.address], env)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self.address

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        for proc in reversed(self.procs):  # workers first, then the head
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        if self._env_before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = self._env_before
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
