"""The options of ``medswarm simulate``: all of them are ``swarm``'s typed configs."""

from __future__ import annotations

import argparse

from swarm.config import LearningConfig, OutputConfig, SimSetup, TimingConfig
from swarm.faults import FaultConfig
from swarm.options import add_arguments as add_config_arguments

#: the output options simulate has
SIMULATE_OUTPUT = ("out", "state_dir", "quiet", "eval_every", "eval_peers")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``medswarm simulate`` (``swarm.simulate.SimConfig.from_args`` reads them)."""
    add_config_arguments(parser, SimSetup)
    add_config_arguments(parser, LearningConfig)
    add_config_arguments(parser, FaultConfig, title="faults (virtual clock; one local epoch = --train-time seconds)")
    add_config_arguments(parser, TimingConfig, title="protocol timing (virtual seconds, as a real peer's)")
    add_config_arguments(parser, OutputConfig, only=SIMULATE_OUTPUT)
