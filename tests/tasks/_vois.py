"""A small slice of the shared lidc_vois folder, for tests of the nodule-malignancy task."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import SHARED

from nas.data.lidc_vois import patient_split, read_nodule_table

VOIS = SHARED / "data" / "lidc_vois"
PER_SPLIT = {"train": 12, "val": 5, "test": 4}
"""Patients per split and per diagnosis, so each split has both classes; LIDC-IDRI-0003 joins test."""


def small_vois(folder: Path) -> Path:
    """A lidc_vois folder of a few tens of volumes: whole patients, both diagnoses in every split."""
    records = read_nodule_table(VOIS)
    split = patient_split(r.patient_id for r in records)
    malignant = {}
    for r in records:
        malignant[r.patient_id] = malignant.get(r.patient_id, False) or r.malignant
    chosen = {"LIDC-IDRI-0003"}
    for name, n in PER_SPLIT.items():
        for label in (False, True):
            chosen |= set(sorted(p for p in split if split[p] == name and malignant[p] == label
                                 and (VOIS / "image" / f"{p}_R_1.nii.gz").exists())[:n])
    for sub in ("image", "nodule_mask"):
        (folder / sub).mkdir(parents=True)
    with open(VOIS / "nodules.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [row for row in reader if row["patient_id"] in chosen]
        fields = reader.fieldnames
    with open(folder / "nodules.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        name = f"{row['patient_id']}_R_{row['nodule_id']}.nii.gz"
        for sub in ("image", "nodule_mask"):
            if (VOIS / sub / name).exists():
                (folder / sub / name).symlink_to(VOIS / sub / name)
    return folder
