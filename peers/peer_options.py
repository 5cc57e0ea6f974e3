"""The options of ``medswarm peer`` (kept free of heavy imports so ``--help`` is instant).

Only the network options are declared here (:class:`NetworkConfig`: only the process uses
them); learning, protocol timing and output are ``swarm.config``'s, shared with
``medswarm simulate`` and ``medswarm launch``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from swarm.config import LearningConfig, OutputConfig, TimingConfig
from swarm.options import add_arguments as add_config_arguments
from swarm.options import option

#: the output options a peer has (the others are simulate's and launch's)
PEER_OUTPUT = ("state_dir", "report", "eval_global")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0-65535, got {value}")
    return value


@dataclass(frozen=True)
class NetworkConfig:
    """Who this peer is, whom it trusts, where it listens and how it finds neighbours."""

    key: Path = option(None, "identity key file (medswarm keygen)", type=Path, required=True)
    consortium: Path | None = option(None, "TOML allow-list of member peer IDs ([[member]] name=..., "
                                           "peer_id=...)", type=Path)
    network_key: Path | None = option(None, "pre-shared network key file (medswarm keygen --network-key): "
                                            "only hosts holding it can even handshake; medswarm peers only",
                                      type=Path)
    insecure_open_swarm: bool = option(False, "accept any peer (no allow-list): for experiments only")
    site: int = option(None, "this hospital's site index in the split", type=int, required=True)
    sites: int = option(None, "number of sites in the split", type=int, required=True)
    listen: str = option("/ip4/127.0.0.1/tcp/0", "multiaddr to listen on")
    bootstrap: tuple[str, ...] = option((), "full /ip4/.../tcp/.../p2p/<id> address of a member (repeatable)",
                                        metavar="MULTIADDR", repeat=True)
    announce: tuple[str, ...] = option((), "address others should dial this peer at, "
                                           "/ip4|dns4/<host>/tcp/<port> (repeatable; default: the listen "
                                           "address, 0.0.0.0 replaced by the interfaces' addresses)",
                                       metavar="MULTIADDR", repeat=True)
    target_neighbours: int = option(4, "members to keep linked, found by peer exchange; lost ones are "
                                       "redialled with backoff", metavar="N")
    wait_neighbours: int = option(1, "before round 0, wait (up to --deadline-max) for N neighbours, so "
                                     "peers started together train together", metavar="N")
    status_port: int | None = option(None, "serve GET /status (JSON) and /metrics (Prometheus) on this "
                                           "port; 0 = any free", type=_port, metavar="PORT")
    status_host: str = option("127.0.0.1", "address of the status server")
    onepeer_exp: str = option("auto", "auto | on | off: exchange with one partner per step, at distance 2^k in "
                                      "the consortium's member order (the one-peer exponential graph; the "
                                      "partners are dialled). auto: when the consortium lists the --sites "
                                      "peers with this one at --site, else every discovered neighbour; on "
                                      "(the flag alone): that or an error; off: every discovered neighbour",
                              const="on", metavar="MODE")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medswarm peer`` (any of them can also come from ``--config``)."""
    parser.add_argument("--config", type=Path, default=None, metavar="PEER.TOML",
                        help="TOML file of options (keys: long option names; the command line wins)")
    add_config_arguments(parser, NetworkConfig)
    add_config_arguments(parser, OutputConfig, only=PEER_OUTPUT, required=("state_dir",))
    add_config_arguments(parser, LearningConfig, title="learning (the defaults are those of medswarm simulate)")
    add_config_arguments(parser, TimingConfig, title="protocol timing (seconds)")
