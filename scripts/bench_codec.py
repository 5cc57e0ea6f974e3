"""Benchmark the weights codec and weighted averaging against plain numpy, by hand.

Usage::

    .venv/bin/python scripts/bench_codec.py [--out results/bench_codec.json] [--size-mib 50]

Writes a JSON report and prints a short table. Targets (reported, never asserted):

* codec: encode+decode throughput of a float32 model >= 0.5x the baseline, where the
  baseline is what a naive serializer costs for the same round trip: two numpy copies of
  the model's bytes into freshly allocated arrays (one to serialise, one to deserialise).
* averaging: ``swarm.averaging.weighted_average`` of 8 such models >= 0.8x the throughput
  of the idiomatic numpy expression ``sum(w_i * x_i)`` per tensor, with pre-normalised weights.

Sizes are in MiB (2**20 bytes); throughput is MiB of model per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from gossip.codec import WeightsMessage, decode, encode
from swarm.atomic_file import atomic_write

MIB = 2**20
CODEC_TARGET = 0.5
AVERAGING_TARGET = 0.8
BASELINE_DEFINITION = (
    "Two copies of every tensor into freshly allocated numpy arrays, the copies a naive "
    "serializer does for one round trip: serialise = x.copy(), deserialise = y.copy(). "
    "Timed per repeat as one unit, median over repeats, interleaved with the codec runs on "
    "the same data in the same process."
)
AVERAGING_BASELINE_DEFINITION = (
    "Per tensor, sum(w_i * x_i for i in models) with w_i = n_i / sum(n), i.e. Python's sum over "
    "numpy float32 arrays (the idiomatic expression). Median over repeats, interleaved with "
    "weighted_average runs."
)


def median_seconds(cases: dict[str, Callable[[], Any]], repeats: int, *,
                   interleave: bool) -> dict[str, float]:
    """Median wall time of each case over ``repeats`` timed runs, after one warm-up run.

    Interleaved: one run of each case per round, so a codec and its baseline see the same
    background load. Blocked: all runs of one case, then the next, so each case meets the
    allocator in the state it leaves itself (glibc reuses freed heap memory below 32 MiB and
    maps fresh, page-faulting memory above). The two can differ a lot; we report both. Each
    result is dropped before the next run, as a peer encoding message after message would.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}

    def run(name: str) -> float:
        start = time.perf_counter()
        result = cases[name]()
        elapsed = time.perf_counter() - start
        del result
        return elapsed

    if interleave:
        for round_ in range(repeats + 1):
            for name in cases:
                elapsed = run(name)
                if round_:
                    times[name].append(elapsed)
    else:
        for name in cases:
            run(name)
            times[name] = [run(name) for _ in range(repeats)]
    return {name: statistics.median(ts) for name, ts in times.items()}


def both_modes(cases: dict[str, Callable[[], Any]], repeats: int) -> dict[str, dict[str, float]]:
    """:func:`median_seconds` interleaved and blocked."""
    return {"interleaved": median_seconds(cases, repeats, interleave=True),
            "blocked": median_seconds(cases, repeats, interleave=False)}


def make_model(size_mib: int, seed: int) -> dict[str, np.ndarray]:
    """A float32 model of exactly ``size_mib`` MiB: one big, one medium and one small tensor."""
    rng = np.random.default_rng(seed)
    floats = size_mib * MIB // 4
    rows_big, rows_mid = floats * 32 // 50 // 4096, floats * 16 // 50 // 4096
    rest = floats - (rows_big + rows_mid) * 4096
    shapes = {"encoder.weight": (rows_big, 4096), "decoder.weight": (rows_mid, 4096),
              "head.weight": (rest,)}
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}


def machine_info() -> dict[str, Any]:
    """Versions, CPU and the environment variables that change memory or BLAS behaviour."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env_keys = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GLIBC_TUNABLES")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": platform.python_version(), "numpy": np.__version__,
        "platform": platform.platform(), "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(), "cpus_usable": affinity,
        "env": {key: os.environ.get(key) for key in env_keys},
        # Other processes competing for the CPUs make every figure noisier.
        "loadavg_1_5_15_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def bench_codec(model: dict[str, np.ndarray], repeats: int) -> dict[str, Any]:
    """Time encode+decode (float32 and float16 transport) against the two-copy baseline."""
    msg = WeightsMessage("bench", 1, "peer-0", 1000, model)
    size = sum(a.nbytes for a in model.values())
    encoded, encoded16 = encode(msg), encode(msg, float16=True)
    exact = decode(encoded) == msg

    def baseline() -> list[np.ndarray]:
        return [a.copy().copy() for a in model.values()]

    def preallocated() -> None:
        for a, mid, out in zip(model.values(), buf_mid, buf_out):
            np.copyto(mid, a)
            np.copyto(out, mid)

    buf_mid = [np.empty_like(a) for a in model.values()]
    buf_out = [np.empty_like(a) for a in model.values()]
    seconds = both_modes({
        "baseline_two_copies": baseline, "two_copies_into_preallocated": preallocated,
        "encode": lambda: encode(msg), "decode": lambda: decode(encoded),
        "encode_decode": lambda: decode(encode(msg)),
        "encode_decode_float16": lambda: decode(encode(msg, float16=True)),
        # Why fresh Python bytes cost more than fresh numpy arrays: first-touch page faults.
        "one_copy_into_new_bytes":
            lambda: b"".join(a.reshape(-1).view(np.uint8).data for a in model.values()),
        "one_copy_into_new_ndarray": lambda: [a.copy() for a in model.values()],
    }, repeats)
    mib = size / MIB
    ratios = {mode: t["baseline_two_copies"] / t["encode_decode"] for mode, t in seconds.items()}
    return {
        "model_bytes": size, "tensors": {k: list(v.shape) for k, v in model.items()},
        "dtype": "float32", "repeats": repeats, "baseline_definition": BASELINE_DEFINITION,
        "encoded_bytes": len(encoded), "encoded_float16_bytes": len(encoded16),
        "float16_size_ratio": len(encoded16) / len(encoded),
        "round_trip_exact": bool(exact),
        "seconds": seconds,
        "throughput_mib_s": {
            mode: {"codec": mib / t["encode_decode"],
                   "codec_float16": mib / t["encode_decode_float16"],
                   "baseline": mib / t["baseline_two_copies"],
                   "preallocated": mib / t["two_copies_into_preallocated"]}
            for mode, t in seconds.items()},
        "ratio_codec_over_baseline": ratios,
        "ratio_codec_float16_over_baseline": {
            mode: t["baseline_two_copies"] / t["encode_decode_float16"]
            for mode, t in seconds.items()},
        "ratio_codec_over_preallocated_copies": {
            mode: t["two_copies_into_preallocated"] / t["encode_decode"]
            for mode, t in seconds.items()},
        "headline_ratio": min(ratios.values()),
        "target": CODEC_TARGET, "target_met": min(ratios.values()) >= CODEC_TARGET,
        "target_rule": "met if codec/baseline >= target in both timing modes",
    }


def bench_averaging(size_mib: int, n_models: int, repeats: int) -> dict[str, Any]:
    """Time ``weighted_average`` of ``n_models`` models against ``sum(w_i * x_i)`` in numpy."""
    try:
        from swarm.averaging import Contribution, weighted_average
    except ImportError as exc:
        return {"skipped": f"swarm.averaging unavailable: {exc}"}
    models = [make_model(size_mib, seed=100 + i) for i in range(n_models)]
    rng = np.random.default_rng(7)
    counts = [int(c) for c in rng.integers(100, 1000, n_models)]
    contributions = [Contribution(f"peer-{i}", m, float(c))
                     for i, (m, c) in enumerate(zip(models, counts))]
    total = float(sum(counts))
    mix = [c / total for c in counts]
    names = list(models[0])

    def numpy_sum() -> dict[str, Any]:
        return {name: sum(w * m[name] for w, m in zip(mix, models)) for name in names}

    ours, ref = weighted_average(contributions), numpy_sum()
    max_diff = max(float(np.max(np.abs(ours[n] - ref[n]))) for n in names)
    seconds = both_modes(
        {"weighted_average": lambda: weighted_average(contributions), "numpy_sum": numpy_sum},
        repeats)
    input_mib = n_models * sum(a.nbytes for a in models[0].values()) / MIB
    ratios = {mode: t["numpy_sum"] / t["weighted_average"] for mode, t in seconds.items()}
    return {
        "models": n_models, "model_mib": size_mib, "dtype": "float32", "weights": counts,
        "repeats": repeats, "baseline_definition": AVERAGING_BASELINE_DEFINITION,
        "output_dtypes": sorted({str(a.dtype) for a in ours.values()}),
        "max_abs_diff_vs_numpy": max_diff,
        "seconds": seconds,
        "throughput_input_mib_s": {
            mode: {name: input_mib / value for name, value in t.items()}
            for mode, t in seconds.items()},
        "ratio_averaging_over_numpy": ratios,
        "headline_ratio": min(ratios.values()),
        "target": AVERAGING_TARGET, "target_met": min(ratios.values()) >= AVERAGING_TARGET,
        "target_rule": "met if averaging/numpy >= target in both timing modes",
    }


def print_table(report: dict[str, Any]) -> None:
    """Print the headline figures with rich."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="medswarm codec / averaging benchmark",
                  caption="i = interleaved timing, b = blocked timing (see JSON)")
    for column in ("measure", "value", "target", "met"):
        table.add_column(column)
    def modes(ratios: dict[str, float]) -> str:
        return " / ".join(f"{ratios[m]:.2f}" for m in ("interleaved", "blocked"))

    codec = report["codec"]
    tp = codec["throughput_mib_s"]
    table.add_row("model size", f"{codec['model_bytes'] / MIB:.0f} MiB float32", "", "")
    table.add_row("codec enc+dec MiB/s (i / b)",
                  " / ".join(f"{tp[m]['codec']:.0f}" for m in ("interleaved", "blocked")), "", "")
    table.add_row("baseline MiB/s (i / b)",
                  " / ".join(f"{tp[m]['baseline']:.0f}" for m in ("interleaved", "blocked")),
                  "", "")
    table.add_row("codec / baseline (i / b)", modes(codec["ratio_codec_over_baseline"]),
                  f">= {CODEC_TARGET}", "yes" if codec["target_met"] else "NO")
    table.add_row("float16 codec / baseline (i / b)",
                  modes(codec["ratio_codec_float16_over_baseline"]), "", "")
    table.add_row("float16 size / float32 size", f"{codec['float16_size_ratio']:.3f}", "", "")
    avg = report["averaging"]
    if "skipped" in avg:
        table.add_row("averaging", avg["skipped"], "", "")
    else:
        table.add_row(f"weighted_average of {avg['models']} / numpy (i / b)",
                      modes(avg["ratio_averaging_over_numpy"]),
                      f">= {AVERAGING_TARGET}", "yes" if avg["target_met"] else "NO")
    Console().print(table)


def main(argv: list[str] | None = None) -> int:
    """Run both benchmarks, write the JSON report, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/bench_codec.json"))
    parser.add_argument("--size-mib", type=int, default=50, help="model size (default 50)")
    parser.add_argument("--models", type=int, default=8, help="models to average (default 8)")
    parser.add_argument("--repeats", type=int, default=9, help="timed runs per measure")
    args = parser.parse_args(argv)

    report = {
        "machine": machine_info(),
        "codec": bench_codec(make_model(args.size_mib, seed=0), args.repeats),
        "averaging": bench_averaging(args.size_mib, args.models, args.repeats),
    }
    if hasattr(os, "getloadavg"):
        report["machine"]["loadavg_1_5_15_at_end"] = list(os.getloadavg())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
