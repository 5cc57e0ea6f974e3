"""Write ``swarm/assets/heart/heart.csv`` from the four UCI ``processed.*.data`` files.

The shipped ``--data heart`` is this CSV read by the tabular loader (``swarm.csv_data``),
the same path a hospital's own table takes. This script records how the CSV was made:

* one row per patient, a ``site`` column naming the hospital;
* the categorical codes written as names (``cp``, ``restecg``, ``slope``, ``thal``), so the
  loader one-hot encodes them; ``sex``, ``fbs``, ``exang`` stay 0/1;
* ``?`` and the impossible 0 of ``trestbps`` and ``chol`` (Switzerland records every
  ``chol`` as 0) become empty cells, i.e. missing;
* the target ``disease`` is 1 where ``num > 0``.

Run: ``python scripts/make_heart_csv.py [--out PATH]``; ``--check`` only compares.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "swarm" / "assets" / "heart"
SITES = ("cleveland", "hungarian", "switzerland", "va")
COLUMNS = ("age", "sex", "cp", "trestbps", "chol", "fbs", "restecg",
           "thalach", "exang", "oldpeak", "slope", "ca", "thal", "num")
NAMES = {
    "cp": {1: "typical-angina", 2: "atypical-angina", 3: "non-anginal", 4: "asymptomatic"},
    "restecg": {0: "normal", 1: "st-t-abnormality", 2: "lv-hypertrophy"},
    "slope": {1: "upsloping", 2: "flat", 3: "downsloping"},
    "thal": {3: "normal", 6: "fixed-defect", 7: "reversible-defect"},
}
ZERO_IS_MISSING = ("trestbps", "chol")


def _cell(column: str, text: str, where: str) -> str:
    text = text.strip()
    if text == "?":
        return ""
    value = float(text)
    if column in NAMES:
        if value not in NAMES[column]:
            raise SystemExit(f"{where}: {column} is {text}; expected one of {sorted(NAMES[column])}")
        return NAMES[column][int(value)]
    if column in ZERO_IS_MISSING and value == 0:
        return ""
    return f"{value:g}"


def heart_csv(root: Path = ROOT) -> str:
    """The CSV text made from ``root/processed.<site>.data``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("site", *COLUMNS[:-1], "disease"))
    for site in SITES:
        path = root / f"processed.{site}.data"
        for lineno, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split(",")
            if len(fields) != len(COLUMNS):
                raise SystemExit(f"{path}, line {lineno}: expected {len(COLUMNS)} values, found {len(fields)}")
            where = f"{path}, line {lineno}"
            cells = [_cell(c, f, where) for c, f in zip(COLUMNS[:-1], fields[:-1])]
            writer.writerow((site, *cells, int(float(fields[-1]) > 0)))
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "heart.csv")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs from a fresh conversion")
    args = parser.parse_args(argv)
    text = heart_csv()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="ascii") == text
        print("up to date" if same else f"{args.out} differs from the conversion")
        return 0 if same else 1
    args.out.write_text(text, encoding="ascii")
    print(f"wrote {args.out} ({text.count(chr(10)) - 1} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
