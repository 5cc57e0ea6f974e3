"""``medswarm peer``: one hospital's peer process over libp2p.

It loads its identity and the consortium allow-list, listens, builds its site's data and
model, resumes from its state directory if there is a checkpoint, then finds its
neighbours: it dials its ``--bootstrap`` members, learns more members by peer exchange
and keeps ``--target-neighbours`` of them linked, redialling lost ones with backoff
(``peers.discovery``, ``peers.connector``). Once it has one neighbour (waiting long
enough for former neighbours to redial a restarted peer) and then ``--wait-neighbours``
of them or ``--deadline-max`` more seconds, it runs the
leader-free protocol (``peers.runner``) until the swarm stops, writing a final JSON
report. Links that come up later become neighbours too. Ctrl-C or SIGTERM ends it after
the current write (checkpoints are atomic).
With ``--status-port`` it serves ``/status`` and ``/metrics`` (``peers.status``) from
before the first neighbour connects until it exits.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import numpy as np
import trio

from gossip.errors import TransportError
from gossip.libp2p_addrs import default_announce, parse_announce, peer_of
from gossip.libp2p_identity import Consortium, NodeKey, load_key
from gossip.libp2p_netkey import load_network_key
from gossip.signing import KeyVerifier, RecordSigner
from gossip.libp2p_transport import Libp2pTransport
from peers.connector import Connector
from peers.discovery import Discovery, DiscoveryConfig
from peers.errors import PeerError
from peers.metrics_log import MetricsLog
from peers.peer_options import NetworkConfig
from peers.runner import PeerRunner
from peers.status import PeerStatus, status_server
from swarm.atomic_file import atomic_write
from swarm.checkpoint import CheckpointStore, PeerState
from swarm.config import LearningConfig, OutputConfig, TimingConfig, protocol_config
from swarm.executor import RoundInfo, Traffic, checkpoint_weights, resume
from swarm.metrics import finite_or_none
from swarm.node import SwarmNode
from swarm.partition import Federation, Site
from swarm.privacy import LedgerJournal, PrivacyLedger, PrivateTraining, plan
from swarm.protocol import ProtocolConfig
from swarm.schedule import OnePeerSchedule
from swarm.options import from_args
from swarm.arm_results import metrics_row
from swarm.simulate import train_seed
from swarm.swarm_view import ordered_index
from swarm.task import prepare
from swarm.training import Trainer

log = logging.getLogger("medswarm.peer")


@dataclass(frozen=True)
class PeerSetup:
    """Everything a peer runs with, checked and loaded at the edge (``run_peer``)."""

    network: NetworkConfig
    learning: LearningConfig
    output: OutputConfig
    protocol: ProtocolConfig
    key: NodeKey
    consortium: Consortium | None
    network_key: bytes | None
    links: _Links
    federation: Federation
    trainer: Trainer
    store: CheckpointStore
    state: PeerState | None
    weights: Mapping[str, np.ndarray]
    start_round: int
    #: the one-peer exponential graph's partners per phase (``--onepeer-exp``); None: all neighbours
    schedule: OnePeerSchedule | None = None
    #: under ``--dp-epsilon``: the private training with this hospital's ledger
    training: PrivateTraining | None = None

    @property
    def site(self) -> Site:
        """This hospital's data."""
        return self.federation.sites[self.network.site]


def _schedule(network: NetworkConfig, learning: LearningConfig, key: NodeKey,
              consortium: Consortium | None) -> OnePeerSchedule | None:
    """The one-peer exponential graph over the consortium's members in file order
    (``--onepeer-exp``): ``auto`` uses it when the consortium lists the ``--sites`` peers with
    this one at ``--site`` (as ``medswarm launch`` writes it), and every discovered neighbour
    otherwise; ``on`` demands it; ``off`` never.

    Raises
    ------
    PeerError
        For an unknown mode; with ``on``, without a consortium, or when its order does not
        put this peer at its ``--site``.
    """
    if network.onepeer_exp not in ("auto", "on", "off"):
        raise PeerError(f"--onepeer-exp: expected auto, on or off, got {network.onepeer_exp!r}")
    if network.onepeer_exp == "off":
        return None
    ids = tuple(m.peer_id for m in consortium.members) if consortium is not None else ()
    in_order = len(ids) == network.sites and key.peer_id in ids and ids.index(key.peer_id) == network.site
    if in_order:
        return OnePeerSchedule(ids, learning.gossip_steps)
    if network.onepeer_exp == "auto":
        log.info("event=partners peer=%s mode=neighbours detail=no consortium listing the %d sites' peers in "
                 "site order: every discovered neighbour", key.peer_id, network.sites)
        return None
    if consortium is None:
        raise PeerError("--onepeer-exp needs --consortium: its member order names the partners")
    where = ids.index(key.peer_id) if key.peer_id in ids else -1
    raise PeerError(f"--onepeer-exp: the consortium must list the {network.sites} sites' peers in site "
                    f"order; this peer is member {where} of {len(ids)}, site {network.site}")


def run_peer(args: argparse.Namespace) -> int:
    """Build the typed configs of the options, load what they name, then run the peer under
    trio; 0 when the swarm has stopped."""
    network = from_args(NetworkConfig, args)
    learning, output = from_args(LearningConfig, args), from_args(OutputConfig, args)
    protocol = protocol_config(learning, from_args(TimingConfig, args))
    if network.consortium is None and not network.insecure_open_swarm:
        raise PeerError("no --consortium given: refusing to start an open swarm (use --insecure-open-swarm)")
    if not 0 <= network.site < network.sites:
        raise PeerError(f"--site {network.site} is not one of the {network.sites} sites")
    key = load_key(network.key)
    network_key = load_network_key(network.network_key) if network.network_key else None
    consortium = Consortium.from_toml(network.consortium) if network.consortium else None
    if consortium is not None and not consortium.allows(key.peer_id):
        raise PeerError(f"this peer ({key.peer_id}) is not a member of {network.consortium}")
    schedule = _schedule(network, learning, key, consortium)
    links = _Links(_bootstrap_peers(network.bootstrap, key, consortium),
                   [parse_announce(a, key.peer_id) for a in network.announce],
                   DiscoveryConfig(target=network.target_neighbours))
    prepared = prepare(learning, network.sites)
    federation, trainer = prepared.federation, prepared.trainer
    store = CheckpointStore(output.state_dir)
    state = store.load_latest(key.peer_id)
    setup = PeerSetup(
        network=network, learning=learning, output=output, protocol=protocol, key=key, consortium=consortium,
        network_key=network_key, links=links, federation=federation, trainer=trainer, store=store, state=state,
        weights=checkpoint_weights(state) if state is not None else prepared.initial,
        start_round=state.round + 1 if state is not None else 0, schedule=schedule,
        training=_private_training(learning, output, trainer, federation.sites[network.site], key.peer_id, state),
    )
    report_path = output.report or output.state_dir / "report.json"
    try:
        outcome = trio.run(_main, setup)
    except KeyboardInterrupt:
        log.info("event=interrupted peer=%s", key.peer_id)
        return 130
    if outcome is None:
        return 130
    atomic_write(report_path, json.dumps(outcome, indent=2) + "\n")
    print(json.dumps({k: outcome[k] for k in ("peer_id", "stop_round", "reason", "auroc")}))
    return 0


async def _main(setup: PeerSetup) -> dict | None:
    network, key, consortium = setup.network, setup.key, setup.consortium
    status = PeerStatus(key.peer_id, network.site, consortium.name_of(key.peer_id) if consortium else None,
                        setup.start_round)
    if network.status_port is None:
        return await _run(setup, status)
    async with status_server(status, network.status_host, network.status_port) as url:
        print(f"status {url}", flush=True)
        log.info("event=status-serving peer=%s url=%s", key.peer_id, url)
        try:
            return await _run(setup, status)
        finally:
            status.stopped()


async def _run(setup: PeerSetup, status: PeerStatus) -> dict | None:
    network, learning, key, links, state = setup.network, setup.learning, setup.key, setup.links, setup.state
    consortium, trainer, site, federation = setup.consortium, setup.trainer, setup.site, setup.federation
    start_round, deadline_max = setup.start_round, setup.protocol.deadline.maximum
    async with Libp2pTransport.start(key, network.listen, consortium=consortium,
                                     network_key=setup.network_key) as transport:
        for addr in transport.listen_addrs:
            full = addr if "/p2p/" in addr else f"{addr}/p2p/{key.peer_id}"
            print(f"listening {full}", flush=True)
        own = links.announce or default_announce(transport.listen_addrs, key.peer_id)
        if own:
            log.info("event=announce peer=%s addrs=%s", key.peer_id, ",".join(own))
        else:
            log.warning("event=no-announce peer=%s listen=%s detail=listening on a wildcard address "
                        "and no interface address found: others cannot learn how to dial this peer; "
                        "pass --announce", key.peer_id, ",".join(transport.listen_addrs))
        allows = consortium.allows if consortium is not None else (lambda _peer: True)
        discovery = Discovery(key.peer_id, allows, links.discovery, own,
                              random.Random(f"{learning.seed}:{key.peer_id}"))
        for peer, addr in links.bootstrap:
            discovery.add_bootstrap(peer, addr, trio.current_time())
        if setup.schedule is not None:  # every partner of the one-peer graph must be a link
            discovery.want(setup.schedule.all_partners(key.peer_id))
        traffic = Traffic()  # every control byte sent: discovery's and the protocol's
        connector = Connector(transport, discovery, traffic=traffic)
        want = max(1, network.wait_neighbours)
        # A restarted peer without --bootstrap waits for its former neighbours to redial it.
        first_wait = max(deadline_max, 2 * links.discovery.backoff_max)

        if setup.training is not None:
            status.privacy = setup.training.summary
        node = SwarmNode(key.peer_id, setup.training or trainer.train, site.train, trainer.model_id, setup.weights, {},
                         float16=learning.float16, q8=learning.q8, sample_weighted=learning.sample_weighted,
                         aggregation=learning.aggregation(), choco=learning.choco_config())
        schedule = None if setup.schedule is None else partial(setup.schedule.partners, key.peer_id)
        protocol, state_seq = resume(key.peer_id, [], setup.protocol, state, schedule=schedule,
                                     is_member=consortium.allows if consortium is not None else None,
                                     member_index=None if consortium is None else ordered_index(
                                         sorted(m.peer_id for m in consortium.members)),
                                     signer=RecordSigner(key.peer_id, key.key_pair.private_key.to_bytes()),
                                     verify=KeyVerifier())

        def metric(w):
            return trainer.evaluate(w, site.test).loss

        rows = MetricsLog(setup.output.state_dir / "metrics.jsonl") if setup.output.eval_global else None

        def on_round(info: RoundInfo) -> None:
            status.touch()
            if rows is not None:
                glob = trainer.evaluate(node.weights, federation.global_test)
                loc = trainer.evaluate(node.weights, site.test)
                row = metrics_row("swarm", info.round, network.site, info.loss, glob, loc, info.distance,
                                  info.bytes_sent)
                if setup.training is not None:
                    row["dp_epsilon_spent"] = setup.training.last_spent
                rows.append(row)

        runner = PeerRunner(transport, node, protocol, evaluate=metric, store=setup.store,
                            train_seed=lambda r: train_seed(learning.seed, network.site, r), on_round=on_round,
                            on_exchange=connector.on_exchange, traffic=traffic)

        async def ready():
            with trio.move_on_after(deadline_max):
                await connector.wait_for_neighbours(want)
            log.info("event=ready peer=%s round=%d neighbours=%d target=%d", key.peer_id, start_round,
                     len(discovery.connected), want)
            status.running(runner)

        outcome = None
        failure: PeerError | None = None
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                async def watch():
                    async for _ in signals:
                        log.info("event=signal peer=%s round=%d", key.peer_id, protocol.round)
                        nursery.cancel_scope.cancel()
                        return

                async def work():
                    nonlocal outcome, failure
                    with trio.move_on_after(first_wait):
                        await connector.wait_for_neighbours(1)
                    if not discovery.connected:
                        failure = PeerError(f"no neighbour connected within {first_wait:g} s: "
                                            "check --bootstrap and the consortium")
                    else:
                        # Flooded records are deduplicated by (origin, seq): a restarted peer must
                        # start above whatever it sent before it died, also after its last
                        # checkpoint. trio's clock has a random offset per process; the wall clock
                        # in ms does not.
                        seq_floor = max(state_seq, int(time.time() * 1000))
                        outcome = await runner.run(seq_floor, ready=ready)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                nursery.start_soon(connector.run)
                nursery.start_soon(work)
        status.stopped()
        if failure is not None:
            raise failure
        if outcome is None:
            return None
        # in a thread, so /status keeps answering ("stopped") while the test sets are scored
        glob, loc = await trio.to_thread.run_sync(
            lambda: (trainer.evaluate(node.weights, federation.global_test), trainer.evaluate(node.weights, site.test)))
        return {
            "peer_id": key.peer_id, "site": network.site, "name": site.name, "train_samples": len(site.train),
            "local_accuracy": finite_or_none(loc.accuracy), "local_auroc": finite_or_none(loc.auroc),
            "bytes_sent": outcome.bytes_sent, "start_round": start_round, "stop_round": outcome.stop_round,
            "reason": outcome.reason, "rounds_completed": outcome.rounds_completed,
            "rejected": outcome.rejected, "bad_control": outcome.bad_control,
            "catch_ups": outcome.catch_ups,
            "model_id": trainer.model_id,
            "timings": {"train_s": node.stats.train_s, "codec_s": node.stats.codec_s,
                        "averaging_s": node.stats.averaging_s},
            "auroc": finite_or_none(glob.auroc), "accuracy": finite_or_none(glob.accuracy),
            "announce": list(discovery.own_addrs),
            "neighbours_seen": sorted(discovery.stats.neighbours_seen),
            "known_peers": discovery.known(),
            "dials": discovery.stats.dials, "redials": discovery.stats.redials,
            "dial_failures": discovery.stats.dial_failures,
            "finished_at": time.time(),
            **(setup.training.summary() if setup.training is not None else {}),
        }


def _private_training(learning: LearningConfig, output: OutputConfig, trainer: Trainer, site: Site,
                      peer_id: str, state: PeerState | None) -> PrivateTraining | None:
    """Under ``--dp-epsilon``, this hospital's private training, its ledger restored from the
    checkpoint and the write-ahead journal (their union: no round lost, none counted twice)."""
    privacy = learning.privacy()
    if privacy is None:
        return None
    dp = plan(privacy, len(site.train), learning.batch_size, learning.local_epochs, learning.rounds)
    journal = LedgerJournal(output.state_dir / "dp-ledger.json")
    training = PrivateTraining(trainer, PrivacyLedger(dp), peer=peer_id, journal=journal.save)
    training.restore(state.extra.get("dp") if state is not None else None, journal.load())
    log.info("event=dp-plan peer=%s epsilon=%g delta=%.3g noise=%.4g sample_rate=%.4g steps_per_round=%d "
             "accountant=%s spent=%.4g rounds_charged=%d", peer_id, dp.epsilon, dp.delta, dp.noise,
             dp.sample_rate, dp.steps_per_round, dp.accountant, training.last_spent, len(training.ledger.entries))
    return training


def _bootstrap_peers(addrs: list[str], key: NodeKey, consortium: Consortium | None) -> list[tuple[str, str]]:
    """(peer id, address) of each ``--bootstrap``; PeerError for a malformed, own or foreign one."""
    out = []
    for addr in addrs:
        try:
            peer = peer_of(addr)
        except TransportError as err:
            raise PeerError(f"bad --bootstrap: {err}") from None
        if peer == key.peer_id:
            raise PeerError(f"--bootstrap {addr} is this peer itself")
        if consortium is not None and not consortium.allows(peer):
            raise PeerError(f"--bootstrap {addr}: {peer} is not in the consortium")
        out.append((peer, addr))
    return out


@dataclass(frozen=True)
class _Links:
    """How this peer finds neighbours: checked options."""

    bootstrap: list[tuple[str, str]]
    announce: list[str]
    discovery: DiscoveryConfig
