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

from peers.launch_options import DEFAULT_LAUNCH_PEERS, LaunchSetup
from peers.launch_options import add_arguments as add_launch_arguments
from peers.peer_config import defer_to_config
from peers.peer_options import add_arguments as add_peer_arguments
from peers.simulate_options import add_arguments as add_simulate_arguments
from swarm.config import LearningConfig, TimingConfig
from swarm.options import from_args

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse that keeps its one-line error but exits with our usage code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"medswarm: error: {message}\n")


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
    add_simulate_arguments(sim)
    sim.set_defaults(func=_cmd_simulate)

    peer = sub.add_parser(
        "peer",
        help="run one hospital's peer over libp2p until the swarm stops",
        description="Run one peer: Noise-encrypted libp2p links to consortium members only.",
    )
    add_peer_arguments(peer)
    specs = defer_to_config(peer)  # options may also come from --config (see peers.peer_config)
    peer.set_defaults(func=lambda args: _cmd_peer(args, specs))

    launch = sub.add_parser(
        "launch",
        help="start N real peer processes on 127.0.0.1 and collect their reports",
        description="A real libp2p swarm on this host: generated keys, a consortium file, a bootstrap chain.",
    )
    add_launch_arguments(launch)
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

    for config in (LaunchSetup, LearningConfig, TimingConfig):  # checked here, before any key is made
        from_args(config, args)
    if args.peers is None:
        from swarm.task import natural_site_count

        args.peers = natural_site_count(from_args(LearningConfig, args)) or DEFAULT_LAUNCH_PEERS
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
