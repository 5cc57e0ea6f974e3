"""The options of ``medswarm peer`` (kept free of heavy imports so ``--help`` is instant)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medswarm peer`` (any of them can also come from ``--config``)."""
    parser.add_argument("--config", type=Path, default=None, metavar="PEER.TOML",
                        help="TOML file of options (keys: long option names; the command line wins)")
    parser.add_argument("--key", type=Path, required=True, help="identity key file (medswarm keygen)")
    parser.add_argument("--consortium", type=Path, default=None,
                        help="TOML allow-list of member peer IDs ([[member]] name=..., peer_id=...)")
    parser.add_argument("--network-key", type=Path, default=None,
                        help="pre-shared network key file (medswarm keygen --network-key): only hosts "
                             "holding it can even handshake; medswarm peers only")
    parser.add_argument("--insecure-open-swarm", action="store_true",
                        help="accept any peer (no allow-list): for experiments only")
    parser.add_argument("--listen", default="/ip4/127.0.0.1/tcp/0", help="multiaddr to listen on")
    parser.add_argument("--bootstrap", action="append", default=[], metavar="MULTIADDR",
                        help="full /ip4/.../tcp/.../p2p/<id> address of a member (repeatable)")
    parser.add_argument("--announce", action="append", default=[], metavar="MULTIADDR",
                        help="address others should dial this peer at, /ip4|dns4/<host>/tcp/<port> "
                             "(repeatable; default: the listen address, 0.0.0.0 replaced by the "
                             "interfaces' addresses)")
    parser.add_argument("--target-neighbours", type=int, default=4, metavar="N",
                        help="members to keep linked, found by peer exchange; lost ones are "
                             "redialled with backoff")
    parser.add_argument("--data", default="breastmnist", help="breastmnist | pneumoniamnist | heart | PATH.npz")
    parser.add_argument("--site", type=int, required=True, help="this hospital's site index in the split")
    parser.add_argument("--sites", type=int, required=True, help="number of sites in the split")
    parser.add_argument("--partition", default=None, help="iid | dirichlet:A | quantity:A | sites")
    parser.add_argument("--seed", type=int, default=0, help="seed shared by the consortium (split, init)")
    parser.add_argument("--rounds", type=int, default=30, help="maximum rounds")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--state-dir", type=Path, required=True, help="checkpoints; a restart resumes")
    parser.add_argument("--report", type=Path, default=None, help="final JSON report (default STATE_DIR/report.json)")
    parser.add_argument("--heartbeat", type=float, default=5.0, help="seconds between progress records")
    parser.add_argument("--suspect-after", type=float, default=30.0, help="silence before a neighbour is suspected")
    parser.add_argument("--deadline-max", type=float, default=120.0, help="longest wait for neighbours, s")
    parser.add_argument("--wait-neighbours", type=int, default=1, metavar="N",
                        help="before round 0, wait (up to --deadline-max) for N neighbours, so peers "
                             "started together train together (default 1)")
    parser.add_argument("--linger", type=float, default=30.0,
                        help="after stopping, how long to wait for a neighbour that has not reached the "
                             "stop round (to give it the final model); with none missing, a peer "
                             "leaves after two heartbeats (default 30)")
    parser.add_argument("--isolation-wait", type=float, default=300.0, metavar="SECONDS",
                        help="when no neighbour can deliver a round (all silent or behind), hold it "
                             "this long for them before training one round alone (default 300)")
    learn = parser.add_argument_group("learning (the defaults are those of medswarm simulate)")
    learn.add_argument("--gossip-steps", type=int, default=3, help="exchanges with neighbours per round (default 3)")
    learn.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    learn.add_argument("--batch-size", type=int, default=16, help="batch size (default 16)")
    learn.add_argument("--optimizer", default="sgd", help="sgd | adam (default sgd)")
    learn.add_argument("--converge-window", type=int, default=8,
                       help="rounds the validation loss must plateau before this peer votes (default 8)")
    learn.add_argument("--metric-tol", type=float, default=0.02,
                       help="smallest validation-loss improvement that counts (default 0.02)")
    learn.add_argument("--distance-tol", type=float, default=0.1,
                       help="largest relative distance to the neighbours' average when voting (default 0.1)")
    learn.add_argument("--no-converge", action="store_true", help="run all --rounds, never stop early")
    learn.add_argument("--eval-global", action="store_true",
                       help="demos: evaluate on the split's held-out global test set every round and "
                            "append a row to STATE_DIR/metrics.jsonl (what medswarm launch collects)")
    parser.add_argument("--status-port", type=_port, default=None, metavar="PORT",
                        help="serve GET /status (JSON) and /metrics (Prometheus) on this port; 0 = any free")
    parser.add_argument("--status-host", default="127.0.0.1", help="address of the status server")
