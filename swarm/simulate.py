"""Many peers on one host: the swarm and its reference arms on the same splits and seeds.

Arms
----
``swarm``   every site runs the leader-free ``PeerProtocol`` on a virtual clock
            (``swarm.virtual_swarm``): train, announce, fetch from neighbours, check the
            digest, decode, validate, mix; with the faults of ``SimConfig.faults``. No server.
``fedavg``  the classical server: sites train from the global model, the server takes the
            sample-weighted average of their encoded updates (the reference).
``local``   each site trains alone.
``central`` all sites' training data pooled into one model (the upper reference).
``cwt``     cyclical weight transfer: one model visits the sites in ring order each round.

Every arm starts from the same seeded weights and uses the same per-site, per-round
training seeds, so arms are paired and a run is reproducible. Hostile members
(``--attack``, ``swarm.attacks``) take part in the swarm arm only, and are left out of its
figures (``swarm.attack_report``).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from gossip.codec import WeightsMessage, decode, encode
from swarm.attack_report import attack_summary
from swarm.averaging import Contribution, weighted_average
from swarm.config import ARMS, DEFAULT_PEERS, LearningConfig, OutputConfig, SimSetup, TimingConfig, protocol_config  # noqa: F401
from swarm.errors import ConfigError
from swarm.eval_sample import EvalSample
from swarm.faults import FaultConfig
from swarm.metrics import finite_or_none
from swarm.options import from_args
from swarm.partition import Federation, parse_partition
from swarm.privacy import PrivacyLedger, PrivateTraining, plan
from swarm.task import prepare, resolve_task
from swarm.protocol import ProtocolConfig
from swarm.topology import build_topology, parse_topology
from swarm.train_pool import LocalPool, TrainJob, TrainPool, make_pool
from swarm.training import Metrics, TrainConfig, Trainer
from swarm.virtual_swarm import VirtualSwarm
from swarm.arm_results import ArmResult, metrics_row
from swarm.weights import weights_digest

#: the pseudo site index that seeds the pooled (central) model
CENTRAL_SITE = 1_000_000

#: called as progress(arm, round_done, rounds_total)
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulation run, one typed config per concern; validated."""

    setup: SimSetup = field(default_factory=SimSetup)
    learning: LearningConfig = field(default_factory=LearningConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    faults: FaultConfig = field(default_factory=FaultConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        n_sites = self.requested_sites()
        if n_sites is not None:  # otherwise checked once the data's sites are known (Simulation)
            self.faults.validate_for(n_sites)
        self.train_config()
        self.protocol_config()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SimConfig:
        """The config of ``medswarm simulate``'s parsed options (raises ConfigError)."""
        return cls(
            setup=from_args(SimSetup, args),
            learning=from_args(LearningConfig, args),
            timing=from_args(TimingConfig, args),
            faults=from_args(FaultConfig, args, jitter=min(args.jitter, args.delay)),
            output=from_args(OutputConfig, args),
        )

    def requested_sites(self) -> int | None:
        """``--peers``; if not given, :data:`DEFAULT_PEERS`, or ``None`` (the data's own sites)
        with ``--partition sites``."""
        if self.setup.peers is not None:
            return self.setup.peers
        return None if parse_partition(str(self.learning.partition)).kind == "sites" else DEFAULT_PEERS

    def protocol_config(self) -> ProtocolConfig:
        """The protocol settings every simulated peer runs (virtual seconds; as a real peer's)."""
        return protocol_config(self.learning, self.timing)

    def train_config(self) -> TrainConfig:
        """The per-round local training settings of this run."""
        return self.learning.train_config()


def train_seed(seed: int, site: int, round_: int) -> int:
    """The training seed of one site in one round, shared by every arm (paired arms)."""
    return int(np.random.SeedSequence([seed, site, round_]).generate_state(1)[0])


class Simulation:
    """Runs the configured arms on one federation built from the config."""

    def __init__(self, config: SimConfig, federation: Federation | None = None,
                 state_dir: Path | None = None) -> None:
        self.config = config
        self.state_dir = state_dir
        learning = config.learning
        if federation is None:
            prepared = prepare(learning, config.requested_sites(), site_shift=config.setup.site_shift)
            self.federation, self.trainer, self.initial = prepared.federation, prepared.trainer, prepared.initial
        else:
            self.federation = federation
            self.trainer = Trainer(federation.input_shape, federation.num_classes, config.train_config(),
                                   task=resolve_task(learning), arch=learning.model, norm=learning.norm)
            self.initial = self.trainer.initial_weights(learning.seed)
        self.n = len(self.federation.sites)
        config.faults.validate_for(self.n)
        name, params = parse_topology(config.setup.topology)
        self.topology = build_topology(name, self.n, seed=learning.seed, **params)
        #: the peers scored per evaluated round (``--eval-peers``), the same in every arm
        self.sample = EvalSample(self.n, config.output.eval_peers, learning.seed, config.output.eval_every)
        #: where trainings run (``--ray``); None while no arm runs, inline without Ray
        self.pool: TrainPool | None = None
        self.training: dict = {}

    def run(self, progress: ProgressFn | None = None) -> list[ArmResult]:
        """Run every configured arm in order and return their results."""
        runners = {
            "swarm": self.run_swarm,
            "fedavg": self.run_fedavg,
            "local": self.run_local,
            "central": self.run_central,
            "cwt": self.run_cwt,
        }
        if self.config.setup.ray is not None and self.config.learning.privacy() is not None:
            raise ConfigError("ray", "--ray with --dp-epsilon is not supported: each hospital's privacy ledger "
                                     "lives in this process")
        self.pool = make_pool(self.config.setup.ray, self.trainer, [s.train for s in self.federation.sites])
        try:
            results = [runners[arm](progress) for arm in self.config.setup.arms]
            #: where this run's trainings ran (``--ray``: the cluster and trainings per node)
            self.training = self.pool.describe() if self.pool is not None else {"backend": "local"}
        finally:
            if self.pool is not None:
                self.pool.close()
            self.pool = None
        if self.sample.sampled:
            for res in results:
                res.extra["evaluated_peers"] = self.sample.report(res.rows)
        return results

    # -- helpers -----------------------------------------------------------------
    def _eval(self, weights: dict[str, np.ndarray], site: int | None) -> tuple[Metrics, Metrics | None]:
        glob = self.trainer.evaluate(weights, self.federation.global_test)
        loc = self.trainer.evaluate(weights, self.federation.sites[site].test) if site is not None else None
        return glob, loc

    def _train_fns(self, arm: str, datasets: list | None = None) -> list[Callable]:
        """Each site's training callable in ``arm``; under DP a private one with its own ledger
        (a fresh one per arm; the secret key is seeded here, so arms stay paired)."""
        learning = self.config.learning
        privacy = learning.privacy()
        datasets = datasets if datasets is not None else [site.train for site in self.federation.sites]
        if privacy is None:
            return [self.trainer.train] * len(datasets)
        fns = []
        for i, data in enumerate(datasets):
            dp = plan(privacy, len(data), learning.batch_size, learning.local_epochs, learning.rounds)
            key = np.random.SeedSequence([learning.seed, i, 0xD9]).generate_state(4).tobytes()
            fns.append(PrivateTraining(self.trainer, PrivacyLedger(dp, key=key), peer=f"{arm}-{i}",
                                       track=False))
        return fns

    @staticmethod
    def _privacy(result: ArmResult, fns: list[Callable]) -> None:
        """Under DP: the arm's budget and delta (the largest of its sites'), each site's spend."""
        private = [fn for fn in fns if isinstance(fn, PrivateTraining)]
        if not private:
            return
        result.extra["dp_epsilon_budget"] = private[0].ledger.plan.epsilon
        result.extra["dp_delta"] = max(fn.ledger.plan.delta for fn in private)
        for entry, fn in zip(result.per_site, fns * (len(result.per_site) if len(fns) == 1 else 1)):
            entry.update({k: v for k, v in fn.summary().items() if k != "dp_epsilon_budget"})

    def _per_site(self, models: list[dict[str, np.ndarray]]) -> list[dict]:
        out = []
        for i, weights in enumerate(models):
            glob, loc = self._eval(weights, i)
            out.append({
                "site": i,
                "name": self.federation.sites[i].name,
                "train_samples": len(self.federation.sites[i].train),
                "accuracy": finite_or_none(glob.accuracy),
                "auroc": finite_or_none(glob.auroc),
                "local_accuracy": finite_or_none(loc.accuracy) if loc else None,
                "local_auroc": finite_or_none(loc.auroc) if loc else None,
            })
        return out

    def _scored(self, round_: int) -> list[int]:
        """The peers scored in evaluated round ``round_``: a sample (``--eval-peers``), all in the last."""
        return list(range(self.n)) if round_ == self.config.learning.rounds - 1 else self.sample.peers(round_)

    def _trainings(self, weights: list[dict[str, np.ndarray]], round_: int, fns: list[Callable]) -> list[TrainJob]:
        """Every site's training of ``round_`` from its ``weights`` with its training callable
        (``fns``), submitted at once: in parallel on Ray; without it (and always under DP, whose
        ledgers live in this process), each runs when its result is asked for."""
        private = any(isinstance(fn, PrivateTraining) for fn in fns)
        pool = self.pool if self.pool is not None and not private else LocalPool(
            fns, [s.train for s in self.federation.sites])
        seed = self.config.learning.seed
        return [pool.submit(i, w, train_seed(seed, i, round_)) for i, w in enumerate(weights)]

    def _evaluating(self, round_: int) -> bool:
        """Whether round ``round_`` is evaluated (every ``eval_every`` rounds and the last)."""
        every = self.config.output.eval_every
        return round_ % every == every - 1 or round_ == self.config.learning.rounds - 1

    @staticmethod
    def _tick(progress: ProgressFn | None, arm: str, done: int, total: int) -> None:
        if progress is not None:
            progress(arm, done, total)

    # -- arms --------------------------------------------------------------------
    def run_swarm(self, progress: ProgressFn | None = None) -> ArmResult:
        """Gossip averaging with the leader-free protocol, on a virtual clock with faults."""
        cfg, learning = self.config, self.config.learning
        fns = self._train_fns("swarm")
        swarm = VirtualSwarm(
            self.trainer, self.federation, self.topology, self.initial, cfg.protocol_config(), cfg.faults,
            seed=learning.seed, train_seed=lambda site, r: train_seed(learning.seed, site, r),
            float16=learning.float16, q8=learning.q8, sample_weighted=learning.sample_weighted, eval_every=cfg.output.eval_every,
            state_dir=self.state_dir, aggregation=learning.aggregation(),
            time_varying=cfg.setup.topology.strip().startswith("onepeer-exp"), train_fns=fns,
            pool=self.pool, scored=self.sample.includes,
            choco=learning.choco_config(),
        )
        runs = swarm.run(None if progress is None else lambda done, total: progress("swarm", done, total))
        result = ArmResult("swarm", rows=swarm.rows, attackers=tuple(sorted(swarm.attackers)))
        nodes = [p.node for p in swarm.peers]
        result.per_site = self._per_site([n.weights for n in nodes])
        live = [p for p in swarm.peers if p.alive and p.index not in swarm.attackers]
        mean_model = weighted_average([Contribution(p.node.peer_id, p.node.weights, 1.0) for p in live])
        glob, _ = self._eval(mean_model, None)
        stop_rounds = sorted({r.stop_round for r in runs if r.stop_round is not None and r.exited})
        reasons = sorted({r.stop_reason for r in runs if r.exited})
        protos = {p.index: p.proto for p in swarm.peers if p.proto is not None}
        result.extra = {
            "weights_digest": weights_digest([n.weights for n in nodes]),
            "mean_model": {"accuracy": finite_or_none(glob.accuracy), "auroc": finite_or_none(glob.auroc)},
            "rejected": sum(sum(n.stats.rejected.values()) for n in nodes),
            "rejected_by_reason": dict(sum((n.stats.rejected for n in nodes), Counter())),
            "stale": sum(n.stats.stale for n in nodes),
            "accepted": sum(n.stats.accepted for n in nodes),
            "decision": {
                "stop_rounds": stop_rounds,
                "same_round": len(stop_rounds) == 1,
                "reasons": reasons,
            },
            "virtual_time_s": swarm.now,
            "control_dropped": swarm.control_dropped,
            "transfers_dropped": swarm.transfers_dropped,
            "peers": [
                {
                    **asdict(run),
                    "phases_timed_out": protos[run.peer].stats.phases_timed_out if run.peer in protos else None,
                    "waiting_s": protos[run.peer].stats.waiting_s if run.peer in protos else None,
                    "suspicions": protos[run.peer].stats.suspicions if run.peer in protos else None,
                    "catch_ups": protos[run.peer].stats.catch_ups if run.peer in protos else None,
                    "rejected": sum(nodes[run.peer].stats.rejected.values()),
                    "attacker": run.peer in swarm.attackers,
                }
                for run in runs
            ],
        }
        finished = [r for r in runs if r.exited and r.finish_time is not None and r.last_round >= 0]
        if swarm.attackers:
            result.extra["attacks"] = attack_summary(swarm, result.per_site)
        result.extra["sim_time_per_round_s"] = (
            float(np.mean([r.finish_time / (r.last_round + 1) for r in finished])) if finished else None
        )
        self._privacy(result, fns)
        result.timings = {
            "train_s": sum(n.stats.train_s for n in nodes) + 0.0,
            "codec_s": sum(n.stats.codec_s for n in nodes),
            "averaging_s": sum(n.stats.averaging_s for n in nodes),
            "eval_s": swarm.eval_s,
        }
        return result

    def run_fedavg(self, progress: ProgressFn | None = None) -> ArmResult:
        """Server-based FedAvg: sample-weighted mean of the sites' encoded updates."""
        cfg = self.config.learning
        result = ArmResult("fedavg")
        fns = self._train_fns("fedavg")
        global_w = dict(self.initial)
        sent = [0] * self.n
        train_s = other_s = 0.0
        for r in range(cfg.rounds):
            contributions, losses = [], []
            for i, job in enumerate(self._trainings([global_w] * self.n, r, fns)):
                res = job.result()
                train_s += job.seconds
                mid = time.perf_counter()
                payload = encode(WeightsMessage(self.trainer.model_id, r, f"site-{i}", res.samples, res.weights),
                                 float16=cfg.float16)
                sent[i] += len(payload)
                msg = decode(payload)
                contributions.append(Contribution(msg.sender, msg.tensors, float(msg.sample_count)))
                losses.append(res.loss)
                other_s += time.perf_counter() - mid
            start = time.perf_counter()
            global_w = weighted_average(contributions)
            other_s += time.perf_counter() - start
            if self._evaluating(r):
                glob, _ = self._eval(global_w, None)
                for i in self._scored(r):
                    _, loc = self._eval(global_w, i)
                    result.rows.append(metrics_row("fedavg", r, i, losses[i], glob, loc, 0.0, sent[i]))
            self._tick(progress, "fedavg", r + 1, cfg.rounds)
        result.per_site = self._per_site([global_w] * self.n)
        self._privacy(result, fns)
        result.timings = {"train_s": train_s, "codec_and_averaging_s": other_s}
        return result

    def run_local(self, progress: ProgressFn | None = None) -> ArmResult:
        """Each site alone: no exchange at all."""
        cfg = self.config.learning
        result = ArmResult("local")
        fns = self._train_fns("local")
        models = [dict(self.initial) for _ in range(self.n)]
        train_s = 0.0
        for r in range(cfg.rounds):
            scored = set(self._scored(r)) if self._evaluating(r) else set()
            for i, job in enumerate(self._trainings(models, r, fns)):
                res = job.result()
                train_s += job.seconds
                models[i] = res.weights
                if i in scored:
                    glob, loc = self._eval(models[i], i)
                    result.rows.append(metrics_row("local", r, i, res.loss, glob, loc, None, 0))
            self._tick(progress, "local", r + 1, cfg.rounds)
        result.per_site = self._per_site(models)
        self._privacy(result, fns)
        result.timings = {"train_s": train_s}
        return result

    def run_central(self, progress: ProgressFn | None = None) -> ArmResult:
        """All training data pooled in one place: the upper reference (peer 0 holds it)."""
        cfg, fed = self.config.learning, self.federation
        result = ArmResult("central")
        fns = self._train_fns("central", [fed.central_train])
        weights = dict(self.initial)
        for r in range(cfg.rounds):
            res = fns[0](weights, fed.central_train, train_seed(cfg.seed, CENTRAL_SITE, r))
            weights = res.weights
            if self._evaluating(r):
                glob, _ = self._eval(weights, None)
                result.rows.append(metrics_row("central", r, 0, res.loss, glob, None, None, 0))
            self._tick(progress, "central", r + 1, cfg.rounds)
        result.per_site = self._per_site([weights] * self.n)
        self._privacy(result, fns)
        return result

    def run_cwt(self, progress: ProgressFn | None = None) -> ArmResult:
        """Cyclical weight transfer: one model trains at each site in turn, every round."""
        cfg, fed = self.config.learning, self.federation
        result = ArmResult("cwt")
        fns = self._train_fns("cwt")
        weights = dict(self.initial)
        sent = [0] * self.n
        for r in range(cfg.rounds):
            losses = []
            for i, site in enumerate(fed.sites):
                res = fns[i](weights, site.train, train_seed(cfg.seed, i, r))
                payload = encode(WeightsMessage(self.trainer.model_id, r, f"site-{i}", res.samples, res.weights),
                                 float16=cfg.float16)
                sent[i] += len(payload)
                weights = dict(decode(payload).tensors)
                losses.append(res.loss)
            if self._evaluating(r):
                glob, _ = self._eval(weights, None)
                for i in self._scored(r):
                    _, loc = self._eval(weights, i)
                    result.rows.append(metrics_row("cwt", r, i, losses[i], glob, loc, None, sent[i]))
            self._tick(progress, "cwt", r + 1, cfg.rounds)
        result.per_site = self._per_site([weights] * self.n)
        self._privacy(result, fns)
        return result


def config_dict(config: SimConfig) -> dict:
    """The config as plain JSON-friendly data: one flat mapping of option names, faults nested."""
    data = {**asdict(config.setup), **asdict(config.learning), **asdict(config.timing),
            "faults": asdict(config.faults), **asdict(config.output)}
    data["arms"] = list(config.setup.arms)
    return {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}
