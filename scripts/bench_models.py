"""Benchmark: real model sizes over the wire, a MONAI network's AUROC, and image-folder loading.

Three parts (``--parts``), each through the commands a user types:

``launch``   ``medswarm launch --peers 3`` on BreastMNIST exported as a PNG folder and read
             at ``--image-size`` (64), with each of ``--models``: wall time per round, bytes
             sent per peer per round, the encoded model size, and the share of a round not
             spent training, encoding or averaging (transfers and waiting for neighbours).
``auroc``    ``medswarm simulate --arms swarm,fedavg --model resnet18`` on the same folder,
             paired by seed: the swarm's AUROC minus FedAvg's per seed.
``loading``  ``--pngs`` generated 256x256 PNGs and ``--dicoms`` 16-bit DICOMs loaded through
             ``--data PATH.csv --image-size 64``: seconds and peak memory (a child process's
             peak resident set, minus that of the same process before loading).

Writes ``results/bench_models.json``.

    .venv/bin/python scripts/bench_models.py [--parts launch,auroc,loading] [--rounds 3]
        [--models small-cnn,resnet18,densenet121] [--seeds 3] [--auroc-rounds 20] [--auroc-peers 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from swarm.atomic_file import atomic_write
from swarm.datasets import builtin_path, load_medmnist


def medswarm(*args: str) -> float:
    """Run one ``medswarm`` command quietly; its wall time in seconds."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "peers.cli", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"medswarm {args[0]} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def export_breastmnist(root: Path) -> Path:
    """BreastMNIST as a PNG folder: train and val rows of split ``train``, test rows ``test``."""
    from PIL import Image

    data = load_medmnist(builtin_path("breastmnist"))
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for split, part in (("train", data.train), ("train", data.val), ("test", data.test)):
        for x, y in zip(part.x, part.y):
            name = f"img/{len(rows):05d}.png"
            Image.fromarray(np.round(x[0] * 255).astype(np.uint8)).save(root / name)
            rows.append([name, int(y), split])
    path = root / "labels.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "split"])
        writer.writerows(rows)
    return path


def encoded_size(model: str, size: int) -> int:
    """Bytes of one weights message of ``model`` for grey ``size`` x ``size`` images, two classes."""
    from gossip.codec import WeightsMessage, encode
    from swarm.models import build_model, get_weights

    weights = get_weights(build_model((1, size, size), 2, model))
    return len(encode(WeightsMessage("bench", 0, "bench", 1, weights)))


def bench_launch(labels: Path, models: list[str], rounds: int, size: int, work: Path) -> list[dict]:
    """One ``launch --peers 3`` per model; per-round time, bytes and the non-training share."""
    out = []
    for model in models:
        run = work / f"launch-{model}"
        wall = medswarm("launch", "--peers", "3", "--data", str(labels), "--image-size", str(size),
                        "--model", model, "--rounds", str(rounds), "--no-converge", "--partition", "iid",
                        "--quiet", "--out", str(run))
        swarm = json.loads((run / "report.json").read_text())["arms"]["swarm"]
        peers = swarm["peers"]
        per_round = swarm["wall_s_per_round"]
        busy = [sum(p["timings"].values()) / max(1, p["rounds_completed"]) for p in peers]
        out.append({
            "model": model, "model_id": peers[0]["model_id"], "image_size": size, "rounds": rounds,
            "wall_s": wall, "wall_s_per_round": per_round,
            "bytes_per_peer_per_round": float(np.mean([p["bytes_sent"] / max(1, p["rounds_completed"])
                                                       for p in peers])),
            "encoded_model_bytes": encoded_size(model, size),
            "train_codec_averaging_s_per_round": float(np.mean(busy)),
            "transfer_and_wait_share": 1.0 - float(np.mean(busy)) / per_round if per_round else None,
            "auroc": swarm["auroc"],
        })
        print(json.dumps(out[-1]), flush=True)
    return out


def bench_auroc(labels: Path, seeds: int, rounds: int, size: int, peers: int, work: Path) -> dict:
    """Swarm vs FedAvg with ResNet-18, paired by seed: the mean peer's and the worst peer's
    global-test AUROC over the last 5 rounds (the report's ``auroc`` and ``worst_auroc``)."""
    pairs = []
    for seed in range(seeds):
        run = work / f"auroc-{seed}"
        wall = medswarm("simulate", "--data", str(labels), "--image-size", str(size), "--model", "resnet18",
                        "--arms", "swarm,fedavg", "--peers", str(peers), "--partition", "iid",
                        "--rounds", str(rounds), "--no-converge", "--seed", str(seed), "--quiet", "--out", str(run))
        arms = json.loads((run / "report.json").read_text())["arms"]
        swarm, fedavg = arms["swarm"], arms["fedavg"]
        pairs.append({"seed": seed, "wall_s": wall, "swarm": swarm["auroc"], "swarm_worst_peer": swarm["worst_auroc"],
                      "fedavg": fedavg["auroc"], "swarm_minus_fedavg": swarm["auroc"] - fedavg["auroc"],
                      "worst_peer_minus_fedavg": swarm["worst_auroc"] - fedavg["auroc"],
                      "bytes_vs_fedavg": swarm["bytes_sent"] / fedavg["bytes_sent"] if fedavg["bytes_sent"] else None})
        print(json.dumps(pairs[-1]), flush=True)
    diffs = [p["swarm_minus_fedavg"] for p in pairs]
    worst = [p["worst_peer_minus_fedavg"] for p in pairs]
    return {"model": "resnet18", "image_size": size, "rounds": rounds, "peers": peers, "partition": "iid",
            "averaged_over": "last 5 rounds", "per_seed": pairs,
            "mean_difference": float(np.mean(diffs)), "worst_seed_difference": float(min(diffs)),
            "mean_worst_peer_difference": float(np.mean(worst))}


def write_pngs(root: Path, n: int, size: int = 256) -> Path:
    """``n`` noisy 256x256 grey PNGs (noise compresses badly: a worst case for decoding)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        name = f"p{i:05d}.png"
        Image.fromarray(rng.integers(0, 256, size=(size, size), dtype=np.uint8)).save(root / name)
        rows.append([name, i % 2, f"site-{i % 4}"])
    return _labels(root / "pngs.csv", rows)


def write_dicoms(root: Path, n: int, size: int = 256) -> Path:
    """``n`` 16-bit MONOCHROME2 DICOMs with rescale and window tags."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(f"d{i}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.RescaleSlope, ds.RescaleIntercept, ds.WindowCenter, ds.WindowWidth = 1, -1024, 40, 400
        ds.PixelData = rng.integers(0, 4096, size=(size, size), dtype=np.uint16).tobytes()
        ds.save_as(root / f"d{i:04d}.dcm", enforce_file_format=True)
        rows.append([f"d{i:04d}.dcm", i % 2, f"site-{i % 4}"])
    return _labels(root / "dicoms.csv", rows)


def _labels(path: Path, rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "site"])
        writer.writerows(rows)
    return path


_LOAD = """
import json, resource, sys, time
from swarm.csv_data import load_csv_federation
from swarm.partition import parse_partition
from swarm.task import DataRequest
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
fed = load_csv_federation(DataRequest(sys.argv[1], None, "sites", image_size=64), parse_partition("sites"))
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mib_above_start": (peak - before) / 1024,
                  "images": sum(len(s.train) + len(s.test) for s in fed.sites)}))
"""


def bench_loading(work: Path, pngs: int, dicoms: int) -> dict:
    """Generate the folders, then load each in a fresh process: seconds and peak memory."""
    out = {}
    for kind, count, make in (("png", pngs, write_pngs), ("dicom", dicoms, write_dicoms)):
        root = work / kind
        root.mkdir()
        labels = make(root, count)
        proc = subprocess.run([sys.executable, "-c", _LOAD, str(labels)], capture_output=True, text=True, check=True)
        out[kind] = {"files": count, "source_size": "256x256", "image_size": 64, **json.loads(proc.stdout)}
        print(kind, json.dumps(out[kind]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="launch,auroc,loading")
    parser.add_argument("--models", default="small-cnn,resnet18,densenet121")
    parser.add_argument("--rounds", type=int, default=3, help="launch rounds per model")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--auroc-rounds", type=int, default=20)
    parser.add_argument("--auroc-peers", type=int, default=4)
    parser.add_argument("--pngs", type=int, default=5000)
    parser.add_argument("--dicoms", type=int, default=500)
    parser.add_argument("--out", type=Path, default=Path("results/bench_models.json"))
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    result: dict = json.loads(args.out.read_text()) if args.out.exists() else {}
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        work = Path(tmp)
        labels = export_breastmnist(work / "breastmnist") if {"launch", "auroc"} & set(parts) else None
        if "launch" in parts:
            result["launch"] = bench_launch(labels, args.models.split(","), args.rounds, args.image_size, work)
        if "auroc" in parts:
            result["auroc"] = bench_auroc(labels, args.seeds, args.auroc_rounds, args.image_size, args.auroc_peers, work)
        if "loading" in parts:
            result["loading"] = bench_loading(work, args.pngs, args.dicoms)
    atomic_write(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
