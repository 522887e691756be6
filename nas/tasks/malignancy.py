"""Nodule malignancy: benign vs malignant from a 3D patch of CT in Hounsfield units, split by patient.

The data is `lidc_vois/` (one NIfTI box of int16 HU around each nodule, labels from `nodules.csv` `Diagnosis`),
read by `nas.data.lidc_vois`. Each box is resampled once to a CUBE^3 cube at 1 mm around its centre (air outside
the box), windowed to WINDOW_HU and kept as uint8, so a split is one small array, cached with the search's decoded
data, and a trial trains in seconds. A candidate is one 3D classifier (dsconv3d, resnet3d) of `input_size`^3
inputs (the cube, resized); it is searched, compressed, measured, exported and scored like an X-ray classifier,
by AUC and sensitivity / specificity at the validation operating point. `nas predict` reads a NIfTI box the same
way (`input_reader`). Patients are split by `lidc_vois.patient_split`, which keeps LIDC-IDRI-0003 in test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nas.data import Dataset
from nas.data._dataset import Split
from nas.data.lidc_vois import load_volumes, patient_split, read_nodule_table
from nas.errors import ConfigError, DataError
from nas.export import Normalisation
from nas.hardware import HardwareProfile
from nas.tasks._task import ClassificationTask, register_task

if TYPE_CHECKING:
    import torch

__all__ = ["CUBE", "WINDOW_HU", "MalignancyTask", "cube_of", "read_nifti_hu"]

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lidc_vois"
CUBE = 32
"""Edge of the cube (voxels at 1 mm) every box is resampled to: the boxes hold about 15 mm around the nodule."""
WINDOW_HU = (-1000.0, 400.0)
NORMALISATION = Normalisation(mean=0.5, std=0.5, source=f"clip((HU - {WINDOW_HU[0]:g}) / "
                                                        f"{WINDOW_HU[1] - WINDOW_HU[0]:g}, 0, 1) in 1/255 steps")


def cube_of(hu: np.ndarray, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z, y, x) HU at its own spacing -> uint8 (CUBE, CUBE, CUBE): 1 mm voxels around the box centre, trilinear,
    air outside the box, windowed to WINDOW_HU."""
    offsets = np.arange(CUBE, dtype=np.float64) - (CUBE - 1) / 2
    axes = [(n - 1) / 2 + offsets / s for n, s in zip(hu.shape, spacing_mm)]
    grid = np.meshgrid(*axes, indexing="ij")
    from scipy.ndimage import map_coordinates

    values = map_coordinates(hu.astype(np.float32), grid, order=1, mode="constant", cval=WINDOW_HU[0])
    low, high = WINDOW_HU
    return np.rint(np.clip((values - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def inputs_of(cubes: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 (N, 1, CUBE, CUBE, CUBE) -> the models' normalised float32 (N, 1, S, S, S), S = input_size."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(cubes).float().div_(255.0)
    if input_size != cubes.shape[-1]:
        x = F.interpolate(x, size=(input_size,) * 3, mode="trilinear", align_corners=False)
    return x.sub_(NORMALISATION.mean).div_(NORMALISATION.std).contiguous()


def read_nifti_hu(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A NIfTI box as (z, y, x) HU running along +x, +y, +z (as lidc_vois' reader returns it) and its spacing."""
    import SimpleITK as sitk  # heavy; only reading NIfTI needs it

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: cannot be read as NIfTI ({str(exc).strip().splitlines()[-1]})") from None
    if image.GetDimension() != 3:
        raise DataError(f"{path}: expected a 3D volume of Hounsfield units, got {image.GetDimension()}D")
    hu = sitk.GetArrayFromImage(image)
    signs = np.diag(np.asarray(image.GetDirection()).reshape(3, 3))
    hu = np.flip(hu, tuple(2 - axis for axis in range(3) if signs[axis] < 0))
    return hu, tuple(float(s) for s in image.GetSpacing()[::-1])  # type: ignore[return-value]


def _fingerprint(root: Path) -> str:
    digest = hashlib.sha1((root / "nodules.csv").read_bytes())
    for path in sorted((root / "image").glob("*.nii.gz")):
        digest.update(f"{path.name}:{path.stat().st_size}".encode())
    return digest.hexdigest()[:16]


class MalignancyTask(ClassificationTask):
    name = "nodule-malignancy"
    description = "benign vs malignant nodule from a 3D CT patch in HU (lidc_vois), split by patient"
    default_space = "nodule-malignancy"
    normalisation = NORMALISATION
    augments = False

    def latency_budget_ms(self, profile: HardwareProfile) -> float | None:
        """No default budget: a profile's is sized for one 2D image, not a 3D patch (give --max-latency-ms)."""
        return None

    def load_data(self, path: str | Path | None, *, positive_class: str | None = None) -> Dataset:
        if positive_class not in (None, "malignant"):
            raise ConfigError(f"--positive-class {positive_class!r}: this task's positive class is 'malignant'")
        root = Path(path) if path is not None else DEFAULT_DATA
        records = read_nodule_table(root)
        splits = patient_split(r.patient_id for r in records)

        def loader(split: str) -> Split:
            volumes = load_volumes(root, sorted({p for p, s in splits.items() if s == split}))
            if not volumes:
                raise DataError(f"{root}: no volumes in the {split} split; give more patients")
            cubes = np.stack([cube_of(v.image, v.spacing_mm) for v in volumes])[:, None]
            return Split(images=cubes, labels=np.array([int(v.malignant) for v in volumes], dtype=np.int64))

        return Dataset(path=root, format="lidc-vois", class_names=["benign", "malignant"],
                       positive_class="malignant", in_channels=1, image_size=(CUBE, CUBE),
                       fingerprint=_fingerprint(root), _loader=loader, decodes=True)

    def inputs(self, dataset: Dataset, split: str, input_size: int) -> torch.Tensor:
        """Each split is resized once per input size and kept, never per epoch."""
        key = (self.name, split, input_size)
        if key not in dataset.derived:
            dataset.derived[key] = inputs_of(dataset.split(split).images, input_size)
        return dataset.derived[key]  # type: ignore[return-value]

    def input_reader(self, io: dict[str, Any]) -> Callable[[Path], np.ndarray]:
        size = int(io["input_shape"][-1])
        return lambda path: inputs_of(cube_of(*read_nifti_hu(path))[None, None], size)[0].numpy()


register_task(MalignancyTask())
