"""Data readers: MedMNIST-style .npz and image folders, each registered as a format; CT, LIDC and LUNA16 readers
for the nodule task in their own modules (`lidc_vois`: nodule volumes and the patient split)."""

from nas.data._dataset import BUNDLED_PNEUMONIAMNIST, FORMATS, Dataset, Split, load_dataset

# Entries are imported explicitly so a missing one fails loudly.
from nas.data import npz as _npz  # noqa: E402,F401
from nas.data import imagefolder as _imagefolder  # noqa: E402,F401
from nas.data import lidc_vois  # noqa: E402,F401

__all__ = ["BUNDLED_PNEUMONIAMNIST", "FORMATS", "Dataset", "Split", "lidc_vois", "load_dataset"]
