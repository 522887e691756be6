"""Write the groups file `nas evaluate --groups` reads for the chest X-ray folder: normal / bacterial / viral.

The PNEUMONIA file names carry the kind of pneumonia (`person1_bacteria_1.jpeg`, `person1_virus_6.jpeg`); every
NORMAL image is "normal". Keys are paths relative to the data root, one row per image of every split:

    python benchmarks/make_pneumonia_groups.py /work/shared/data/chest_xray_224 --out pneumonia_groups.csv
    nas evaluate --model shipped/xray-7 --data /work/shared/data/chest_xray_224 --groups pneumonia_groups.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

from nas.data.imagefolder import IMAGE_SUFFIXES

KINDS = (("bacteria", "bacterial"), ("virus", "viral"))


def group_of(path: Path) -> str:
    """normal for a NORMAL image; bacterial or viral from a PNEUMONIA file's name."""
    if path.parent.name.upper() == "NORMAL":
        return "normal"
    found = [group for word, group in KINDS if word in path.name.lower()]
    if len(found) != 1:
        raise SystemExit(f"{path}: the file name names {'no' if not found else 'both'} kind of pneumonia "
                         f"(expected one of: {', '.join(w for w, _ in KINDS)})")
    return found[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", type=Path, help="the image folder (train/ val/ test/, NORMAL/ and PNEUMONIA/ in each)")
    parser.add_argument("--out", type=Path, default=Path("pneumonia_groups.csv"))
    args = parser.parse_args()
    images = sorted(f for f in args.root.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"{args.root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    rows = [(f.relative_to(args.root).as_posix(), group_of(f)) for f in images]
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("input", "group"))
        writer.writerows(rows)
    counts = Counter((key.split("/")[0], group) for key, group in rows)
    print(f"{args.out}: {len(rows)} images; " + ", ".join(f"{s}/{g} {n}" for (s, g), n in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
