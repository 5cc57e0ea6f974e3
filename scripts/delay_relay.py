#!/usr/bin/env python3
"""A TCP relay that adds a fixed latency each way: link delay where ``tc netem`` is missing.

Every connection accepted on ``--listen`` is forwarded to ``--to``; each chunk read from
either side is written to the other ``--delay`` seconds after it arrived, in order, so the
link behaves like one with that one-way latency (and the relay's own negligible
bandwidth limit). Prints ``relaying HOST:PORT -> HOST:PORT`` once listening; runs until
killed. Used by scripts/netns_swarm.py's ``loss`` fault, inside a network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

CHUNK = 64 * 1024


def parse_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port); ValueError if malformed."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Copy reader to writer, each chunk ``delay`` s after it was read, order kept."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        while True:
            data = await reader.read(CHUNK)
            await queue.put((loop.time() + delay, data))
            if not data:
                return

    async def write() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    reading = asyncio.create_task(read())
    try:
        await write()
    finally:
        reading.cancel()


async def _handle(client_r, client_w, target: tuple[str, int], delay: float) -> None:
    print(f"event=relay-connection from={client_w.get_extra_info('peername')}", file=sys.stderr, flush=True)
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, delay))
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        for w in (client_w, server_w):
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()


async def serve(listen: tuple[str, int], target: tuple[str, int], delay: float,
                ready: asyncio.Event | None = None) -> None:
    """Relay connections on ``listen`` to ``target`` with ``delay`` s each way, forever."""
    server = await asyncio.start_server(lambda r, w: _handle(r, w, target, delay), *listen)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"relaying {host}:{port} -> {target[0]}:{target[1]} delay={delay}", flush=True)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: --listen HOST:PORT --to HOST:PORT --delay SECONDS."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT to accept on")
    parser.add_argument("--to", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay", type=float, default=0.05, help="one-way latency, s (default 0.05)")
    args = parser.parse_args(argv)
    try:
        listen, target = parse_hostport(args.listen), parse_hostport(args.to)
    except ValueError as err:
        print(f"delay_relay: error: {err}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(listen, target, max(0.0, args.delay)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
