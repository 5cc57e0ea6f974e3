"""Benchmark: the control plane's bytes per peer per round, by message type (issue 11).

The same run as ``bench_scale.py --trainer fake`` (pneumoniamnist's shape, IID, exponential
graph, 3 gossip steps, the tests' fake trainer, no early stop) for one size, counting every
control message a peer sends by type (progress records split into a peer's own and those it
pushes on), and how fresh each peer's liveness view is: at most once a heartbeat per peer
after the first ``suspect_after`` + 1 s, the age in epochs of the newest sighting it holds of
each member, and any live member missing from its view. No plot: a table of a few numbers.

    PYTHONPATH=. .venv/bin/python scripts/bench_control_breakdown.py --peers 1000 --rounds 3
    # writes results/bench_control_breakdown_1000.json
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(peers: int, rounds: int, seed: int, fanout: int | None) -> dict:
    """One fake-trainer run of ``peers``; the breakdown as a dict."""
    from gossip.control import Progress, decode_control
    from swarm.config import LearningConfig, TimingConfig, protocol_config
    from swarm.faults import FaultConfig
    from swarm.topology import build_topology
    from swarm.virtual_swarm import VirtualSwarm
    from tests.fakes import FakeTrainer, fake_federation

    learning = LearningConfig(data="fake", partition="iid", gossip_steps=3, rounds=rounds, seed=seed, converge=False)
    timing = TimingConfig() if fanout is None else TimingConfig(fanout=fanout)
    config = protocol_config(learning, timing)
    config = dataclasses.replace(config, convergence=dataclasses.replace(config.convergence, min_rounds=rounds + 1))
    counts: collections.Counter = collections.Counter()
    sizes: collections.Counter = collections.Counter()
    ages: collections.Counter = collections.Counter()
    missing = [0, 0]  # views checked, live members missing from them
    sampled: dict[int, float] = {}  # when each peer's view was last checked

    class Counting(VirtualSwarm):
        def send_from(self, peer, to, data) -> None:
            msg = decode_control(data)
            kind = type(msg).__name__
            if isinstance(msg, Progress):
                kind += " (own)" if msg.origin == peer.id else " (pushed on)"
            counts[kind] += 1
            sizes[kind] += len(data)
            super().send_from(peer, to, data)

        def _perform(self, peer, actions) -> None:
            super()._perform(peer, actions)
            if (peer.proto is None or self.now < config.suspect_after + 1
                    or self.now - sampled.get(peer.index, -1e9) < config.heartbeat):
                return
            sampled[peer.index] = self.now
            view = peer.proto.membership.view
            view.advance(self.now)
            seen = 0
            for age, epoch in enumerate(view.live):
                ages[age] += ((epoch & ~seen) & ~view.self_bit).bit_count()
                seen |= epoch
            missing[0] += 1
            missing[1] += peers - 1 - (seen & ~view.self_bit).bit_count()

    trainer = FakeTrainer(peers, seed)
    swarm = Counting(trainer, fake_federation(peers, seed), build_topology("exponential", peers, seed=seed),
                     trainer.initial_weights(seed), config, FaultConfig(), seed=seed,
                     train_seed=lambda site, r: site * 1009 + r, eval_every=rounds, max_events=50_000_000)
    start = time.perf_counter()
    runs = swarm.run()
    wall = time.perf_counter() - start
    degree = sum(len(v) for v in swarm.topology.values()) / peers
    per = peers * rounds
    total_ages = sum(ages.values()) or 1
    return {
        "peers": peers, "rounds": rounds, "seed": seed, "fanout": config.fanout, "degree": degree,
        "min_rounds_done": min(r.last_round + 1 for r in runs), "wall_s": wall,
        "control_bytes_per_peer_per_round": sum(sizes.values()) / per,
        "by_type": {kind: {"messages_per_peer_per_round": counts[kind] / per,
                           "messages_per_edge_per_round": counts[kind] / per / degree,
                           "bytes_per_message": sizes[kind] / counts[kind],
                           "bytes_per_peer_per_round": sizes[kind] / per}
                    for kind in sorted(sizes, key=lambda k: -sizes[k])},
        "liveness": {"views_checked": missing[0], "live_members_missing": missing[1],
                     "newest_sighting_age_share": {str(a): n / total_ages for a, n in sorted(ages.items())},
                     "window_epochs": swarm.peers[0].proto.membership.view.window if swarm.peers[0].proto else None},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fanout", type=int, help="default: the option's default")
    parser.add_argument("--out", type=Path, default=HERE.parent / "results")
    args = parser.parse_args()
    if args.peers < 2 or args.rounds < 1:
        parser.error("--peers must be >= 2 and --rounds >= 1")
    result = run(args.peers, args.rounds, args.seed, args.fanout)
    from swarm.atomic_file import atomic_write

    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / f"bench_control_breakdown_{args.peers}.json", json.dumps(result, indent=2).encode())
    print(f"{args.peers} peers, degree {result['degree']:g}, fanout {result['fanout']}: "
          f"{result['control_bytes_per_peer_per_round']:.0f} control bytes per peer per round")
    for kind, row in result["by_type"].items():
        print(f"  {kind:22s} {row['messages_per_peer_per_round']:6.1f} msgs  {row['bytes_per_message']:5.0f} B/msg  "
              f"{row['bytes_per_peer_per_round']:7.0f} B")
    print("  liveness:", json.dumps(result["liveness"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
