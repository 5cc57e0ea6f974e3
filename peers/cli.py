"""The ``medswarm`` command line.

Every expected failure (bad option, missing or corrupt data, impossible topology) ends
with one line on stderr and exit code 2; nothing expected ends in a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Sequence

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that keeps its one-line error but exits with our usage code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"medswarm: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _arms(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    """The full ``medswarm`` parser with its subcommands."""
    parser = _Parser(prog="medswarm", description="Peer-to-peer swarm learning for hospitals.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every event")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sim = sub.add_parser(
        "simulate",
        help="run many peers on this host and compare swarm, fedavg, local, central and cwt",
        description="Simulate N hospitals on one host with the same per-peer logic as real peers.",
    )
    sim.add_argument("--peers", type=_positive_int, default=8, help="number of peers (default 8)")
    sim.add_argument("--topology", default="ring",
                     help="ring | full | kregular[:K] | smallworld[:K[:P]] | exponential (default ring)")
    sim.add_argument("--rounds", type=_positive_int, default=30, help="rounds (default 30)")
    sim.add_argument("--local-epochs", type=_positive_int, default=1, help="local epochs per round (default 1)")
    sim.add_argument("--gossip-steps", type=_positive_int, default=3,
                     help="gossip exchanges per round in the swarm arm (default 3)")
    sim.add_argument("--data", default="breastmnist",
                     help="breastmnist | pneumoniamnist | heart | PATH.npz (default breastmnist, shipped)")
    sim.add_argument("--partition", default=None,
                     help="iid | dirichlet:ALPHA | quantity:ALPHA | sites "
                          "(default dirichlet:0.5; sites for heart)")
    sim.add_argument("--site-shift", type=float, default=0.0,
                     help="per-site scanner shift strength for images, 0 = none (default 0)")
    sim.add_argument("--arms", type=_arms, default=None,
                     help="comma-separated arms (default swarm,fedavg,local,central,cwt)")
    sim.add_argument("--seed", type=int, default=0, help="seed for splits, init and training (default 0)")
    sim.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    sim.add_argument("--batch-size", type=_positive_int, default=16, help="batch size (default 16)")
    sim.add_argument("--eval-every", type=_positive_int, default=1,
                     help="evaluate every N rounds (and the last); default 1")
    sim.add_argument("--uniform-mixing", action="store_true",
                     help="plain Metropolis weights (uniform mean) instead of sample-aware ones")
    sim.add_argument("--optimizer", default="sgd", help="sgd | adam (default sgd)")
    sim.add_argument("--float16", action="store_true", help="send float32 weights as float16")
    faults = sim.add_argument_group("faults (virtual clock; one local epoch = --train-time seconds)")
    faults.add_argument("--delay", type=float, default=0.05, help="one-way link delay, s (default 0.05)")
    faults.add_argument("--jitter", type=float, default=0.02, help="uniform +- jitter on each delay, s (default 0.02)")
    faults.add_argument("--drop", type=float, default=0.0,
                        help="probability that any message or transfer is lost (default 0)")
    faults.add_argument("--train-time", type=float, default=1.0, help="virtual seconds per local epoch (default 1)")
    faults.add_argument("--stragglers", type=int, default=0, help="number of slow peers (default 0)")
    faults.add_argument("--slowdown", type=float, default=5.0, help="how much slower stragglers train (default 5)")
    faults.add_argument("--crash", action="append", default=[], metavar="PEER@ROUND[:BACK_AT_ROUND]",
                        help="peer PEER dies on reaching ROUND, optionally back when the swarm reaches "
                             "BACK_AT_ROUND (repeatable)")
    faults.add_argument("--late", action="append", default=[], metavar="PEER@ROUND",
                        help="peer PEER joins only when the swarm reaches ROUND (repeatable)")
    faults.add_argument("--cut", action="append", default=[], metavar="PEER@ROUND:BACK_AT_ROUND",
                        help="peer PEER's links carry nothing from its ROUND until the swarm reaches "
                             "BACK_AT_ROUND; it keeps running (repeatable)")
    proto = sim.add_argument_group("protocol")
    proto.add_argument("--quorum", type=float, default=1.0,
                       help="share of live neighbours whose model a peer waits for (default 1.0)")
    proto.add_argument("--no-converge", action="store_true", help="run all --rounds, never stop early")
    proto.add_argument("--converge-window", type=_positive_int, default=8,
                       help="rounds the validation loss must plateau before a peer votes (default 8)")
    proto.add_argument("--metric-tol", type=float, default=0.02,
                       help="smallest validation-loss improvement that counts (default 0.02)")
    proto.add_argument("--distance-tol", type=float, default=0.1,
                       help="largest relative distance to the neighbours' average when voting (default 0.1)")
    proto.add_argument("--state-dir", type=Path, default=None,
                       help="write every swarm peer's checkpoints here (default: in memory)")
    sim.add_argument("--out", type=Path, default=Path("runs/simulate"),
                     help="output directory (default runs/simulate)")
    sim.add_argument("--quiet", action="store_true", help="no progress bar or table")
    sim.set_defaults(func=_cmd_simulate)

    peer = sub.add_parser(
        "peer",
        help="run one hospital's peer over libp2p until the swarm stops",
        description="Run one peer: Noise-encrypted libp2p links to consortium members only.",
    )
    from peers.peer_config import defer_to_config
    from peers.peer_options import add_arguments

    add_arguments(peer)
    specs = defer_to_config(peer)  # options may also come from --config (see peers.peer_config)
    peer.set_defaults(func=lambda args: _cmd_peer(args, specs))

    launch = sub.add_parser(
        "launch",
        help="start N real peer processes on 127.0.0.1 and collect their reports",
        description="A real libp2p swarm on this host: generated keys, a consortium file, a bootstrap chain.",
    )
    launch.add_argument("--peers", type=_positive_int, default=4, help="number of peer processes (default 4)")
    launch.add_argument("--topology", default="ring", help="ring | chain | full: who dials whom (default ring)")
    launch.add_argument("--data", default="breastmnist", help="breastmnist | pneumoniamnist | heart | PATH.npz")
    launch.add_argument("--partition", default=None, help="iid | dirichlet:A | quantity:A | sites")
    launch.add_argument("--rounds", type=_positive_int, default=30, help="maximum rounds (default 30)")
    launch.add_argument("--local-epochs", type=_positive_int, default=1)
    launch.add_argument("--gossip-steps", type=_positive_int, default=3)
    launch.add_argument("--lr", type=float, default=0.05)
    launch.add_argument("--batch-size", type=_positive_int, default=16)
    launch.add_argument("--seed", type=int, default=0, help="split, init and training seed (default 0)")
    launch.add_argument("--no-converge", action="store_true", help="run all --rounds, never stop early")
    launch.add_argument("--heartbeat", type=float, default=1.0, help="peers' progress interval, s (default 1)")
    launch.add_argument("--suspect-after", type=float, default=10.0, help="peers' silence before suspicion, s")
    launch.add_argument("--deadline-max", type=float, default=20.0, help="peers' longest wait per phase, s")
    launch.add_argument("--linger", type=float, default=2.0, help="peers' wait after stopping, s")
    launch.add_argument("--start-timeout", type=float, default=60.0, help="how long a peer may take to listen")
    launch.add_argument("--timeout", type=float, default=1800.0, help="give up after this many seconds")
    launch.add_argument("--out", type=Path, default=Path("runs/launch"), help="output directory (default runs/launch)")
    launch.add_argument("--quiet", action="store_true", help="no live table")
    launch.set_defaults(func=_cmd_launch)

    keygen = sub.add_parser(
        "keygen",
        help="create a hospital's Ed25519 identity key (mode 0600) and print its peer ID",
        description="Create a new libp2p identity for one peer; an existing file is never overwritten.",
    )
    keygen.add_argument("--out", type=Path, required=True, help="where to write the private key")
    keygen.add_argument("--network-key", action="store_true",
                        help="write a consortium's pre-shared network key (swarm.key) instead of an identity")
    keygen.set_defaults(func=_cmd_keygen)
    return parser


def _cmd_peer(args: argparse.Namespace, specs) -> int:
    from peers.peer_config import resolve

    args = resolve(args, specs)  # before the heavy imports: a bad file fails at once
    from peers.peer_cmd import run_peer

    return run_peer(args)


def _cmd_launch(args: argparse.Namespace) -> int:
    from peers.launch import run_launch

    return run_launch(args)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from gossip.libp2p_identity import generate_key_file

    if args.network_key:
        from gossip.libp2p_netkey import generate_network_key_file

        generate_network_key_file(args.out)
        print(f"network key written to {args.out}: give it to every member, privately")
        return 0
    key = generate_key_file(args.out)
    print(key.peer_id)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from peers.simulate_cmd import run_simulate

    return run_simulate(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medswarm`` console script; returns the exit code."""
    from gossip.errors import MedswarmError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed on one line
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return int(args.func(args))
    except MedswarmError as err:
        print(f"medswarm: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:
        print(f"medswarm: error: {err.strerror or err}: {err.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("medswarm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
