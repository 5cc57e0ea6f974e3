"""The thin trio loop that carries out :class:`peers.discovery.Discovery`'s decisions.

It watches the transport's links, sends peer-exchange records, and dials: each dial is its
own task, trying the member's addresses in order. ``Libp2pTransport.connect`` lifts
py-libp2p's 60 s negative dial cache (``Swarm.unblock_peer``) and forgets the peer's older
addresses before every dial, so a neighbour that restarted is reached at the next redial,
not a minute later. Received ``PeerExchange`` messages come in through :meth:`on_exchange`
(the runner routes them here, never to the protocol state machine).
"""

from __future__ import annotations

import logging
import math
from typing import Protocol

import trio

from gossip.control import PeerExchange, encode_control
from gossip.errors import TransportError
from peers.discovery import Dial, Discovery
from swarm.executor import Traffic

log = logging.getLogger("medswarm.peer")


class Dialler(Protocol):
    """What the connector needs from a transport (``Libp2pTransport`` has it)."""

    @property
    def peer_id(self) -> str:
        """This peer's id."""
        ...

    def neighbours(self) -> list[str]:
        """Ids of peers with a live link."""
        ...

    async def connect(self, addr: str) -> str:
        """Dial ``addr`` (``.../p2p/<id>``); TransportError if it cannot."""
        ...

    async def send(self, peer: str, data: bytes) -> None:
        """Send one control message to a neighbour."""
        ...


class Connector:
    """Runs discovery for one peer until cancelled (see the module docstring).

    ``poll`` is how often links are re-read (py-libp2p has no awaitable for that at this
    level; the transport's own watcher only wakes ``wait_for_neighbour``). The peer-exchange
    messages it sends count into ``traffic`` (the executor's, so ``bytes_sent`` includes them).
    """

    def __init__(self, transport: Dialler, discovery: Discovery, *, poll: float = 0.25,
                 traffic: Traffic | None = None) -> None:
        self.transport = transport
        self.discovery = discovery
        self.traffic = traffic or Traffic()
        self.poll = poll
        self.bad_exchanges = 0
        self._wake = trio.Event()
        self._links = trio.Event()
        self._nursery: trio.Nursery | None = None

    @property
    def peer_id(self) -> str:
        """This peer's id."""
        return self.discovery.peer_id

    def on_exchange(self, sender: str, msg: PeerExchange) -> bool:
        """Take in a neighbour's records; False (and nothing merged) if it forged ``sender``."""
        if msg.sender != sender:
            self.bad_exchanges += 1
            log.warning("event=bad-exchange peer=%s from=%s claimed=%s", self.peer_id, sender,
                        msg.sender)
            return False
        result = self.discovery.merge(sender, msg.peers, trio.current_time())
        if result.new or result.updated or result.refused or result.dropped:
            log.info("event=peer-exchange peer=%s from=%s records=%d new=%s updated=%s "
                     "refused=%d dropped=%d", self.peer_id, sender, len(msg.peers),
                     ",".join(result.new) or "-", ",".join(result.updated) or "-",
                     result.refused, result.dropped)
            self._kick()
        return True

    async def wait_for_neighbours(self, count: int) -> None:
        """Return once at least ``count`` allowed peers are linked (bound it with a timeout)."""
        while len(self.discovery.connected) < count:
            event = self._links
            await event.wait()

    async def run(self) -> None:
        """Watch links, send exchanges and start dials until cancelled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            while True:
                now = trio.current_time()
                self._sync(now)
                for peer in self.discovery.exchanges(now):
                    nursery.start_soon(self._send_records, peer)
                for dial in self.discovery.dials(now):
                    nursery.start_soon(self._dial, dial)
                due = self.discovery.next_due(now)
                wake = self._wake
                with trio.move_on_at(min(now + self.poll, math.inf if due is None else due)):
                    await wake.wait()

    def _kick(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    def _sync(self, now: float) -> None:
        up, down = self.discovery.update_links(self.transport.neighbours(), now)
        for peer in up:
            log.info("event=link-up peer=%s neighbour=%s connected=%d", self.peer_id, peer,
                     len(self.discovery.connected))
        for peer in down:
            log.info("event=link-down peer=%s neighbour=%s connected=%d", self.peer_id, peer,
                     len(self.discovery.connected))
        if up or down:
            self._links.set()
            self._links = trio.Event()

    async def _send_records(self, peer: str) -> None:
        data = encode_control(PeerExchange(self.peer_id, self.discovery.records()))
        self.traffic.control_bytes += len(data)
        try:
            await self.transport.send(peer, data)
        except TransportError as err:
            log.info("event=send-failed peer=%s to=%s detail=%s", self.peer_id, peer, err)

    async def _dial(self, dial: Dial) -> None:
        detail = "no address"
        ok = False
        for addr in dial.addrs:
            try:
                await self.transport.connect(addr)
                ok = True
                break
            except TransportError as err:
                detail = str(err)
        now = trio.current_time()
        wait = self.discovery.dial_done(dial.peer, ok, now)
        kind = "redial" if dial.redial else "dial"
        if ok:
            log.info("event=%s peer=%s to=%s attempt=%d ok=true", kind, self.peer_id, dial.peer,
                     dial.attempt + 1)
            self._sync(now)
        else:
            log.info("event=%s peer=%s to=%s attempt=%d ok=false retry_in=%.2f detail=%s", kind,
                     self.peer_id, dial.peer, dial.attempt + 1, wait or 0.0, detail[:200])
        self._kick()
