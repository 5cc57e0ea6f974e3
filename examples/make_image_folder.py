"""Write a small synthetic image folder with a labels CSV, the layout a hospital exports.

Three hospitals (``site``), two classes (``healthy``, ``lesion``: a bright blob somewhere
on a noisy background), grey 32x32 PNGs, each hospital with its own brightness (a
scanner of its own), and a few rows of split ``test`` with no site: the global test set.

    python examples/make_image_folder.py /tmp/toy-folder
    medswarm simulate --data /tmp/toy-folder/labels.csv --partition sites \\
        --task examples/tiny_task.py:task --rounds 10

Nothing here is medical: it only gives the example task something learnable.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

SITES = ("clinic-a", "clinic-b", "clinic-c")
CLASSES = ("healthy", "lesion")  # sorted: healthy = 0, lesion = 1


def _image(rng: np.random.Generator, lesion: bool, size: int, brightness: float) -> np.ndarray:
    img = rng.normal(0.35 + brightness, 0.1, size=(size, size))
    if lesion:
        r, c = rng.integers(4, size - 4, size=2)
        yy, xx = np.mgrid[:size, :size]
        img += 0.3 * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * rng.uniform(1.5, 3.0) ** 2))
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def make_folder(root: str | Path, per_site: int = 30, global_test: int = 20, size: int = 32,
                seed: int = 0, sites: int = len(SITES)) -> Path:
    """Write the PNGs and ``labels.csv`` of ``sites`` hospitals (at most 3) under ``root``;
    return the CSV's path."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    owners = [(site, s) for s, site in enumerate(SITES[:sites]) for _ in range(per_site)] + [("", None)] * global_test
    for i, (site, s) in enumerate(owners):
        label = CLASSES[i % 2]
        brightness = 0.0 if s is None else 0.05 * (s - 1)
        name = f"images/{site or 'test'}-{i:04d}.png"
        Image.fromarray(_image(rng, label == "lesion", size, brightness)).save(root / name)
        rows.append([name, label, site, "test" if s is None else "train"])
    # a fifth of each hospital's rows validate (its local test split)
    for row in rows:
        if row[2] and rng.random() < 0.2:
            row[3] = "val"
    path = root / "labels.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "site", "split"])
        writer.writerows(rows)
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-site", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make_folder(args.out, per_site=args.per_site, seed=args.seed))
