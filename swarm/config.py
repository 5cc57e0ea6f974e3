"""The typed configs of ``medswarm simulate``, ``peer`` and ``launch``, declared once.

One frozen dataclass per concern; every field is a command-line option (``swarm.options``):

- :class:`LearningConfig`: data, split, rounds, local training, gossip, convergence vote;
- :class:`TimingConfig`: the protocol's timing in seconds (virtual seconds in the
  simulation, where one local epoch takes ``--train-time`` seconds);
- :class:`OutputConfig`: where results go and what is evaluated;
- :class:`SimSetup`: the simulated swarm's shape (peers, topology, arms, scanner shift);
- faults: ``swarm.faults.FaultConfig``; the real peer's network: ``peers.peer_options``.

:func:`protocol_config` is the one place that turns (learning, timing) into the
``ProtocolConfig`` both a simulated and a real peer run. Nothing heavy is imported here,
so building the command line stays instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarm.errors import ConfigError, TopologyError
from swarm.options import option, positive

if TYPE_CHECKING:
    from swarm.choco import Choco
    from swarm.convergence import ConvergenceConfig
    from swarm.task import DataRequest
    from swarm.privacy import PrivacyConfig
    from swarm.protocol import ProtocolConfig
    from swarm.robust import Aggregation
    from swarm.training import TrainConfig

ARMS = ("swarm", "fedavg", "local", "central", "cwt")
#: simulated hospitals when ``--peers`` is not given (and the split is not the data's own sites)
DEFAULT_PEERS = 8
#: ``--topology`` of ``simulate`` and ``launch``: the one-peer exponential graph; with 8-bit
#: models and one final-agreement round (the ``LearningConfig`` defaults) it is the
#: configuration that meets issue 14's target (README, *Efficiency*)
DEFAULT_TOPOLOGY = "onepeer-exp"
#: ``--model`` names: ``auto`` is the small CNN for images and the MLP for feature vectors
MODEL_NAMES = ("auto", "small-cnn", "mlp", "densenet121", "resnet18", "efficientnet-b0")
#: ``--norm`` names: ``group`` replaces every batch norm with group norm
NORM_NAMES = ("batch", "group")

#: ``medswarm launch`` runs all its peers on one host: shorter timings than between hospitals
LAUNCH_TIMING = {"heartbeat": 1.0, "suspect_after": 10.0, "deadline_max": 20.0, "linger": 2.0}
#: ``medswarm launch`` writes its results beside simulate's, not over them
LAUNCH_OUTPUT = {"out": Path("runs/launch")}


#: ``--min-cosine`` without DP: honest models of a swarm point alike (cosine above 0.86)
MIN_COSINE = 0.5
#: ``--min-cosine`` with ``--dp-epsilon``: a sign test (see :func:`default_min_cosine`)
MIN_COSINE_DP = 0.0

#: how a peer's weights travel (``--compress``; ``topk:F`` too, with ``--choco``)
COMPRESSIONS = ("none", "q8")


def default_partition(data: str) -> str:
    """The split used when none is given: the natural sites of ``heart``, else label skew."""
    return "sites" if data == "heart" else "dirichlet:0.5"


def default_min_cosine(dp_epsilon: float | None) -> float:
    """``--min-cosine`` when not given: :data:`MIN_COSINE`, or :data:`MIN_COSINE_DP` under DP.

    DP-SGD adds independent isotropic noise at every hospital; in the model's many dimensions
    two noises are nearly orthogonal, so two honest private models have a cosine of about
    ``|c|^2 / sqrt((|c|^2 + |n_i|^2)(|c|^2 + |n_j|^2))`` (``c`` their common part): small but
    positive, whatever the noise (0.004 to 0.05 on PneumoniaMNIST at epsilon 1, batch 16, where
    every honest model failed 0.5). A sign-flipped model has the opposite cosine, so 0 is the
    one bound that refuses it and no honest model at every noise level.
    """
    private = dp_epsilon is not None and math.isfinite(dp_epsilon)
    return MIN_COSINE_DP if private else MIN_COSINE


def _at_least_one(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(name, f"must be >= 1, got {value}")


def _split_arms(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``--window C,W`` as (centre, width) with width > 0; ``None`` stays ``None``.

    Raises
    ------
    ConfigError
        (field ``window``) if it is not two numbers or the width is not positive.
    """
    if text is None:
        return None
    try:
        centre, width = (float(part) for part in text.split(","))
    except ValueError:
        raise ConfigError("window", f"expected CENTRE,WIDTH (two numbers), got {text!r}") from None
    if not width > 0:
        raise ConfigError("window", f"width must be > 0, got {width:g}")
    return centre, width


@dataclass(frozen=True)
class LearningConfig:
    """What every peer of a swarm must agree on to learn together (the consortium's settings)."""

    data: str = option("breastmnist", "breastmnist | pneumoniamnist | heart (shipped) | PATH.npz | PATH.csv "
                                      "(image folder labels, or a table with --label-column)")
    task: str | None = option(None, "your own task, module:attr or path/to/file.py:attr (swarm.task): "
                                    "data, model and training", metavar="TASK")
    model: str = option("auto", "auto | small-cnn | mlp | densenet121 | resnet18 | efficientnet-b0 "
                                "(auto: small-cnn for images, mlp for tables)")
    norm: str = option("batch", "batch | group: group replaces every batch norm with group norm")
    label_column: str | None = option(None, "the target column of a tabular CSV (--data PATH.csv)",
                                      metavar="NAME")
    image_size: int | None = option(None, "resize CSV images to N x N (default: the first image's size)",
                                    type=int, metavar="N")
    channels: int | None = option(None, "1 | 3: CSV image channels (default: follow the files)", type=int)
    window: str | None = option(None, "DICOM window CENTRE,WIDTH (default: the file's own)", metavar="C,W")
    partition: str | None = option(None, "iid | dirichlet:ALPHA | quantity:ALPHA | sites "
                                         "(default dirichlet:0.5; sites for heart)")
    rounds: int = option(30, "maximum rounds")
    local_epochs: int = option(1, "local epochs per round")
    gossip_steps: int = option(3, "exchanges with neighbours per round")
    lr: float = option(0.05, "learning rate")
    batch_size: int = option(16, "batch size")
    optimizer: str = option("sgd", "sgd | adam")
    seed: int = option(0, "seed for split, initial weights and training, shared by the swarm")
    float16: bool = option(False, "send float32 weights as float16 (half the bytes)")
    compress: str = option("q8", "none | q8 | topk:F: send float32 weights as 8-bit values with a scale "
                                   "per tensor (a quarter of the bytes); with --choco, the difference to the "
                                   "public copy as 8-bit values (q8) or its largest fraction F (topk:F)")
    choco: bool = option(False, "CHOCO-gossip: send the compressed difference to a public copy that "
                                "neighbours hold, with error feedback (needs --compress q8 or topk:F)")
    choco_gamma: float = option(1.0, "CHOCO's consensus step size in (0, 1]: how far a mix moves the model "
                                     "towards the mix of the public copies")
    uniform_mixing: bool = option(False, "plain Metropolis weights (uniform mean) instead of sample-aware ones")
    aggregator: str = option("clipped", "mean | clipped | trimmed | median: how a peer combines its "
                                        "neighbours' models (all but mean bound one neighbour's influence)")
    clip_factor: float = option(3.0, "clipped: the clipping radius in lower-median neighbour distances (the "
                                     "norm and direction checks refuse gross attacks before it)")
    max_norm_ratio: float = option(2.0, "refuse a neighbour's model whose norm is more than this many times "
                                        "this peer's own, or less than its inverse (honest models of a swarm "
                                        "stay within a few percent of each other)")
    min_cosine: float | None = option(None, "refuse a neighbour's model whose cosine with this peer's own is "
                                            "below this; default 0.5, and 0 with --dp-epsilon (a sign test: "
                                            "DP noise leaves honest models nearly orthogonal but never opposed; "
                                            "a sign-flipped one has the opposite cosine); -1 turns the check off",
                                      type=float, metavar="COS")
    corroboration: int = option(2, "distinct members, this peer included, whose signed progress must reach a "
                                   "round before a peer catches up to it or trusts a stop there (F+1 "
                                   "tolerates F colluding members)")
    final_agreement: int = option(1, "rounds of pure averaging (no training) after the stop round, so every "
                                     "peer leaves with nearly the swarm's average model; 0 = none")
    final_tolerance: float = option(0.0, "with --final-agreement R: a peer skips its remaining exchanges once "
                                         "its own and its live neighbours' signed distances to their neighbours' "
                                         "averages are at most this (all still stop after the same round, R being "
                                         "the cap); 0 = off")
    converge: bool = option(True, "run all --rounds, never stop early", flag="--no-converge")
    converge_window: int = option(8, "rounds the validation loss must plateau before a peer votes")
    metric_tol: float = option(0.02, "smallest validation-loss improvement that counts")
    distance_tol: float = option(0.1, "largest relative distance to the neighbours' average when voting")
    dp_epsilon: float | None = option(None, "train with DP-SGD within this total privacy budget per hospital "
                                            "for the run (needs medswarm[dp]; inf = no privacy)", type=float, metavar="EPS")
    dp_delta: float | None = option(None, "DP delta (default 1 / (10 x the hospital's training records))",
                                    type=float, metavar="D")
    dp_max_grad_norm: float = option(1.0, "DP-SGD: clip each record's gradient to this norm")
    dp_noise: float | None = option(None, "DP-SGD noise multiplier (default: the smallest that fits --rounds "
                                          "into --dp-epsilon)", type=float, metavar="SIGMA")
    dp_accountant: str = option("prv", "prv | rdp: the privacy accountant")

    def __post_init__(self) -> None:
        from swarm.partition import parse_partition

        if self.partition is None:
            object.__setattr__(self, "partition", default_partition(self.data))
        parse_partition(self.partition)
        _at_least_one(rounds=self.rounds, local_epochs=self.local_epochs, gossip_steps=self.gossip_steps,
                      batch_size=self.batch_size, converge_window=self.converge_window,
                      corroboration=self.corroboration)
        positive("lr", self.lr)
        positive("final_agreement", self.final_agreement, strict=False)
        positive("final_tolerance", self.final_tolerance, strict=False)
        positive("metric_tol", self.metric_tol, strict=False)
        positive("distance_tol", self.distance_tol, strict=False)
        self._check_compress()
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError("optimizer", f"expected sgd or adam, got {self.optimizer!r}")
        if not (math.isfinite(self.max_norm_ratio) and self.max_norm_ratio > 1):
            raise ConfigError("max_norm_ratio", f"must be a finite number > 1, got {self.max_norm_ratio!r}")
        if self.min_cosine is None:
            object.__setattr__(self, "min_cosine", default_min_cosine(self.dp_epsilon))
        if not -1 <= self.min_cosine <= 1:
            raise ConfigError("min_cosine", f"must be in [-1, 1], got {self.min_cosine!r}")
        self.aggregation()  # validates --aggregator
        self.privacy()  # validates --dp-*
        self._check_data_options()
        if self.task is not None:  # a broken task fails here, before any data is loaded
            from swarm.task import load_task

            load_task(self.task)

    def _check_compress(self) -> None:
        if self.choco:
            if self.compress == "none":
                raise ConfigError("compress", "--choco needs --compress q8 or topk:F")
            self.choco_config()  # validates topk:F
            if not 0 < self.choco_gamma <= 1:
                raise ConfigError("choco_gamma", f"must be in (0, 1], got {self.choco_gamma!r}")
        elif self.compress not in COMPRESSIONS:
            hint = " (topk:F needs --choco)" if self.compress.startswith("topk:") else ""
            raise ConfigError("compress", f"expected one of {', '.join(COMPRESSIONS)}, got {self.compress!r}{hint}")

    def choco_config(self) -> Choco | None:
        """The CHOCO settings every peer runs with (``swarm.choco``), None without ``--choco``."""
        if not self.choco:
            return None
        from gossip.delta import parse_compressor
        from swarm.choco import Choco

        try:
            return Choco(parse_compressor(self.compress), self.choco_gamma)
        except ValueError as err:
            raise ConfigError("compress", str(err)) from None

    def _check_data_options(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ConfigError("model", f"unknown model {self.model!r}; expected one of {', '.join(MODEL_NAMES)}")
        if self.norm not in NORM_NAMES:
            raise ConfigError("norm", f"expected batch or group, got {self.norm!r}")
        if self.image_size is not None and self.image_size < 4:
            raise ConfigError("image_size", f"must be >= 4, got {self.image_size}")
        if self.channels not in (None, 1, 3):
            raise ConfigError("channels", f"expected 1 or 3, got {self.channels}")
        parse_window(self.window)

    def data_request(self, n_sites: int | None, site_shift: float = 0.0) -> DataRequest:
        """What the task's ``load`` is asked for: this config's data options and ``n_sites``."""
        from swarm.task import DataRequest

        return DataRequest(data=self.data, n_sites=n_sites, partition=str(self.partition), seed=self.seed,
                           site_shift=site_shift, label_column=self.label_column, image_size=self.image_size,
                           channels=self.channels, window=parse_window(self.window))

    def aggregation(self) -> Aggregation:
        """How every peer mixes its neighbours' models (``swarm.robust``)."""
        from swarm.robust import Aggregation

        cosine = default_min_cosine(self.dp_epsilon) if self.min_cosine is None else self.min_cosine
        return Aggregation(self.aggregator, clip_factor=self.clip_factor, max_norm_ratio=self.max_norm_ratio,
                           min_cosine=None if cosine <= -1 else cosine)

    def privacy(self) -> PrivacyConfig | None:
        """Each hospital's DP settings (``swarm.privacy``), or None without ``--dp-epsilon``.

        Raises
        ------
        ConfigError
            For a bad ``--dp-*`` value, a ``--dp-*`` option without ``--dp-epsilon``, or
            ``--dp-epsilon`` without Opacus installed (naming the ``dp`` extra).
        """
        from swarm.privacy import PrivacyConfig

        if self.dp_epsilon is None or self.dp_epsilon == math.inf:
            for name in ("dp_delta", "dp_noise"):
                if getattr(self, name) is not None:
                    raise ConfigError(name, "applies with --dp-epsilon only")
            return None
        return PrivacyConfig(self.dp_epsilon, self.dp_delta, self.dp_max_grad_norm, self.dp_noise,
                             self.dp_accountant)

    @property
    def q8(self) -> bool:
        """Whether whole models travel as 8-bit values (``--compress q8``, the default, without
        ``--choco``; ``--float16`` asks for float16 instead)."""
        return self.compress == "q8" and not self.choco and not self.float16

    @property
    def sample_weighted(self) -> bool:
        """Whether mixing weights follow sample counts (converging to FedAvg's mean)."""
        return not self.uniform_mixing

    def train_config(self) -> TrainConfig:
        """The local training settings of one round."""
        from swarm.training import TrainConfig

        return TrainConfig(local_epochs=self.local_epochs, batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer)

    def convergence_config(self) -> ConvergenceConfig:
        """When a peer votes converged (never, with ``converge=False``: it runs all rounds)."""
        from swarm.convergence import ConvergenceConfig

        return ConvergenceConfig.for_run(self.converge_window, self.metric_tol, self.distance_tol,
                                         self.rounds, self.converge)


@dataclass(frozen=True)
class TimingConfig:
    """The protocol's timing, in seconds, the same for a simulated and a real peer."""

    quorum: float = option(1.0, "share of live neighbours whose model a peer waits for")
    heartbeat: float = option(7.5, "seconds between progress records")
    suspect_after: float = option(30.0, "seconds of silence before a neighbour is suspected")
    deadline_min: float = option(1.25, "shortest adaptive wait for neighbours' models per phase, s; also "
                                      "the shortest retry interval")
    deadline_initial: float = option(5.0, "wait per phase until arrival delays were observed, s "
                                          "(at most --deadline-max)")
    deadline_max: float = option(50.0, "longest wait for neighbours' models per phase, s; also how long "
                                        "a real peer waits for --wait-neighbours")
    spread_factor: float = option(5.0, "adaptive deadline = median + this x scaled MAD of the arrival delays")
    fetch_timeout: float = option(10.0, "longest try of one model transfer, s (at most --deadline-max), "
                                        "unless the model needs longer at --min-throughput")
    min_throughput: float = option(2.0, "slowest link a model transfer is allowed for, MB/s: a fetch try "
                                        "lasts at least the model's size at this rate (at most --deadline-max)",
                                   metavar="MB_PER_S")
    linger: float = option(15.0, "after stopping, how long to wait for a neighbour that has not reached the "
                                 "stop round (to give it the final model); with none missing, a peer "
                                 "leaves after two heartbeats")
    fanout: int = option(5, "neighbours a peer sends its progress record, summary and pushed records to per "
                            "heartbeat, in rotation (all of them when it has fewer); model announcements "
                            "still go to every neighbour", metavar="K")
    isolation_wait: float = option(150.0, "when no neighbour can deliver a round (all silent or behind), "
                                          "hold it this long for them before training one round alone",
                                   metavar="SECONDS")

    def __post_init__(self) -> None:
        if not 0 < self.quorum <= 1:
            raise ConfigError("quorum", f"must be in (0, 1], got {self.quorum}")
        for name in ("heartbeat", "suspect_after", "deadline_initial", "deadline_max", "fetch_timeout",
                     "min_throughput"):
            positive(name, getattr(self, name))
        for name in ("deadline_min", "spread_factor", "linger", "isolation_wait"):
            positive(name, getattr(self, name), strict=False)
        if self.heartbeat >= self.suspect_after:
            raise ConfigError("heartbeat", f"must be shorter than suspect_after ({self.suspect_after:g} s), "
                                           f"got {self.heartbeat:g}")
        _at_least_one(fanout=self.fanout)
        if self.deadline_min > self.deadline_max:
            raise ConfigError("deadline_min", f"must be at most deadline_max ({self.deadline_max:g} s), "
                                              f"got {self.deadline_min:g}")


def protocol_config(learning: LearningConfig, timing: TimingConfig) -> ProtocolConfig:
    """The protocol settings of one peer, simulated or real: the only place they are built.

    ``deadline_initial`` and ``fetch_timeout`` are capped at ``deadline_max`` (so that a
    short ``--deadline-max`` alone is enough).
    """
    from swarm.protocol import ProtocolConfig
    from swarm.round_counter import DeadlineConfig

    initial = min(timing.deadline_initial, timing.deadline_max)
    return ProtocolConfig(
        gossip_steps=learning.gossip_steps,
        quorum=timing.quorum,
        deadline=DeadlineConfig(minimum=min(timing.deadline_min, initial), initial=initial,
                                maximum=timing.deadline_max, spread_factor=timing.spread_factor),
        suspect_after=timing.suspect_after,
        heartbeat=timing.heartbeat,
        fetch_timeout=min(timing.fetch_timeout, timing.deadline_max),
        min_throughput=timing.min_throughput * 1e6,
        linger=timing.linger,
        isolation_wait=timing.isolation_wait,
        fanout=timing.fanout,
        convergence=learning.convergence_config(),
        corroboration=learning.corroboration,
        final_rounds=learning.final_agreement,
        final_tolerance=learning.final_tolerance,
    )


@dataclass(frozen=True)
class OutputConfig:
    """Where a command writes its results and how often it evaluates (each command uses some)."""

    out: Path = option(Path("runs/simulate"), "output directory")
    state_dir: Path | None = option(None, "checkpoints; a restart resumes from them "
                                          "(simulate: every swarm peer's, in memory if not given)", type=Path)
    report: Path | None = option(None, "final JSON report (default STATE_DIR/report.json)", type=Path)
    quiet: bool = option(False, "no progress bar or live table")
    eval_every: int = option(1, "evaluate every N rounds (and the last)")
    eval_peers: int | None = option(None, "simulate: score K peers on the global test set per evaluated round "
                                          "(a seeded sample rotating over the peers), every peer in the last "
                                          "round (default: every peer every time)", type=int, metavar="K")
    eval_global: bool = option(False, "demos: evaluate on the split's held-out global test set every round "
                                      "and append a row to STATE_DIR/metrics.jsonl (what medswarm launch "
                                      "collects)")

    def __post_init__(self) -> None:
        _at_least_one(eval_every=self.eval_every)
        if self.eval_peers is not None:
            _at_least_one(eval_peers=self.eval_peers)


@dataclass(frozen=True)
class SimSetup:
    """The simulated swarm: how many peers, how they are linked, which arms run."""

    peers: int | None = option(None, f"number of simulated hospitals (default {DEFAULT_PEERS}; with "
                                     "--partition sites, the data's own sites)", type=int)
    topology: str = option(DEFAULT_TOPOLOGY, "ring | full | kregular[:K] | smallworld[:K[:P]] | exponential | "
                                             "onepeer-exp")
    site_shift: float = option(0.0, "per-site scanner shift strength for images, 0 = none")
    arms: tuple[str, ...] = option(ARMS, "comma-separated arms", type=str, parse=_split_arms)
    ray: str | None = option(None, "run the peers' training as Ray tasks (pip install 'medswarm[ray]'): "
                                   "--ray alone starts Ray on this host; --ray ADDRESS joins a cluster "
                                   "(auto, HOST:6379 or ray://HOST:10001); same results as without",
                             metavar="ADDRESS", const="local")

    def __post_init__(self) -> None:
        from swarm.topology import parse_topology

        if self.peers is not None:
            _at_least_one(peers=self.peers)
        positive("site_shift", self.site_shift, strict=False)
        if not self.arms:
            raise ConfigError("arms", "name at least one arm")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ConfigError("arms", f"unknown {unknown}; expected some of {', '.join(ARMS)}")
        if self.ray is not None and not self.ray.strip():
            raise ConfigError("ray", "give a cluster address, or --ray alone for a local Ray")
        try:
            parse_topology(self.topology)
        except TopologyError as err:
            raise ConfigError("topology", str(err)) from None
