"""Benchmark: scoring many peers' models, one after the other or batched with ``torch.func.vmap``.

Why ``--eval-peers`` samples instead of batching: K models of the small CNN scored on the
global test set one at a time (``Trainer.predict``) against one ``vmap`` call over their
stacked weights (the same probabilities, to float rounding), one torch thread, as
``medswarm simulate`` runs. Writes ``results/bench_eval_batch.json``.

    nice -n 10 .venv/bin/python scripts/bench_eval_batch.py [--models 16] [--data pneumoniamnist]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, vmap

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from swarm.atomic_file import atomic_write  # noqa: E402
from swarm.partition import build_federation, parse_partition  # noqa: E402
from swarm.training import TrainConfig, Trainer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--data", default="pneumoniamnist")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench_eval_batch.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fed = build_federation(args.data, 8, parse_partition("iid"), seed=0)
    trainer = Trainer(fed.input_shape, fed.num_classes, TrainConfig())
    models = [trainer.initial_weights(seed) for seed in range(args.models)]
    data = fed.global_test
    module = trainer._eval_model
    module.eval()
    x = torch.from_numpy(data.x)

    def probs(params: dict, inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(functional_call(module, params, (inputs,)), dim=1)

    loop_s, batch_s = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        one_by_one = [trainer.predict(w, data) for w in models]
        loop_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        stacked = {k: torch.from_numpy(np.stack([w[k] for w in models])) for k in models[0]}
        with torch.no_grad():
            batched = vmap(probs, in_dims=(0, None))(stacked, x).numpy()
        batch_s.append(time.perf_counter() - start)
    diff = max(float(np.abs(batched[i] - one_by_one[i]).max()) for i in range(len(models)))
    result = {"data": args.data, "test_images": len(data), "models": args.models, "threads": 1,
              "one_by_one_s": min(loop_s), "vmap_s": min(batch_s), "vmap_over_one_by_one": min(batch_s) / min(loop_s),
              "max_probability_difference": diff, "repeats": args.repeats}
    atomic_write(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
