"""Benchmark: the libp2p transport between two processes against raw TCP, on loopback.

Usage::

    nice -n 5 .venv/bin/python scripts/bench_transport.py [--sizes-mib 1 10 50]
        [--repeats 5] [--messages 300] [--out results/bench_transport.json]

This script starts a second process (itself with ``--serve``): a ``Libp2pTransport`` with
its own key (both keys form the consortium, as real peers do) that offers one payload
per size, echoes control messages, and also runs a plain TCP server. The first process
is the client. Each figure is a ratio to raw TCP between the same two processes, in the
same run, measured interleaved (order alternates per repeat; the first repeat of each
size is a dropped warm-up):

* **weight transfer**: ``fetch(peer, digest, size)`` exactly as a real peer pulls a model
  (new ``/medswarm/weights/1`` stream on the open Noise + Yamux connection, request,
  length-prefixed response, BLAKE2b check of the bytes, acknowledgement) against a TCP
  request for the same bytes answered with an 8-byte length and the payload, read into a
  preallocated buffer (no encryption, no hashing: the loopback ceiling for a trio reader).
  Throughput = MiB / seconds; the ratio is per repeat (libp2p / TCP), then median and
  min-max over the repeats.
* **control latency**: a small control message (an encoded ``Announce``, the commonest
  one) sent with ``send`` and taken out of ``receive`` on the other side, which echoes it
  back; raw TCP: the same bytes length-prefixed over a TCP connection and echoed. Both
  processes run on one host, so both read the same system-wide ``CLOCK_MONOTONIC``: the
  one-way latency is the server's receive time minus the client's send time (one clock,
  no offset to estimate). Half the round trip is reported too, as a cross-check: it also
  counts the echo's way back and the client's own receive. p50 and p95 over
  ``--messages`` sequential messages (one in flight at a time) for each.

Writes JSON to ``--out`` and a PNG beside it. Nothing is asserted: numbers, not a gate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gossip.codec import digest
from gossip.control import Announce, decode_control, encode_control
from gossip.libp2p_identity import Consortium, Member, NodeKey, parse_peer_id
from gossip.libp2p_transport import Libp2pConfig, Libp2pTransport
from swarm.atomic_file import atomic_write

MIB = 2**20
LENGTH = struct.Struct(">Q")
PAYLOAD_REQ, ECHO_REQ, QUIT_REQ = b"P", b"E", b"Q"


def clock() -> float:
    """System-wide monotonic clock: comparable between two processes on one host."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def make_payload(size_mib: int) -> bytes:
    """The same pseudo-random bytes in both processes (seeded by the size)."""
    return np.random.default_rng(size_mib).integers(0, 256, size_mib * MIB, dtype=np.uint8).tobytes()


def control_message(sender: str, seq: int) -> bytes:
    """An encoded Announce carrying ``seq`` in its round field (about 150 bytes)."""
    return encode_control(Announce(sender, seq, 0, "0" * 32, 1 << 20, 100, 3))


async def recv_exactly(stream: trio.SocketStream, n: int) -> bytearray:
    """Read exactly ``n`` bytes into one preallocated buffer."""
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = await stream.socket.recv_into(view[got:], min(n - got, 1 << 20))
        if k == 0:
            raise EOFError("connection closed")
        got += k
    return buf


# ------------------------------------------------------------------ server process
async def serve(client_id: str, sizes: list[int]) -> None:
    """The second process: offer payloads, echo control messages, serve raw TCP."""
    key = NodeKey.generate()
    consortium = Consortium([Member("client", client_id), Member("server", key.peer_id)])
    payloads = {size: make_payload(size) for size in sizes}
    received: dict[str, dict[int, float]] = {"libp2p": {}, "tcp": {}}
    config = Libp2pConfig(max_offers=len(sizes) + 1)
    async with Libp2pTransport.start(key, consortium=consortium, config=config) as t:
        for data in payloads.values():
            t.offer(digest(data), data)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        print(f"ready {t.listen_addrs[0]} {port}", flush=True)
        async with trio.open_nursery() as nursery:
            async def echo_control() -> None:
                while True:
                    env = await t.receive()
                    now = clock()
                    received["libp2p"][decode_control(env.data).round] = now
                    await t.send(env.sender, env.data)

            nursery.start_soon(echo_control)
            stream = await listeners[0].accept()
            while True:
                kind = bytes(await recv_exactly(stream, 1))
                if kind == PAYLOAD_REQ:
                    (size,) = LENGTH.unpack(await recv_exactly(stream, LENGTH.size))
                    data = payloads[size // MIB]
                    await stream.send_all(LENGTH.pack(len(data)))
                    await stream.send_all(data)
                elif kind == ECHO_REQ:
                    (n,) = LENGTH.unpack(await recv_exactly(stream, LENGTH.size))
                    data = await recv_exactly(stream, n)
                    received["tcp"][decode_control(data).round] = clock()
                    await stream.send_all(LENGTH.pack(n) + data)
                else:
                    break
            print("received " + json.dumps(received), flush=True)
            nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ client process
def spread(values: list[float], digits: int = 2) -> dict[str, float]:
    """Median, quartiles, min and max of ``values``, rounded."""
    q1, med, q3 = np.percentile(values, [25, 50, 75])
    return {"median": round(float(med), digits), "q1": round(float(q1), digits),
            "q3": round(float(q3), digits), "min": round(min(values), digits),
            "max": round(max(values), digits), "n": len(values)}


def percentiles_ms(values_s: list[float]) -> dict[str, float]:
    """p50 and p95 of durations in seconds, in milliseconds."""
    p50, p95 = np.percentile(values_s, [50, 95])
    return {"p50_ms": round(float(p50) * 1000, 3), "p95_ms": round(float(p95) * 1000, 3),
            "n": len(values_s)}


async def client(server: subprocess.Popen, key: NodeKey, sizes: list[int], repeats: int,
                 messages: int, progress) -> dict:
    """Connect to the server process and measure; returns the JSON body."""
    assert server.stdout is not None
    line = await trio.to_thread.run_sync(server.stdout.readline)
    if not line.startswith("ready "):
        raise SystemExit(f"server did not start: {line!r}")
    _, addr, port = line.split()
    server_id = parse_peer_id(addr.rsplit("/p2p/", 1)[1])
    consortium = Consortium([Member("client", key.peer_id), Member("server", server_id)])
    digests = {size: digest(make_payload(size)) for size in sizes}
    throughput: list[dict] = []
    latency: dict[str, dict[str, list[float]]] = {}
    async with Libp2pTransport.start(key, consortium=consortium) as t:
        await t.connect(addr)
        tcp = await trio.open_tcp_stream("127.0.0.1", int(port))

        async def fetch_libp2p(size: int) -> float:
            t0 = time.perf_counter()
            got = await t.fetch(server_id, digests[size], size * MIB)
            dt = time.perf_counter() - t0
            if len(got) != size * MIB:
                raise SystemExit("short libp2p payload")
            return dt

        async def fetch_tcp(size: int) -> float:
            t0 = time.perf_counter()
            await tcp.send_all(PAYLOAD_REQ + LENGTH.pack(size * MIB))
            (n,) = LENGTH.unpack(await recv_exactly(tcp, LENGTH.size))
            got = await recv_exactly(tcp, n)
            dt = time.perf_counter() - t0
            if len(got) != size * MIB:
                raise SystemExit("short tcp payload")
            return dt

        task = progress.add_task("weight transfers", total=len(sizes) * (repeats + 1))
        for size in sizes:
            data = make_payload(size)
            hashing = []
            for _ in range(3):
                t0 = time.perf_counter()
                digest(data)
                hashing.append(time.perf_counter() - t0)
            runs: dict[str, list[float]] = {"libp2p": [], "tcp": []}
            for rep in range(repeats + 1):
                order = (("libp2p", fetch_libp2p), ("tcp", fetch_tcp))
                for name, fn in (order if rep % 2 == 0 else order[::-1]):
                    dt = await fn(size)
                    if rep > 0:  # the first repeat warms up buffers and is dropped
                        runs[name].append(dt)
                progress.update(task, advance=1, description=f"weight transfers {size} MiB")
            mibs = {name: [size / dt for dt in dts] for name, dts in runs.items()}
            ratios = [lib / raw for lib, raw in zip(mibs["libp2p"], mibs["tcp"])]
            throughput.append({
                "size_mib": size,
                "libp2p_mib_per_s": spread(mibs["libp2p"], 1),
                "tcp_mib_per_s": spread(mibs["tcp"], 1),
                "libp2p_over_tcp": spread(ratios, 3),
                "libp2p_s_median": round(statistics.median(runs["libp2p"]), 4),
                # the BLAKE2b check alone (part of every fetch): how much is verification
                "digest_s_median": round(statistics.median(hashing), 4),
            })

        task = progress.add_task("control messages", total=messages)
        sent: dict[str, dict[int, float]] = {"libp2p": {}, "tcp": {}}
        half_rtt: dict[str, list[float]] = {"libp2p": [], "tcp": []}
        for seq in range(messages):
            data = control_message(key.peer_id, seq)
            for name in (("libp2p", "tcp") if seq % 2 == 0 else ("tcp", "libp2p")):
                t0 = clock()
                if name == "libp2p":
                    await t.send(server_id, data)
                    env = await t.receive()
                    back = bytes(env.data)
                else:
                    await tcp.send_all(ECHO_REQ + LENGTH.pack(len(data)) + data)
                    (n,) = LENGTH.unpack(await recv_exactly(tcp, LENGTH.size))
                    back = bytes(await recv_exactly(tcp, n))
                t1 = clock()
                if back != data:
                    raise SystemExit(f"{name} echo mismatch")
                sent[name][seq] = t0
                half_rtt[name].append((t1 - t0) / 2)
            progress.update(task, advance=1)
        await tcp.send_all(QUIT_REQ)
        line = await trio.to_thread.run_sync(server.stdout.readline)
        if not line.startswith("received "):
            raise SystemExit(f"server did not report receive times: {line!r}")
        received = {name: {int(k): v for k, v in times.items()}
                    for name, times in json.loads(line.split(" ", 1)[1]).items()}
        await tcp.aclose()
        for name in ("libp2p", "tcp"):
            one_way = [received[name][s] - sent[name][s] for s in sent[name]]
            latency[name] = {"one_way": one_way, "half_rtt": half_rtt[name]}
    control = {name: {"one_way": percentiles_ms(v["one_way"]), "half_round_trip": percentiles_ms(v["half_rtt"])}
               for name, v in latency.items()}
    for kind in ("one_way", "half_round_trip"):
        control[f"{kind}_libp2p_over_tcp"] = {
            p: round(control["libp2p"][kind][p] / control["tcp"][kind][p], 2) for p in ("p50_ms", "p95_ms")}
    control["message_bytes"] = len(control_message(key.peer_id, 0))
    return {"throughput": throughput, "control": control}


def plot(report: dict, path: Path) -> None:
    """Throughput per size (median, min-max bars) and control latency p50/p95."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rows = report["throughput"]
    x = np.arange(len(rows))
    for offset, name, colour in ((-0.2, "libp2p", "tab:blue"), (0.2, "tcp", "tab:grey")):
        med = [r[f"{name}_mib_per_s"]["median"] for r in rows]
        low = [m - r[f"{name}_mib_per_s"]["min"] for m, r in zip(med, rows)]
        high = [r[f"{name}_mib_per_s"]["max"] - m for m, r in zip(med, rows)]
        left.bar(x + offset, med, 0.4, yerr=[low, high], capsize=3, color=colour,
                 label="libp2p fetch" if name == "libp2p" else "raw TCP")
    for i, r in enumerate(rows):
        left.annotate(f"{r['libp2p_over_tcp']['median']:.3f}x", (i - 0.2, r["libp2p_mib_per_s"]["max"]),
                      xytext=(0, 4), textcoords="offset points", ha="center", va="bottom", fontsize=8)
    left.set_xticks(x, [f"{r['size_mib']} MiB" for r in rows])
    left.set_yscale("log")
    left.set_ylabel("MiB/s (median, min-max)")
    left.set_title("weight transfer between two processes\n(label: libp2p / TCP, median of per-repeat ratios)",
                   fontsize=10)
    left.legend()
    ctrl = report["control"]
    labels = ["libp2p p50", "libp2p p95", "TCP p50", "TCP p95"]
    values = [ctrl["libp2p"]["one_way"]["p50_ms"], ctrl["libp2p"]["one_way"]["p95_ms"],
              ctrl["tcp"]["one_way"]["p50_ms"], ctrl["tcp"]["one_way"]["p95_ms"]]
    right.bar(labels, values, color=["tab:blue", "tab:blue", "tab:grey", "tab:grey"])
    right.set_ylabel("one-way latency, ms")
    right.set_title(f"control message ({ctrl['message_bytes']} B), one-way on one clock", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    """Start the server process, measure from this one, write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("results/bench_transport.json"))
    parser.add_argument("--serve", metavar="CLIENT_PEER_ID", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        trio.run(serve, args.serve, args.sizes_mib)
        return

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    key = NodeKey.generate()
    load_before = os.getloadavg()
    started = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", key.peer_id, "--sizes-mib", *map(str, args.sizes_mib)],
        stdout=subprocess.PIPE, text=True)
    try:
        with Progress(console=console) as progress:
            body = trio.run(client, server, key, args.sizes_mib, args.repeats, args.messages, progress)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    report = {
        "benchmark": "libp2p transport between two processes vs raw TCP between the same two, loopback",
        "method": {
            "throughput": "fetch() as real peers pull models (stream per fetch, BLAKE2b check, ack) vs "
                          "a TCP request answered with length + bytes; interleaved, order alternating, "
                          "first repeat dropped; ratio computed per repeat",
            "control": "encoded Announce via send()/receive() vs the same bytes length-prefixed over TCP; "
                       "one-way = server receive time - client send time on the shared CLOCK_MONOTONIC "
                       "(same host); half_round_trip = echo round trip / 2 as a cross-check",
        },
        "config": {"sizes_mib": args.sizes_mib, "repeats": args.repeats, "messages": args.messages},
        "env": {"libp2p": version("libp2p"), "trio": version("trio"), "python": platform.python_version(),
                "machine": platform.machine(), "cpus": os.cpu_count(), "loadavg_before": load_before,
                "niceness": os.nice(0)},
        **body,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    png = args.out.with_suffix(".png")
    plot(report, png)

    table = Table(title="libp2p vs raw TCP, two processes, loopback")
    for col in ("size", "libp2p MiB/s", "TCP MiB/s", "ratio (min-max)"):
        table.add_column(col, justify="right")
    for r in report["throughput"]:
        ratio = r["libp2p_over_tcp"]
        table.add_row(f"{r['size_mib']} MiB", f"{r['libp2p_mib_per_s']['median']:.1f}",
                      f"{r['tcp_mib_per_s']['median']:.1f}",
                      f"{ratio['median']:.3f} ({ratio['min']:.3f}-{ratio['max']:.3f})")
    console.print(table)
    c = report["control"]
    console.print(f"control one-way p50/p95: libp2p {c['libp2p']['one_way']['p50_ms']:.2f}/"
                  f"{c['libp2p']['one_way']['p95_ms']:.2f} ms, TCP {c['tcp']['one_way']['p50_ms']:.2f}/"
                  f"{c['tcp']['one_way']['p95_ms']:.2f} ms; wrote {args.out} and {png}")


if __name__ == "__main__":
    main()
