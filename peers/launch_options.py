"""The options of ``medswarm launch`` that are its own (the rest are ``swarm.config``'s).

Its peers take the learning and protocol-timing options under the same names as
``medswarm simulate`` and ``medswarm peer`` (``swarm.config.LAUNCH_TIMING`` holds the
shorter timings a swarm on one host gets by default) and forwards them to every peer.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from swarm.config import DEFAULT_TOPOLOGY, LAUNCH_OUTPUT, LAUNCH_TIMING, LearningConfig, OutputConfig, TimingConfig
from swarm.options import add_arguments as add_config_arguments
from swarm.options import option, positive

#: peer processes when ``--peers`` is not given and the data has no natural sites
DEFAULT_LAUNCH_PEERS = 4
#: the output options launch has
LAUNCH_OUTPUT_OPTIONS = ("out", "quiet")


@dataclass(frozen=True)
class LaunchSetup:
    """How many peer processes, how they dial each other, how long to wait for them."""

    peers: int | None = option(None, f"number of peer processes (default {DEFAULT_LAUNCH_PEERS}; with "
                                     "--partition sites, the data's own sites)", type=int)
    topology: str = option(DEFAULT_TOPOLOGY, "ring | chain | full | onepeer-exp: who dials whom (onepeer-exp: the "
                                   "one-peer exponential graph's partners, one exchanged with per step)")
    start_timeout: float = option(60.0, "how long a peer may take to listen, s")
    timeout: float = option(1800.0, "give up after this many seconds")

    def __post_init__(self) -> None:
        # --peers and --topology are checked by peers.launch.run_launch
        positive("start_timeout", self.start_timeout)
        positive("timeout", self.timeout)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medswarm launch``."""
    add_config_arguments(parser, LaunchSetup)
    add_config_arguments(parser, LearningConfig, title="learning (forwarded to every peer)")
    add_config_arguments(parser, TimingConfig, title="protocol timing, s (forwarded to every peer)",
                         defaults=LAUNCH_TIMING)
    add_config_arguments(parser, OutputConfig, only=LAUNCH_OUTPUT_OPTIONS, defaults=LAUNCH_OUTPUT)
