"""Pure parts of scripts/netns_swarm.py and the delay relay, without namespaces or root."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from peers.metrics_log import MetricsLog, read_rows
from swarm.checkpoint import CheckpointStore, PeerState
from swarm.arm_results import metrics_row
from swarm.training import Metrics
from tests.scripts import load_script

netns = load_script("netns_swarm")
relay = load_script("delay_relay")

DOC = {
    "services": {
        "h-a": {"command": ["--listen", "/ip4/10.9.0.11/tcp/4001", "--status-port", "8080"],
                "environment": {"MEDSWARM_NAME": "h-a", "N": 1},
                "networks": {"net": {"ipv4_address": "10.9.0.11"}}, "volumes": ["k:/var/lib/medswarm/key"]},
        "h-b": {"command": "--listen /ip4/10.9.0.12/tcp/4001", "environment": ["MEDSWARM_NAME=h-b"],
                "networks": {"net": {"ipv4_address": "10.9.0.12"}}},
    },
    "networks": {"net": {"ipam": {"config": [{"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}]}}},
}


def test_a_run_removes_its_own_and_dead_runs_namespaces_never_a_live_runs():
    names = ["msw111-h-a", "msw111-bridge", "msw222-h-a", "msw333-h-b", "msw-h-a", "other", "mswx-h"]
    gone = {222}.__contains__  # run 222 is dead; 111 (this one) and 333 are alive
    assert netns.select_ours(names, "msw111-", gone) == ["msw111-h-a", "msw111-bridge", "msw222-h-a"]
    # the default prefix of a run by hand takes its own names and the dead run's too
    assert netns.select_ours(names, "msw-", gone) == ["msw222-h-a", "msw-h-a"]


def test_the_compose_document_becomes_a_scenario():
    sc = netns.scenario_from_compose(DOC)
    a, b = sc.services
    assert (a.name, a.address, a.netns, a.status_url) == ("h-a", "10.9.0.11", netns.PREFIX + "h-a", "http://10.9.0.11:8080/status")
    assert a.environment == {"MEDSWARM_NAME": "h-a", "N": "1"} and b.environment == {"MEDSWARM_NAME": "h-b"}
    assert b.command == ("--listen", "/ip4/10.9.0.12/tcp/4001") and b.status_url is None
    assert str(sc.subnet) == "10.9.0.0/24" and sc.gateway == "10.9.0.1"


def test_an_address_outside_the_subnet_or_two_networks_are_refused():
    bad = {**DOC, "services": {"x": {"networks": {"net": {"ipv4_address": "192.168.1.5"}}}}}
    with pytest.raises(ValueError, match="outside"):
        netns.scenario_from_compose(bad)
    with pytest.raises(ValueError, match="one network"):
        netns.scenario_from_compose({**DOC, "networks": {"a": {}, "b": {}}})


def test_link_names_fit_an_interface_name():
    long = netns.Service("a-very-long-hospital-name", "10.0.0.1", {}, (), ())
    assert len(long.link) <= 15


def test_option_values_last_one_wins():
    assert netns.option_value(["--rounds", "4", "--rounds=9"], "--rounds") == "9"
    assert netns.option_value(["--rounds", "4", "--x", "1"], "--rounds") == "4"
    assert netns.option_value(["--rounds"], "--rounds") is None


def metrics_rows(path, distances):
    """Rows as a hospital writes them (``MetricsLog`` + ``metrics_row``), round -> distance."""
    log = MetricsLog(path)
    for round_, distance in distances.items():
        log.append(metrics_row("swarm", round_, 2, 0.1, Metrics(0.2, 0.8, 0.9), None, distance, 10))
    return read_rows(path)


def test_round_events_come_from_the_hospitals_metrics_rows(tmp_path):
    rows = metrics_rows(tmp_path / "metrics.jsonl", {3: 0.3, 4: None})
    assert netns.round_events(rows) == [(3, True), (4, False)]
    assert netns.round_events([]) == []


def test_rejoined_means_mixing_again_a_catch_up_or_a_jump():
    assert not netns.rejoined([(5, False), (6, False), (7, False)])  # alone, round after round
    assert netns.rejoined([(5, False), (6, True)])
    assert netns.rejoined([(5, False), (40, False)])  # adopted a neighbour's model, jumped
    assert netns.rejoined([(2, False)], catch_ups=1)  # adopted one (seen in /status, report)
    assert not netns.rejoined([(2, False)], catch_ups=0)
    assert not netns.rejoined([])


def test_a_hospitals_round_is_its_newest_checkpoint(tmp_path):
    service = netns.scenario_from_compose(DOC).service("h-a")
    hospital = netns.Hospital(service, tmp_path / "h-a")
    assert hospital.round() is None  # no state directory yet
    store = CheckpointStore(hospital.state_dir)
    assert hospital.round() is None
    for round_ in (2, 4):
        store.save(PeerState("P", round_, 0, {"w": np.zeros(3, np.float32)}, ("P",), {}, "m"))
    assert hospital.round() == 4


def test_host_port_parsing():
    assert relay.parse_hostport("10.0.0.1:4101") == ("10.0.0.1", 4101)
    for bad in ("10.0.0.1", ":80", "h:0", "h:port", "h:70000"):
        with pytest.raises(ValueError):
            relay.parse_hostport(bad)


def test_the_relay_forwards_both_ways_in_order_no_earlier_than_its_delay():
    delay = 0.2

    async def main():
        tasks = []

        async def echo(reader, writer):
            tasks.append(asyncio.current_task())
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        async def relayed(reader, writer):
            tasks.append(asyncio.current_task())
            await relay._handle(reader, writer, ("127.0.0.1", port), delay)

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        listen = await asyncio.start_server(relayed, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listen.sockets[0].getsockname()[1])
        started = time.monotonic()
        for i in range(5):
            writer.write(f"{i};".encode())
        await writer.drain()
        got = b""
        while len(got) < 10:
            got += await asyncio.wait_for(reader.read(1024), timeout=10)
        elapsed = time.monotonic() - started
        writer.write_eof()  # the end of the stream goes through the relay too, then all close
        assert await asyncio.wait_for(reader.read(), timeout=10) == b""
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=10)
        for srv in (listen, server):
            srv.close()
            await srv.wait_closed()
        return got, elapsed

    got, elapsed = asyncio.run(main())
    assert got == b"0;1;2;3;4;"
    assert elapsed >= 2 * delay  # there and back, each held for the delay


def test_the_namespace_tests_say_why_they_cannot_run(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    assert "root" in netns.host_problem()
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda name: None)
    assert "`ip`" in netns.host_problem()
    monkeypatch.setattr(netns.shutil, "which", lambda name: None if name == "iptables" else f"/usr/sbin/{name}")
    assert netns.host_problem() is None
    assert "iptables" in netns.host_problem(need_iptables=True)
