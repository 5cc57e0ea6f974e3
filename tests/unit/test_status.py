"""The status endpoint: snapshot and metrics as pure functions, then the server on a real socket."""

from __future__ import annotations

import json
import math
import socket

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from peers.errors import PeerError
from peers.runner import RunnerView
from peers.status import (
    METRICS_TYPE,
    PeerStatus,
    ServerLimits,
    fetch_status,
    make_app,
    open_status_listener,
    render_metrics,
    route,
    serve_status,
    status_server,
    status_snapshot,
)

KEYS = {"peer_id", "name", "site", "round", "state", "neighbours", "suspected", "last", "convergence",
        "rounds_completed", "catch_ups", "rejected", "bad_control", "updated_at", "privacy"}


def view(**over):
    base = dict(round=7, neighbours=("c", "b"), suspected=("c",), loss=0.5, metric=0.25, distance=0.125,
                voted=True, stop_round=9, reason="converged: 3 live members voted converged",
                rounds_completed=6, rejected={"bad-checksum": 2, 'we"ird\\reason\n': 1}, bad_control=3,
                exited=False, catch_ups=2)
    base.update(over)
    return RunnerView(**base)


def samples(text):
    """{(sample name, labels as a sorted tuple): value} of a Prometheus text page."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


# ------------------------------------------------------------------ snapshot and metrics

def test_snapshot_before_the_protocol_runs_says_starting_at_the_start_round():
    status = PeerStatus("p1", site=2, name="hospital-a", start_round=4)
    doc = status_snapshot(status, None)
    assert set(doc) == KEYS
    assert (doc["state"], doc["round"], doc["site"], doc["name"]) == ("starting", 4, 2, "hospital-a")
    assert doc["neighbours"] == [] and doc["rounds_completed"] == 0 and doc["convergence"]["voted"] is False
    json.dumps(doc, allow_nan=False)


def test_snapshot_of_a_running_peer_copies_the_runner_view():
    status = PeerStatus("p1", site=0)
    status.state = "running"
    doc = status_snapshot(status, view())
    assert set(doc) == KEYS
    assert doc["round"] == 7 and doc["state"] == "running" and doc["name"] is None
    assert doc["neighbours"] == ["b", "c"] and doc["suspected"] == ["c"]
    assert doc["last"] == {"loss": 0.5, "metric": 0.25, "distance": 0.125}
    assert doc["convergence"] == {"voted": True, "stop_round": 9,
                                  "reason": "converged: 3 live members voted converged"}
    assert doc["rounds_completed"] == 6 and doc["bad_control"] == 3 and doc["catch_ups"] == 2
    assert doc["rejected"] == {"bad-checksum": 2, 'we"ird\\reason\n': 1}
    assert doc["updated_at"] == status.updated_at


def test_snapshot_turns_non_finite_figures_into_null_so_the_json_is_valid():
    doc = status_snapshot(PeerStatus("p1", 0), view(loss=math.nan, metric=math.inf, distance=None, reason=""))
    assert doc["last"] == {"loss": None, "metric": None, "distance": None}
    assert doc["convergence"]["reason"] is None
    json.loads(json.dumps(doc, allow_nan=False))


def test_status_moves_from_starting_to_running_to_stopped_and_updates_its_time():
    status = PeerStatus("p1", 0)
    status.updated_at = 0.0
    status.running(runner=object())  # only stored here
    assert status.state == "running" and status.updated_at > 0
    status.updated_at = 0.0
    status.stopped()
    assert status.state == "stopped" and status.updated_at > 0


def test_metrics_carry_the_snapshot_figures_in_prometheus_text_format():
    status = PeerStatus("p1", 0)
    status.state = "running"
    text = render_metrics(status_snapshot(status, view()))
    got = samples(text)  # the official parser reads it back, escaped label included
    assert got[("medswarm_round", ())] == 7
    assert got[("medswarm_neighbours", ())] == 2 and got[("medswarm_suspected", ())] == 1
    assert got[("medswarm_rounds_completed", ())] == 6
    assert got[("medswarm_last_loss", ())] == 0.5 and got[("medswarm_last_metric", ())] == 0.25
    assert got[("medswarm_last_distance", ())] == 0.125
    assert got[("medswarm_converged", ())] == 1 and got[("medswarm_stop_round", ())] == 9
    assert got[("medswarm_state", (("state", "running"),))] == 1
    assert got[("medswarm_state", (("state", "starting"),))] == 0
    assert got[("medswarm_rejected_total", (("reason", "bad-checksum"),))] == 2
    assert got[("medswarm_rejected_total", (("reason", 'we"ird\\reason\n'),))] == 1
    assert got[("medswarm_bad_control_total", ())] == 3
    assert got[("medswarm_catch_ups_total", ())] == 2
    for name in ("medswarm_round", "medswarm_rejected_total", "medswarm_bad_control_total"):
        assert f"# HELP {name} " in text
    assert "# TYPE medswarm_round gauge" in text and "# TYPE medswarm_rejected_total counter" in text


def test_a_private_peer_shows_its_spent_and_budget_epsilon_in_status_and_metrics():
    dp = {"dp_epsilon_spent": 1.25, "dp_epsilon_budget": 3.0, "dp_delta": 1e-4, "dp_rounds_charged": 5,
          "dp_budget_exhausted": False}
    status = PeerStatus("p1", 0, privacy=lambda: dp)
    doc = status_snapshot(status, view())
    assert doc["privacy"] == {"epsilon_spent": 1.25, "epsilon_budget": 3.0, "delta": 1e-4, "rounds_charged": 5,
                              "budget_exhausted": False}
    got = samples(render_metrics(doc))
    assert got[("medswarm_dp_epsilon_spent", ())] == 1.25 and got[("medswarm_dp_epsilon_budget", ())] == 3.0
    plain = samples(render_metrics(status_snapshot(PeerStatus("p1", 0), view())))
    assert not {name for name, _ in plain} & {"medswarm_dp_epsilon_spent", "medswarm_dp_epsilon_budget"}


def test_metrics_leave_out_figures_not_known_yet():
    got = samples(render_metrics(status_snapshot(PeerStatus("p1", 0, start_round=3), None)))
    assert got[("medswarm_round", ())] == 3 and got[("medswarm_converged", ())] == 0
    assert got[("medswarm_state", (("state", "starting"),))] == 1
    names = {name for name, _ in got}
    assert not names & {"medswarm_last_loss", "medswarm_last_metric", "medswarm_stop_round"}
    assert not any(name == "medswarm_rejected_total" for name, _ in got)


def test_routes_answer_known_paths_only_with_get():
    calls = []

    def snapshot():
        calls.append(1)
        return status_snapshot(PeerStatus("p1", 0), None)

    ok = route("GET", "/status?pretty=1", snapshot)
    assert ok.code == 200 and ok.content_type == "application/json" and json.loads(ok.body)["peer_id"] == "p1"
    metrics = route("GET", "/metrics", snapshot)
    assert metrics.code == 200 and metrics.content_type == METRICS_TYPE and b"medswarm_round" in metrics.body
    assert route("GET", "/", snapshot).code == 404 and route("GET", "/status/", snapshot).code == 404
    not_allowed = route("POST", "/status", snapshot)
    assert not_allowed.code == 405 and ("allow", "GET") in not_allowed.headers
    assert route("DELETE", "/nope", snapshot).code == 404
    assert len(calls) == 2  # only the two successful answers took a snapshot


# ------------------------------------------------------------------ the server on loopback

async def exchange(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    """Send ``data`` and read the answer until the server closes the connection."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if close_write:
            await stream.send_eof()
        chunks = []
        with trio.fail_after(10):
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value for name, value in (line.split(": ", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


@pytest.fixture
async def server(nursery):
    status = PeerStatus("p1", site=1, name="hospital-b", start_round=2)
    listener, url = await open_status_listener("127.0.0.1", 0)
    limits = ServerLimits(max_request_bytes=1024, timeout=0.5)
    nursery.start_soon(serve_status, listener, make_app(status), limits, "p1")
    return status, int(url.rsplit(":", 1)[1]), url


async def test_server_answers_status_and_metrics_on_loopback(server):
    status, port, url = server
    assert url == f"http://127.0.0.1:{port}"
    code, headers, body = parse(await exchange(port, get("/status")))
    assert code == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert (doc["state"], doc["round"], doc["name"]) == ("starting", 2, "hospital-b")
    status.stopped()
    doc = json.loads(parse(await exchange(port, get("/status")))[2])
    assert doc["state"] == "stopped"  # each request takes a fresh snapshot
    code, headers, body = parse(await exchange(port, get("/metrics")))
    assert code == 200 and headers["content-type"] == METRICS_TYPE
    assert samples(body.decode())[("medswarm_state", (("state", "stopped"),))] == 1


async def test_fetch_status_reads_the_document_and_is_none_where_nothing_answers(server):
    status, port, url = server
    doc = await trio.to_thread.run_sync(fetch_status, url + "/status")
    assert doc == json.loads(json.dumps(status_snapshot(status, None)))
    assert await trio.to_thread.run_sync(fetch_status, url + "/nope") is None  # 404
    listener, free = await open_status_listener("127.0.0.1", 0)
    await listener.aclose()  # a port nothing listens on any more
    assert await trio.to_thread.run_sync(fetch_status, free + "/status", 1.0) is None


async def test_server_refuses_other_paths_methods_and_garbage_and_keeps_serving(server):
    _, port, _ = server
    assert parse(await exchange(port, get("/nope")))[0] == 404
    code, headers, _ = parse(await exchange(port, get("/status", "POST")))
    assert code == 405 and headers["allow"] == "GET"
    assert parse(await exchange(port, b"GARBAGE\r\n\r\n"))[0] == 400
    assert parse(await exchange(port, b"\x00\xff\x16\x03\x01 binary junk\r\n\r\n"))[0] == 400
    assert parse(await exchange(port, b"GET /status HTTP/1.1\r\nbad header line\r\n\r\n"))[0] == 400
    huge = b"GET /status HTTP/1.1\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n"
    assert parse(await exchange(port, huge))[0] == 431  # bigger than max_request_bytes
    assert parse(await exchange(port, b"GET /sta", close_write=True))[0] == 400  # cut off mid-request
    assert parse(await exchange(port, get("/status")))[0] == 200  # still serving


async def test_a_client_that_stalls_is_cut_off_after_the_time_limit(server):
    _, port, _ = server
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET /status HTTP/1.1\r\n")  # never finishes its headers
        with trio.fail_after(10):  # limit is 0.5 s; fail_after only bounds a broken server
            assert await stream.receive_some(1024) == b""
    assert parse(await exchange(port, get("/status")))[0] == 200


async def test_a_port_in_use_is_a_one_line_peer_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PeerError, match=f"--status-port {port}: cannot listen") as info:
            await open_status_listener("127.0.0.1", port)
    assert "\n" not in str(info.value)


async def test_status_server_block_errors_come_out_unwrapped():
    status = PeerStatus("p1", 0)
    with pytest.raises(PeerError, match="no neighbour"):
        async with status_server(status, "127.0.0.1", 0) as url:
            assert url.startswith("http://127.0.0.1:")
            raise PeerError("no neighbour connected")
