"""Probe: model fetch throughput over ``Libp2pTransport`` against a raw TCP socket, loopback.

Usage::

    .venv/bin/python scripts/bench_transport_probe.py [--out results/bench_transport.json]
        [--sizes-mib 1 10 50] [--repeats 5]

Both cases run in one process and one trio run, interleaved per repeat, on 127.0.0.1:

* ``libp2p``: ``a.fetch(b, digest, size)`` between two connected transports: request,
  length-prefixed response over Noise + Yamux, BLAKE2b check of the bytes, acknowledgement.
  The stream is opened per fetch, as in a real round; the connection already exists.
* ``tcp``: a trio TCP stream on an already open connection; the server writes an 8-byte
  length and the payload, the client reads until it has it all. No encryption, no hashing:
  the loopback ceiling for a Python (trio) reader.

``digest_s`` is the BLAKE2b time alone, to show how much of the fetch is verification.
Sizes are MiB (2**20 bytes); throughput is MiB/s from the median of ``--repeats`` runs.
This is a probe, not a gate: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import struct
import sys
import time
from importlib.metadata import version
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gossip.codec import digest
from gossip.libp2p_identity import Consortium, Member, NodeKey
from gossip.libp2p_transport import Libp2pTransport

MIB = 2**20
LENGTH = struct.Struct(">Q")


async def tcp_server(listener: trio.SocketListener, payloads: trio.MemoryReceiveChannel[bytes]
                     ) -> None:
    """Accept one connection; for every payload queued, send length + bytes."""
    stream = await listener.accept()
    async with stream:
        async for data in payloads:
            await stream.send_all(LENGTH.pack(len(data)))
            await stream.send_all(data)


async def tcp_read(stream: trio.SocketStream) -> bytearray:
    """Read one length-prefixed payload straight into a preallocated buffer."""
    head = bytearray(LENGTH.size)
    got = 0
    while got < LENGTH.size:
        got += await stream.socket.recv_into(memoryview(head)[got:])
    (n,) = LENGTH.unpack(head)
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        got += await stream.socket.recv_into(view[got:], min(n - got, 1 << 20))
    return buf


async def run(sizes_mib: list[int], repeats: int) -> dict[str, object]:
    keys = [NodeKey.generate(), NodeKey.generate()]
    consortium = Consortium([Member(f"bench-{i}", k.peer_id) for i, k in enumerate(keys)])
    results = []
    async with (Libp2pTransport.start(keys[0], consortium=consortium) as a,
                Libp2pTransport.start(keys[1], consortium=consortium) as b,
                trio.open_nursery() as nursery):
        await a.connect(b.listen_addrs[0])
        await b.wait_for_neighbour(a.peer_id)
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        send_payload, payloads = trio.open_memory_channel[bytes](1)
        nursery.start_soon(tcp_server, listeners[0], payloads)
        client = await trio.open_tcp_stream("127.0.0.1", port)
        for size in sizes_mib:
            data = (bytes(range(256)) * (size * MIB // 256 + 1))[:size * MIB]
            key = digest(data)
            b.offer(key, data)
            times: dict[str, list[float]] = {"libp2p": [], "tcp": [], "digest": []}
            for _ in range(repeats + 1):  # the first round warms up and is dropped
                t0 = time.perf_counter()
                got = await a.fetch(b.peer_id, key, len(data))
                t1 = time.perf_counter()
                await send_payload.send(data)
                raw = await tcp_read(client)
                t2 = time.perf_counter()
                digest(raw)
                t3 = time.perf_counter()
                if bytes(got) != data or raw != data:
                    raise SystemExit("payload mismatch")
                for name, dt in (("libp2p", t1 - t0), ("tcp", t2 - t1), ("digest", t3 - t2)):
                    times[name].append(dt)
            row: dict[str, float] = {"size_mib": size}
            for name, runs in times.items():
                med = statistics.median(runs[1:])
                row[f"{name}_s"] = round(med, 4)
                if name != "digest":
                    row[f"{name}_mib_per_s"] = round(size / med, 1)
            row["libp2p_over_tcp"] = round(row["libp2p_mib_per_s"] / row["tcp_mib_per_s"], 3)
            results.append(row)
            print(f"{size:4d} MiB  libp2p {row['libp2p_mib_per_s']:8.1f} MiB/s   "
                  f"tcp {row['tcp_mib_per_s']:8.1f} MiB/s   ratio {row['libp2p_over_tcp']:.3f}"
                  f"   (digest alone {row['digest_s'] * 1000:.1f} ms)")
        await send_payload.aclose()
        await client.aclose()
        nursery.cancel_scope.cancel()
    return {
        "probe": "fetch over Libp2pTransport vs raw TCP, loopback, same process",
        "libp2p_version": version("libp2p"),
        "trio_version": version("trio"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeats": repeats,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_transport.json"))
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    report = trio.run(run, args.sizes_mib, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
