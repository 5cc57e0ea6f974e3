"""The peer's status endpoint: ``GET /status`` (JSON) and ``GET /metrics`` (Prometheus text).

Two pure functions make the content, testable without a socket: ``status_snapshot`` turns
what the peer knows (``PeerStatus``: identity and lifecycle; ``RunnerView``: the protocol's
round, neighbours, votes and counters) into the JSON document, and ``render_metrics`` turns
that document into the Prometheus text exposition format (``prometheus_client`` writes the
format and its escaping; it already comes with libp2p).

The server is a small HTTP/1.1 responder on ``trio`` with ``h11`` doing the parsing: one
request per connection, the request (line and headers) bounded in size, the whole exchange
bounded in time, a bounded number of connections at once. Anything malformed gets a 4xx
answer or a closed connection and one log line; nothing a client sends can end the peer.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import h11
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from peers.errors import PeerError
from swarm.metrics import finite_or_none

if TYPE_CHECKING:
    from peers.runner import PeerRunner, RunnerView

log = logging.getLogger("medswarm.peer")

STATES = ("starting", "running", "stopped")
JSON_TYPE = "application/json"
#: Prometheus text format 0.0.4, which every scraper reads (our names need no UTF-8 escaping)
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class PeerStatus:
    """What the endpoint reports besides the protocol: who this peer is and where it is in its life.

    ``runner`` is set once the first neighbour has connected and the protocol runs; until
    then the state is ``starting`` and ``start_round`` is the round it will begin with.
    ``updated_at`` (Unix time) moves on every state change and completed round, so a
    monitor can tell a stalled peer from a busy one.
    """

    peer_id: str
    site: int
    name: str | None = None
    start_round: int = 0
    state: str = "starting"
    runner: PeerRunner | None = None
    updated_at: float = field(default_factory=time.time)
    #: under DP, the ledger's figures (``swarm.privacy.PrivateTraining.summary``)
    privacy: Callable[[], Mapping[str, Any]] | None = None

    def touch(self) -> None:
        """Note that something changed now."""
        self.updated_at = time.time()

    def running(self, runner: PeerRunner) -> None:
        """The protocol has started with ``runner``."""
        self.runner, self.state = runner, "running"
        self.touch()

    def stopped(self) -> None:
        """The protocol has exited (or the peer was told to stop)."""
        self.state = "stopped"
        self.touch()


def status_snapshot(status: PeerStatus, view: RunnerView | None) -> dict[str, Any]:
    """The ``/status`` document from the peer's status and (once running) its runner's view.

    Non-finite numbers become ``null`` so the document is always valid JSON.
    """
    doc = _snapshot(status, view)
    doc["privacy"] = None
    if status.privacy is not None:
        dp = status.privacy()
        doc["privacy"] = {"epsilon_spent": finite_or_none(dp["dp_epsilon_spent"]),
                          "epsilon_budget": dp["dp_epsilon_budget"], "delta": dp["dp_delta"],
                          "rounds_charged": dp["dp_rounds_charged"], "budget_exhausted": dp["dp_budget_exhausted"]}
    return doc


def _snapshot(status: PeerStatus, view: RunnerView | None) -> dict[str, Any]:
    if view is None:
        return {
            "peer_id": status.peer_id, "name": status.name, "site": status.site,
            "round": status.start_round, "state": status.state, "neighbours": [], "suspected": [],
            "last": {"loss": None, "metric": None, "distance": None},
            "convergence": {"voted": False, "stop_round": None, "reason": None},
            "rounds_completed": 0, "catch_ups": 0, "rejected": {}, "bad_control": 0,
            "updated_at": status.updated_at,
        }
    return {
        "peer_id": status.peer_id, "name": status.name, "site": status.site,
        "round": view.round, "state": status.state,
        "neighbours": sorted(view.neighbours), "suspected": sorted(view.suspected),
        "last": {"loss": finite_or_none(view.loss), "metric": finite_or_none(view.metric),
                 "distance": finite_or_none(view.distance)},
        "convergence": {"voted": view.voted, "stop_round": view.stop_round,
                        "reason": view.reason or None},
        "rounds_completed": view.rounds_completed, "catch_ups": view.catch_ups,
        "rejected": dict(sorted(view.rejected.items())), "bad_control": view.bad_control,
        "updated_at": status.updated_at,
    }


def render_metrics(snapshot: Mapping[str, Any]) -> str:
    """The ``/metrics`` page (Prometheus text format) for a ``status_snapshot`` document.

    Figures not known yet (no round completed) are left out rather than reported as 0.
    """
    families: list = []

    def gauge(name: str, doc: str, value: float | None) -> None:
        family = GaugeMetricFamily(name, doc)
        if value is not None:
            family.add_metric([], float(value))
        families.append(family)

    last, vote = snapshot["last"], snapshot["convergence"]
    gauge("medswarm_round", "Current protocol round of this peer.", snapshot["round"])
    state = GaugeMetricFamily("medswarm_state", "1 for the peer's current state.", labels=["state"])
    for name in STATES:
        state.add_metric([name], 1.0 if snapshot["state"] == name else 0.0)
    families.append(state)
    gauge("medswarm_neighbours", "Neighbours this peer exchanges models with.", len(snapshot["neighbours"]))
    gauge("medswarm_suspected", "Neighbours currently suspected (silent too long).", len(snapshot["suspected"]))
    gauge("medswarm_rounds_completed", "Rounds this process has completed.", snapshot["rounds_completed"])
    gauge("medswarm_last_loss", "Training loss of the last local training.", last["loss"])
    gauge("medswarm_last_metric", "Validation loss after the last completed round.", last["metric"])
    gauge("medswarm_last_distance", "Relative distance to the neighbours' average, last round.",
          last["distance"])
    gauge("medswarm_converged", "1 if this peer's latest convergence vote is yes.", 1 if vote["voted"] else 0)
    gauge("medswarm_stop_round", "Agreed stop round, once decided.", vote["stop_round"])
    dp = snapshot.get("privacy") or {}
    gauge("medswarm_dp_epsilon_spent", "Differential privacy: epsilon this hospital has spent (DP only).",
          dp.get("epsilon_spent"))
    gauge("medswarm_dp_epsilon_budget", "Differential privacy: this hospital's epsilon budget (DP only).",
          dp.get("epsilon_budget"))
    rejected = CounterMetricFamily("medswarm_rejected_total", "Received models rejected, by reason.",
                                   labels=["reason"])
    for reason, count in sorted(snapshot["rejected"].items()):
        rejected.add_metric([str(reason)], float(count))
    families.append(rejected)
    families.append(CounterMetricFamily("medswarm_catch_ups_total",
                                        "Times this process adopted a model of a neighbour far ahead.",
                                        value=float(snapshot["catch_ups"])))
    families.append(CounterMetricFamily("medswarm_bad_control_total",
                                        "Control messages that failed to decode or were not allowed.",
                                        value=float(snapshot["bad_control"])))

    class _Snapshot:
        def collect(self):  # the prometheus_client collector interface
            return iter(families)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot())  # type: ignore[arg-type]
    return generate_latest(registry).decode("utf-8")


# ------------------------------------------------------------------ HTTP

@dataclass(frozen=True)
class HttpResponse:
    """One answer: status code, content type and body."""

    code: int
    content_type: str = "text/plain; charset=utf-8"
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on what a client may cost the peer."""

    max_request_bytes: int = 8192     # request line + headers
    timeout: float = 5.0              # whole exchange, from accept to the last byte sent
    max_connections: int = 16         # served at once; more are closed at once


def route(method: str, target: str, snapshot: Callable[[], dict[str, Any]]) -> HttpResponse:
    """The answer to one request (``snapshot`` is only called for the two known paths)."""
    path = target.split("?", 1)[0]
    if path not in ("/status", "/metrics"):
        return _plain(404, "not found: try /status or /metrics")
    if method != "GET":
        return HttpResponse(405, body=b"method not allowed\n", headers=(("allow", "GET"),))
    doc = snapshot()
    if path == "/status":
        return HttpResponse(200, JSON_TYPE, (json.dumps(doc) + "\n").encode())
    return HttpResponse(200, METRICS_TYPE, render_metrics(doc).encode())


def make_snapshot_fn(status: PeerStatus) -> Callable[[], dict[str, Any]]:
    """A function taking a fresh snapshot of ``status`` and its runner (inside trio)."""
    def snapshot() -> dict[str, Any]:
        runner = status.runner
        return status_snapshot(status, runner.view() if runner is not None else None)
    return snapshot


async def open_status_listener(host: str, port: int) -> tuple[trio.SocketListener, str]:
    """Bind the status socket; return it and its URL. A port in use is a one-line ``PeerError``."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as err:
        raise PeerError(f"--status-port {port}: cannot listen on {host}:{port} "
                        f"({err.strerror or err})") from None
    # a name like "localhost" can give one socket per address family; with port 0 each
    # would get its own port, so serve on the first only
    for extra in listeners[1:]:
        await extra.aclose()
    listener = listeners[0]
    ip, bound_port = listener.socket.getsockname()[:2]
    shown = f"[{ip}]" if ":" in ip else ip
    return listener, f"http://{shown}:{bound_port}"


async def serve_status(listener: trio.SocketListener, app: Callable[[str, str], HttpResponse],
                       limits: ServerLimits = ServerLimits(), peer_id: str = "") -> None:
    """Answer requests on ``listener`` with ``app(method, target)`` until cancelled."""
    slots = trio.CapacityLimiter(limits.max_connections)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            await stream.aclose()
            return
        try:
            await handle_connection(stream, app, limits, peer_id)
        finally:
            slots.release()

    await trio.serve_listeners(handler, [listener])


@asynccontextmanager
async def status_server(status: PeerStatus, host: str, port: int,
                        limits: ServerLimits = ServerLimits()) -> AsyncIterator[str]:
    """Serve ``/status`` and ``/metrics`` for ``status`` while the block runs; yields the URL.

    An exception of the block comes out as raised, not wrapped in an exception group.
    """
    listener, url = await open_status_listener(host, port)
    failure: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_status, listener, make_app(status), limits, status.peer_id)
        try:
            yield url
        except trio.Cancelled:
            raise
        except BaseException as err:  # noqa: BLE001 - re-raised below, outside the nursery
            failure = err
        finally:
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def make_app(status: PeerStatus) -> Callable[[str, str], HttpResponse]:
    """The request handler of a peer's status server."""
    snapshot = make_snapshot_fn(status)
    return lambda method, target: route(method, target, snapshot)


async def handle_connection(stream: trio.abc.Stream, app: Callable[[str, str], HttpResponse],
                            limits: ServerLimits = ServerLimits(), peer_id: str = "") -> None:
    """Read one request from ``stream``, answer it and close; never raises (except cancellation)."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_request_bytes)
    try:
        with trio.move_on_after(limits.timeout):
            try:
                request = await _read_request(stream, conn)
                if request is None:
                    return
                response = app(request.method.decode("ascii", "replace"),
                               request.target.decode("ascii", "replace"))
            except h11.RemoteProtocolError as err:
                log.info("event=status-bad-request peer=%s detail=%s", peer_id, str(err)[:200])
                if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
                    return
                response = _plain(err.error_status_hint, f"bad request: {err}"[:200])
            except Exception as err:  # noqa: BLE001 - a status bug must not end the peer
                log.warning("event=status-error peer=%s detail=%s: %s", peer_id, type(err).__name__, err)
                response = _plain(500, "internal error")
            await _send_response(stream, conn, response)
            await _linger(stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass  # the client went away or cannot be answered any more
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            await stream.aclose()


async def _read_request(stream: trio.abc.Stream, conn: h11.Connection) -> h11.Request | None:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(4096))
        elif isinstance(event, h11.Request):
            return event
        elif isinstance(event, h11.ConnectionClosed):
            return None
        else:  # h11 yields only these before a request; anything else ends the exchange
            return None


async def _send_response(stream: trio.abc.Stream, conn: h11.Connection, response: HttpResponse) -> None:
    headers = [("content-type", response.content_type), ("content-length", str(len(response.body))),
               ("cache-control", "no-store"), ("connection", "close"), *response.headers]
    reason = HTTPStatus(response.code).phrase.encode()
    data = conn.send(h11.Response(status_code=response.code, headers=headers, reason=reason))
    data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)


async def _linger(stream: trio.abc.Stream, limit: int = 65536) -> None:
    """Half-close, then read and drop what the client still sends (bounded, and by the caller's time).

    Closing a socket with unread input resets the connection, and the client may lose the
    answer (e.g. a 431 to an oversized request) before reading it.
    """
    if isinstance(stream, trio.abc.HalfCloseableStream):
        await stream.send_eof()
    received = 0
    while received < limit:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        received += len(chunk)


def _plain(code: int, text: str) -> HttpResponse:
    return HttpResponse(code, body=(text + "\n").encode("utf-8", "replace"))


def fetch_status(url: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """GET a peer's ``/status`` document (the client side, for launchers and harnesses); None
    if it does not answer in time or the answer is not a JSON object."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            doc = json.loads(answer.read())
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return doc if isinstance(doc, dict) else None
