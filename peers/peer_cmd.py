"""``medswarm peer``: one hospital's peer process over libp2p.

It loads its identity and the consortium allow-list, listens, dials its bootstrap peers,
builds its site's data and model, resumes from its state directory if there is a
checkpoint, then runs the leader-free protocol (``peers.runner``) until the swarm stops,
writing a final JSON report. Links that come up later (peers dialling in) become
neighbours. Ctrl-C or SIGTERM ends it after the current write (checkpoints are atomic).
With ``--status-port`` it serves ``/status`` and ``/metrics`` (``peers.status``) from
before the first neighbour connects until it exits.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import time

import numpy as np
import trio

from gossip.errors import TransportError
from gossip.libp2p_identity import Consortium, load_key
from gossip.libp2p_transport import Libp2pTransport
from peers.errors import PeerError
from peers.runner import PeerRunner
from peers.status import PeerStatus, status_server
from swarm.checkpoint import CheckpointStore
from swarm.convergence import ConvergenceConfig
from swarm.node import SwarmNode
from swarm.partition import build_federation, parse_partition
from swarm.protocol import PeerProtocol, ProtocolConfig
from swarm.round_counter import DeadlineConfig
from swarm.simulate import train_seed
from swarm.training import TrainConfig, Trainer

log = logging.getLogger("medswarm.peer")


def run_peer(args: argparse.Namespace) -> int:
    """Validate the options, then run the peer under trio; 0 when the swarm has stopped."""
    if args.consortium is None and not args.insecure_open_swarm:
        raise PeerError("no --consortium given: refusing to start an open swarm (use --insecure-open-swarm)")
    if not 0 <= args.site < args.sites:
        raise PeerError(f"--site {args.site} is not one of the {args.sites} sites")
    key = load_key(args.key)
    consortium = Consortium.from_toml(args.consortium) if args.consortium else None
    if consortium is not None and not consortium.allows(key.peer_id):
        raise PeerError(f"this peer ({key.peer_id}) is not a member of {args.consortium}")
    partition = args.partition or ("sites" if args.data == "heart" else "dirichlet:0.5")
    federation = build_federation(args.data, args.sites, parse_partition(partition), seed=args.seed)
    site = federation.sites[args.site]
    trainer = Trainer(federation.input_shape, federation.num_classes,
                      TrainConfig(local_epochs=args.local_epochs))
    store = CheckpointStore(args.state_dir)
    state = store.load_latest(key.peer_id)
    weights = state.weights if state is not None else trainer.initial_weights(args.seed)
    start_round = state.round + 1 if state is not None else 0
    config = ProtocolConfig(
        gossip_steps=args.gossip_steps,
        deadline=DeadlineConfig(minimum=0.2, initial=min(5.0, args.deadline_max), maximum=args.deadline_max),
        suspect_after=args.suspect_after, heartbeat=args.heartbeat,
        fetch_timeout=min(60.0, args.deadline_max), linger=args.linger,
        convergence=ConvergenceConfig(max_rounds=args.rounds),
    )
    report_path = args.report or args.state_dir / "report.json"
    try:
        outcome = trio.run(_main, args, key, consortium, trainer, site, federation, weights, start_round,
                           state, store, config)
    except KeyboardInterrupt:
        log.info("event=interrupted peer=%s", key.peer_id)
        return 130
    if outcome is None:
        return 130
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(outcome, indent=2) + "\n")
    print(json.dumps({k: outcome[k] for k in ("peer_id", "stop_round", "reason", "auroc")}))
    return 0


async def _main(args, key, consortium, trainer, site, federation, weights, start_round, state, store,
                config) -> dict | None:
    status = PeerStatus(key.peer_id, args.site, consortium.name_of(key.peer_id) if consortium else None,
                        start_round)
    run = functools.partial(_run, args, key, consortium, trainer, site, federation, weights, start_round,
                            state, store, config, status)
    if args.status_port is None:
        return await run()
    async with status_server(status, args.status_host, args.status_port) as url:
        print(f"status {url}", flush=True)
        log.info("event=status-serving peer=%s url=%s", key.peer_id, url)
        try:
            return await run()
        finally:
            status.stopped()


async def _run(args, key, consortium, trainer, site, federation, weights, start_round, state, store,
               config, status: PeerStatus) -> dict | None:
    async with Libp2pTransport.start(key, args.listen, consortium=consortium) as transport:
        for addr in transport.listen_addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{key.peer_id}"
            print(f"listening {full}", flush=True)
        for addr in args.bootstrap:
            await _dial(transport, addr)
        with trio.move_on_after(args.deadline_max):
            while not transport.neighbours():
                await trio.sleep(0.1)  # waiting for the first peer to dial in
        if not transport.neighbours():
            raise PeerError("no neighbour connected: check --bootstrap and the consortium")
        neighbours = transport.neighbours()
        node = SwarmNode(key.peer_id, trainer.train, site.train, trainer.model_id, weights,
                         {p: 1 for p in neighbours})
        protocol = PeerProtocol(key.peer_id, neighbours, config, start_round=start_round,
                                deadline_history=list(state.extra.get("deadline", [])) if state else None)
        if state is not None:
            protocol.convergence.restore(state.extra.get("convergence", {}))

        def metric(w):
            return trainer.evaluate(w, site.test).loss

        def on_round(round_, info):
            log.info("event=round peer=%s round=%d loss=%s metric=%s distance=%s", key.peer_id, round_,
                     info["loss"], info["metric"], info["distance"])
            status.touch()

        runner = PeerRunner(transport, node, protocol, evaluate=metric, store=store,
                            train_seed=lambda r: train_seed(args.seed, args.site, r), on_round=on_round)
        status.running(runner)
        outcome = None
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async def watch():
                    async for _ in signals:
                        log.info("event=signal peer=%s round=%d", key.peer_id, protocol.round)
                        nursery.cancel_scope.cancel()
                        return

                async def work():
                    nonlocal outcome
                    outcome = await runner.run(int(state.extra.get("seq", 0)) if state else 0)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                nursery.start_soon(work)
        status.stopped()
        if outcome is None:
            return None
        # in a thread, so /status keeps answering ("stopped") while the global test set is scored
        glob = await trio.to_thread.run_sync(trainer.evaluate, node.weights, federation.global_test)
        return {
            "peer_id": key.peer_id, "site": args.site, "stop_round": outcome.stop_round,
            "reason": outcome.reason, "rounds_completed": outcome.rounds_completed,
            "rejected": outcome.rejected, "bad_control": outcome.bad_control,
            "auroc": None if np.isnan(glob.auroc) else glob.auroc, "accuracy": glob.accuracy,
            "finished_at": time.time(),
        }


async def _dial(transport: Libp2pTransport, addr: str, attempts: int = 8) -> None:
    """Dial a bootstrap peer, retrying with backoff (it may still be starting)."""
    delay = 0.2
    for attempt in range(attempts):
        try:
            await transport.connect(addr)
            return
        except TransportError as err:
            if attempt == attempts - 1:
                raise PeerError(f"cannot reach bootstrap {addr}: {err}") from None
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)
