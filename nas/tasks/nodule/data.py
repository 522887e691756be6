"""The nodule task's data: CT scans with a reference standard, split by patient, and the examples derived from them.

Layout of `--data DIR`: every folder under DIR holding DICOM slices (`*.dcm`) is one series, and every `*.mhd` file
one LUNA16 scan; the patient is the first folder under DIR (LIDC's `LIDC-IDRI-0001/...`) or the series UID. The
reference standard is LUNA16's `annotations.csv` (+ `annotations_excluded.csv`) in DIR or in a sibling folder
`luna16/`, or else each series' LIDC XML (nodules >= 3 mm marked by >= 3 readers, the same rule).

Split by patient, so no patient spans two splits. Scans with reference nodules are dealt first, in a fixed hashed
order: the first to test, the second to val, then one in five each to test and val, the rest to train; scans
without nodules likewise, starting with train. On the shared data LIDC-IDRI-0003 (three nodules) is the test scan and
LIDC-IDRI-0002 (none under LUNA16) is trained on, as a source of real lung negatives, so it is no test scan.

The nodules to learn from are LIDC's own, in their real surroundings (`nas.tasks.nodule.material`): the crops of
`lidc_slices_64.npz` and the volumes of `lidc_vois/` beside the scans, split by patient with the one LIDC split
(`patient_split`: LIDC-IDRI-0003 always test, so neither its scan, crops nor volumes are trained on or used for
selection). The training scans add lung negatives (seeds, random lung, non-nodule marks) and, where they have them,
their reference nodules. Validation patients' crops and volumes score each stage's patches; with no validation scan
holding nodules (the shared data) the validation FROC is an estimate from them (`NoduleData.estimate`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from scipy import ndimage

from nas._yaml import REPO_ROOT
from nas.data import Dataset, Split
from nas.data.ct import CTScan
from nas.errors import DataError
from nas.tasks.nodule.froc import Finding, ScanTruth, estimated_froc, match
from nas.tasks.nodule.material import SLICES_FILE, VOIS_DIR, LidcMaterial, augment_3d, find_material
from nas.tasks.nodule.volume import (
    SLAB_OFFSETS,
    Prepared,
    prepare,
    recentre,
    region,
    seed_tiles,
    thin,
    to_model_input,
)

if TYPE_CHECKING:
    from nas.tasks.nodule.pipeline import Evaluation, TwoStage

SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
DEFAULT_SCANS = SHARED_DATA / "lidc"
SEED = 20240
POSITIVE_COPIES = 16
HARD_NEGATIVE_COPIES = 4
SCAN_NEGATIVES = {"screen": 1000, "classify": 600}
"""Lung negatives per training scan and stage: the screener ranks about 1,700 seeds per scan, nearly all negative,
so it sees many (2D tiles are cheap; 3D patches are not)."""
SCREENER_FALSE_POSITIVES = 100
"""Per training scan: the trained screener's top-ranked seeds away from every finding, which stage 2 learns to
reject (`screener_false_positives`); about what a pipeline passes on per scan (the space's `candidates` reach 64)."""
VOI_COPIES, VOI_SURROUNDINGS = 2, 1
"""Per training volume: shifted copies of its nodule, and patches of its surroundings (stage 2)."""
VOI_FALSE_POSITIVES = 4
"""Per training volume: the trained screener's top-ranked places beside its nodule that stage 2 learns to reject
(`screener_false_positives`). On the dsconv-32 start point, 4 against 2 raised stage 2's validation AUC against
SCORED_FALSE_POSITIVES from 0.913 to 0.939 and the estimated CPM from 0.54 to 0.62; 8 lowered them to 0.917 and 0.49."""
SCORED_FALSE_POSITIVES = 2
"""Per validation or test volume: the screener's top-ranked places beside its nodule that stage 2 is scored against
(`against_false_positives`, the validation estimate): the hardest two, whatever training uses."""
SEED_NEGATIVE_FRACTION = 0.5
"""Of each stage's lung negatives, this share sits on seeds (`blob_seeds`: vessels, vessel crossings, scars) away
from every finding: what the stages are shown in use, and the hard part of telling nodules apart."""
CACHE_VERSION = 2
"""Bumped when `prepare` changes what it computes (2: 4 mm lung mask, seeds)."""
EVAL_RANDOM_NEGATIVES = 120
PATCH_JITTER = 2
"""Second-stage positives are shifted up to this many voxels: refined candidates land near, not on, centres."""
MIN_SEPARATION_MM = 20.0
PREPARE_REPEATS = 3
MAX_TILE = 32
"""The largest first-stage tile (pixels at 1 mm) the task cuts, the data's `image_size` as a search space sees it:
the crops span about 45 mm and the volumes' boxes about 30 mm, so larger tiles and patches would be mostly mirror."""


@dataclass(frozen=True)
class ScanEntry:
    path: Path
    """A series folder (DICOM) or an .mhd file."""
    patient: str
    series_uid: str


@dataclass(frozen=True)
class Example:
    """One training or scoring example on a scan: where (scan, grid position), what (label), how (jitter)."""

    scan: int
    centre: tuple[float, float, float]
    label: int
    jitter: tuple[int, int, int] = (0, 0, 0)
    tile_shift: tuple[int, float, float] = (0, 0.0, 0.0)
    """First stage: slice offset (voxels), and row/column offset of the nodule in the tile (fraction of the tile)."""
    flips: int = 0
    """Bits: flip z, flip y, flip x; then `rot` quarter turns in plane."""
    rot: int = 0


@dataclass
class NoduleData:
    """Scans, their reference standard and split, and everything derived from them (cached on disk when a
    `cache_dir` is set: scans are decoded and pre-processed once per results root)."""

    root: Path
    scans: list[ScanEntry]
    splits: dict[str, list[int]]
    annotations: Path | None
    material: LidcMaterial | None
    cache_dir: Path | None = None
    _truths: dict[int, ScanTruth] = field(default_factory=dict, repr=False)
    _prepared: dict[int, Prepared] = field(default_factory=dict, repr=False)
    _examples: dict[str, list[Example]] = field(default_factory=dict, repr=False)
    _inputs: dict[tuple[str, str, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict, repr=False)
    _froc_scans: dict[str, list[tuple[Prepared, ScanTruth]]] = field(default_factory=dict, repr=False)
    prepare_ms: dict[str, list[float]] = field(default_factory=dict)
    """Measured pre-processing times per series UID (ms), for per-scan latency."""

    # -- scans and truth ---------------------------------------------------------------------------------------
    def read(self, index: int) -> CTScan:
        return read_scan(self.scans[index].path)

    def truth(self, index: int) -> ScanTruth:
        if index not in self._truths:
            entry = self.scans[index]
            self._truths[index] = (luna16_truth(self.annotations, entry.series_uid) if self.annotations
                                   else lidc_truth(entry.path, self.read(index)))
        return self._truths[index]

    def prepared(self, index: int) -> Prepared:
        """The pre-processed scan, decoded and prepared once (then read from the cache folder)."""
        if index in self._prepared:
            return self._prepared[index]
        entry = self.scans[index]
        cached = self.cache_dir / f"{entry.series_uid}.v{CACHE_VERSION}.npz" if self.cache_dir else None
        if cached is not None and cached.exists():
            with np.load(cached) as z:
                scan = _geometry(z)
                prepared = Prepared(volume=z["volume"].astype(np.float32) / 255.0, mask=z["mask"], start=z["start"],
                                    step=z["step"], series_uid=entry.series_uid, geometry=scan, seeds=z["seeds"],
                                    seed_ms=float(z["seed_ms"]))
                self.prepare_ms[entry.series_uid] = z["prepare_ms"].tolist()
        else:
            scan = self.read(index)
            times = []
            for _ in range(PREPARE_REPEATS):
                started = time.perf_counter()
                prepared = prepare(scan)
                times.append((time.perf_counter() - started) * 1000)
            self.prepare_ms[entry.series_uid] = times
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                g = prepared.geometry
                with open(cached.with_suffix(".tmp"), "wb") as handle:
                    np.savez(handle, volume=np.rint(prepared.volume * 255).astype(np.uint8), mask=prepared.mask,
                             start=prepared.start, step=prepared.step, prepare_ms=np.asarray(times),
                             seeds=prepared.seeds, seed_ms=np.asarray(prepared.seed_ms),
                             spacing=np.asarray(g.spacing), origin=np.asarray(g.origin), direction=g.direction,
                             series_uid=np.asarray(g.series_uid), source=np.asarray(str(g.source)))
                cached.with_suffix(".tmp").replace(cached)
        self._prepared[index] = prepared
        return prepared

    def split_scans(self, split: str) -> list[int]:
        return self.splits[split]

    @property
    def estimated_val(self) -> bool:
        """No validation scan holds a nodule: the validation FROC is `estimate`d from validation patients."""
        return not any(self.truth(i).nodules for i in self.splits["val"])

    # -- examples ----------------------------------------------------------------------------------------------
    def examples(self, split: str, stage: str = "classify") -> list[Example]:
        """A split's scan examples; the screener's training split adds SCAN_NEGATIVES['screen'] per scan."""
        key = f"{split}/{stage}" if split == "train" and stage == "screen" else split
        if key not in self._examples:
            if key == "train/screen":
                self._examples[key] = self.examples("train") + self._screen_negatives()
            else:
                self._examples[key] = self._train_examples() if split == "train" else self._eval_examples(split)
        return self._examples[key]

    def _screen_negatives(self) -> list[Example]:
        rng = np.random.default_rng(SEED + 4)
        out: list[Example] = []
        for index in self.splits["train"]:
            positions, _, marks = self._findings(index)
            out += [_augmented(rng, index, c, 0, 3.0)
                    for c in self._negatives(index, SCAN_NEGATIVES["screen"], list(positions) + list(marks), rng)]
        return out

    def _negatives(self, index: int, count: int, avoid: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
        """`count` lung negatives, SEED_NEGATIVE_FRACTION of them on seeds moved onto their blobs as candidates are
        (`recentre`: what stage 2 is handed in use), all MIN_SEPARATION_MM from `avoid`."""
        seeds = _away_from(self.prepared(index).seeds, avoid)
        wanted = round(count * SEED_NEGATIVE_FRACTION)
        on_seeds = list(recentre(self.prepared(index), seeds[rng.choice(len(seeds), wanted, replace=wanted > len(seeds))]
                                 )) if len(seeds) and wanted else []
        return on_seeds + self._places(index, count - len(on_seeds), avoid, rng, apart=False)

    def screener_false_positives(self, screen: Callable[[np.ndarray], np.ndarray], tile: int, stage: str,
                                 size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The hardest negatives, mined with a trained screener (`screen`: its tiles -> nodule scores): on each
        training scan, the seeds it ranks highest at least MIN_SEPARATION_MM from every finding, moved onto their
        blobs as in use: what stage 1 passes on that is not a nodule (HARD_NEGATIVE_COPIES each); and, for stage 2,
        in each training patient's nodule volume the VOI_FALSE_POSITIVES it ranks highest beside the nodule
        (`LidcMaterial.false_positive_sites`). As `stage`'s inputs at `size` (labels 0), augmented like its other
        training examples: stage 2 learns to reject them (the cascade's rule), the screener's second pass to rank
        them lower. The screener's pass leaves the volumes' out: with them (the dsconv-32 start point) it handed
        on fewer validation nodules (0.76 of them among a scan's top 32, against 0.84) and the pipeline did worse on
        validation and test alike (estimated CPM 0.49 against 0.54, 2 per volume)."""
        rng = np.random.default_rng(SEED + 9)
        cut = _slab if stage == "screen" else _patch
        parts = []
        for index in self.splits["train"]:
            prepared = self.prepared(index)
            positions, _, marks = self._findings(index)
            seeds = _away_from(prepared.seeds, list(positions) + list(marks))
            if not len(seeds):
                continue
            scores = screen(to_model_input(seed_tiles(prepared, seeds, tile)))
            top = recentre(prepared, seeds[np.argsort(-scores, kind="stable")[:SCREENER_FALSE_POSITIVES]])
            parts += [cut(prepared, _augmented(rng, index, c, 0, 3.0), size)
                      for c in top for _ in range(HARD_NEGATIVE_COPIES)]
        if self.material is not None and stage == "classify":
            parts += list(self.material.false_positive_patches("train", screen, tile, size, VOI_FALSE_POSITIVES))
        shape = (len(SLAB_OFFSETS), size, size) if stage == "screen" else (1, size, size, size)
        values = np.stack(parts) if parts else np.zeros((0, *shape), np.float32)
        if stage == "classify" and len(values):
            values = augment_3d(values, SEED + 9 + size)
        return torch.from_numpy(to_model_input(values)), torch.zeros(len(values), dtype=torch.long)

    def _findings(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grid positions of nodule-like findings (with their radii in voxels) and of non-nodule marks."""
        prepared, truth = self.prepared(index), self.truth(index)
        sized = [f for f in truth.nodules + truth.excluded if f.diameter_mm]
        marks = [f for f in truth.excluded if not f.diameter_mm]
        where = lambda fs: prepared.from_world(np.array([f.world_mm for f in fs])) if fs else np.zeros((0, 3))
        return where(sized), np.array([f.diameter_mm / 2 for f in sized]), where(marks)

    def _train_examples(self) -> list[Example]:
        """Each training scan's nodule-like findings (augmented), non-nodule marks, and lung negatives."""
        rng = np.random.default_rng(SEED)
        out: list[Example] = []
        for index in self.splits["train"]:
            positions, radii, marks = self._findings(index)
            for c, r in zip(positions, radii):
                out += [_augmented(rng, index, c, 1, r) for _ in range(POSITIVE_COPIES)]
            for c in marks:
                out += [_augmented(rng, index, c, 0, 3.0) for _ in range(HARD_NEGATIVE_COPIES)]
            out += [_augmented(rng, index, c, 0, 3.0) for c in self._negatives(
                index, SCAN_NEGATIVES["classify"], list(positions) + list(marks), rng)]
        if not any(e.label for e in out) and self.material is None:
            raise DataError(f"{self.root}: the training scans hold no nodule to learn from, and no {SLICES_FILE} "
                            f"with {VOIS_DIR}/ was found beside them")
        return out

    def _eval_examples(self, split: str) -> list[Example]:
        """Unaugmented: each of the split's scans' nodules once, centred; non-nodule marks; random lung."""
        rng = np.random.default_rng(SEED + (1 if split == "val" else 2))
        out: list[Example] = []
        for index in self.splits[split]:
            prepared, truth = self.prepared(index), self.truth(index)
            if truth.nodules:
                centres = prepared.from_world(np.array([f.world_mm for f in truth.nodules]))
                out += [Example(index, tuple(c), 1) for c in centres]
            positions, _, marks = self._findings(index)
            out += [Example(index, tuple(c), 0) for c in marks]
            out += [Example(index, tuple(c), 0)
                    for c in self._places(index, EVAL_RANDOM_NEGATIVES, list(positions) + list(marks), rng)]
        return out

    def _places(self, index: int, count: int, avoid: list[np.ndarray], rng: np.random.Generator,
                apart: bool = True) -> list[np.ndarray]:
        """Random lung positions at least MIN_SEPARATION_MM from `avoid` and (if `apart`) from each other."""
        prepared = self.prepared(index)
        inner = ndimage.binary_erosion(prepared.mask, iterations=4)
        candidates = np.argwhere(inner)
        if candidates.size == 0 or count == 0:
            return []
        chosen: list[np.ndarray] = []
        others = np.asarray(avoid, dtype=np.float64).reshape(-1, 3)
        for n in rng.permutation(len(candidates))[: count * 50]:
            c = candidates[n].astype(np.float64)
            if others.size and np.min(np.linalg.norm(others - c, axis=1)) < MIN_SEPARATION_MM:
                continue
            chosen.append(c)
            if apart:
                others = np.vstack([others, c])
            if len(chosen) == count:
                break
        return chosen

    # -- model inputs ---------------------------------------------------------------------------------------------
    def inputs(self, split: str, stage: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of a split for a stage: 'screen' slabs (N, 3, size, size) or 'classify' patches
        (N, 1, size, size, size), normalised as the pipeline feeds them: the split's scans' examples, then its
        patients' LIDC crops and volumes (`nas.tasks.nodule.material`). Kept per size."""
        key = (split, stage, size)
        if key not in self._inputs:
            train = split == "train"
            rng = np.random.default_rng(SEED + 7 + size)
            examples = self.examples(split, stage)
            if stage == "screen":
                parts = [np.stack([_slab(self.prepared(e.scan), e, size) for e in examples])] if examples else []
            else:
                parts = [np.stack([_patch(self.prepared(e.scan), e, size) for e in examples])] if examples else []
            labels = [np.array([e.label for e in examples], dtype=int)]
            if self.material is not None:
                if stage == "screen":
                    tiles, tile_labels = self.material.crop_tiles(split, size, rng, augment=train)
                    slabs = self.material.voi_slabs(split, size, rng, augment=train)
                    parts += [tiles, slabs]
                    labels += [tile_labels, np.ones(len(slabs), int)]
                else:
                    patches_, patch_labels = self.material.voi_patches(
                        split, size, rng, VOI_COPIES if train else 1, VOI_SURROUNDINGS if train else 1)
                    parts.append(patches_)
                    labels.append(patch_labels)
            values = np.concatenate(parts)
            if train and stage == "classify":
                values = augment_3d(values, SEED + size)
            y = np.concatenate(labels)
            if not 0 < y.sum() < len(y):
                raise DataError(f"{self.root}: the {split} split needs both nodules and other lung for the {stage} "
                                f"stage; add scans, or {SLICES_FILE} and {VOIS_DIR}/ beside them")
            self._inputs[key] = (torch.from_numpy(to_model_input(values)), torch.from_numpy(y).long())
        return self._inputs[key]

    def froc_scans(self, split: str) -> list[tuple[Prepared, ScanTruth]]:
        """The whole scans a split's FROC is computed on, with their reference standard; for an `estimated_val`
        validation, the training scans: they stand in for a scan's seeds, pre-processing time and false positives."""
        if split not in self._froc_scans:
            chosen = self.splits["train"] if split == "val" and self.estimated_val else self.splits[split]
            self._froc_scans[split] = [(self.prepared(i), self.truth(i)) for i in chosen]
        return self._froc_scans[split]

    def estimate(self, detector: TwoStage) -> Evaluation:
        """The validation FROC without a validation scan: validation patients' nodules against the false positives
        the screener finds beside them in their volumes, as many per scan as it passes on in the nodule-free
        training scans (`froc_scans('val')`).

        A validation nodule is passed on by stage 1 in a scan when its slab tile (the volume's slab through its
        centre) scores at least the threshold and fewer than `candidates` of that scan's seeds outscore it; its
        weight is the share of the scans where it is. Stage 2 then finds it at threshold u when its patch scores
        >= u. False positives per scan at u: the candidates a training scan hands stage 2 outside every reference
        finding (K per scan, about `candidates`), times the share of the validation volumes' false positives
        (`against_false_positives`) scoring >= u. Sensitivity at r FP/scan is the best weighted share found with at
        most r false positives (`estimated_froc`). Only K and the seeds' ranks come from the training scans: the
        stage-2 scores of their candidates would flatter a stage 2 trained on them (it rejects those it was shown).
        The false positives beside nodules are harder than a scan's average candidate, so the estimate errs low;
        a nodule's only chance is its centre's tile, which errs low too."""
        from nas.tasks.nodule.pipeline import Evaluation  # the pipeline module imports this one's users

        spec = detector.spec
        if self.material is None:
            raise DataError(f"{self.root}: no validation scan has a nodule and no {SLICES_FILE} with {VOIS_DIR}/ "
                            "was found to estimate the validation FROC from; add scans")
        scans = self.froc_scans("val")
        slabs = self.material.voi_slabs("val", spec.screen.input_size, np.random.default_rng(SEED + 9), augment=False)
        nodule_screen = detector.screen_p(to_model_input(slabs))
        passed = np.zeros(len(slabs))
        for prepared, _ in scans:
            seeds = detector.screen_p(to_model_input(seed_tiles(prepared, prepared.seeds, spec.screen.input_size)))
            outscored = (seeds[None, :] > nodule_screen[:, None]).sum(axis=1)
            passed += (nodule_screen >= spec.screen_threshold) & (outscored < spec.candidates)
        runs = [detector.run(prepared) for prepared, _ in scans]
        per_scan = np.mean([len(match(t, r.candidates(p))[1]) for r, (p, t) in zip(runs, scans)])
        labels, scores = self.against_false_positives(detector, "val")
        froc = estimated_froc(passed / len(scans), scores[labels == 1], scores[labels == 0], float(per_scan),
                              len(scans))
        return Evaluation(froc, runs)

    def against_false_positives(self, detector: TwoStage, split: str) -> tuple[np.ndarray, np.ndarray]:
        """Labels and stage-2 scores of the split's patients' nodules (1) and of what the screener ranks highest
        beside them in their volumes (0, SCORED_FALSE_POSITIVES each: `LidcMaterial.false_positive_sites`): how well
        stage 2 tells nodules from what stage 1 passes on, over hundreds of patients instead of a few scans."""
        if self.material is None:
            raise DataError(f"{self.root}: no {SLICES_FILE} with {VOIS_DIR}/ beside the scans to take nodules from")
        spec = detector.spec
        nodules, _ = self.material.voi_patches(split, spec.patch_size, np.random.default_rng(SEED), 1, 0)
        negatives = self.material.false_positive_patches(split, detector.screen_p, spec.screen.input_size,
                                                         spec.patch_size, SCORED_FALSE_POSITIVES)
        labels = np.r_[np.ones(len(nodules), int), np.zeros(len(negatives), int)]
        return labels, detector.classify_p(to_model_input(np.concatenate([nodules, negatives])))

    def describe(self) -> dict[str, object]:
        count = {s: len(ix) for s, ix in self.splits.items()}
        nodules = {s: sum(len(self.truth(i).nodules) for i in ix) for s, ix in self.splits.items()}
        trained = sorted({self.scans[i].patient for i in self.splits["train"]})
        return {
            "path": str(self.root), "format": "ct-series", "scans": count, "reference_nodules": nodules,
            "patients": {s: sorted({self.scans[i].patient for i in ix}) for s, ix in self.splits.items()},
            "trained_on_scans": trained,
            "note_0002": ("LIDC-IDRI-0002 is trained on (a nodule-free scan: real lung negatives), so it is no test "
                          "scan" if "LIDC-IDRI-0002" in trained else "LIDC-IDRI-0002 is not trained on"),
            "reference_standard": str(self.annotations) if self.annotations else "LIDC XML (>= 3 readers, >= 3 mm)",
            "lidc_material": self.material.describe() if self.material is not None else None,
            "note": "both stages learn from LIDC nodules of the training patients (see lidc_material); the test "
                    "scan's patient is never trained on or used for selection",
            "validation": ("estimated: validation patients' nodules (lidc_vois) through both stages against the "
                           "screener's false positives beside them, as many per scan as it passes on the nodule-free "
                           "training scans (NoduleData.estimate)"
                           if self.estimated_val else "real scans"),
        }


def _away_from(seeds: np.ndarray, avoid: list[np.ndarray]) -> np.ndarray:
    """The seeds at least MIN_SEPARATION_MM from every point of `avoid` (grid positions)."""
    others = np.asarray(avoid, dtype=np.float64).reshape(-1, 3)
    if not others.size or not len(seeds):
        return seeds
    return seeds[np.min(np.linalg.norm(seeds[:, None] - others[None], axis=2), axis=1) >= MIN_SEPARATION_MM]


def _augmented(rng: np.random.Generator, index: int, centre: np.ndarray, label: int, radius: float) -> Example:
    dz = int(rng.integers(-max(0, int(radius * 0.5)), max(0, int(radius * 0.5)) + 1))
    return Example(
        scan=index, centre=tuple(float(v) for v in centre), label=label,
        jitter=tuple(int(v) for v in rng.integers(-PATCH_JITTER, PATCH_JITTER + 1, 3)),  # type: ignore[arg-type]
        tile_shift=(dz, float(rng.uniform(-0.22, 0.22)), float(rng.uniform(-0.22, 0.22))),
        flips=int(rng.integers(0, 8)), rot=int(rng.integers(0, 4)),
    )


def _orient(array: np.ndarray, e: Example, axes: tuple[int, ...]) -> np.ndarray:
    for bit, axis in enumerate(axes):
        if e.flips >> bit & 1:
            array = np.flip(array, axis)
    return np.ascontiguousarray(np.rot90(array, e.rot, axes=axes[-2:]))


def _patch(prepared: Prepared, e: Example, size: int) -> np.ndarray:
    centre = np.rint(np.asarray(e.centre)).astype(int)
    patch = thin(region(prepared, centre + np.asarray(e.jitter) - size // 2, (size, size, size)))
    return _orient(patch, e, (0, 1, 2))[None]


def _slab(prepared: Prepared, e: Example, size: int) -> np.ndarray:
    centre = np.rint(np.asarray(e.centre)).astype(int)
    dz, fy, fx = e.tile_shift
    reach = max(SLAB_OFFSETS)
    lo = np.array([centre[0] + dz - reach, centre[1] - size // 2 + int(fy * size), centre[2] - size // 2 + int(fx * size)])
    block = region(prepared, lo, (2 * reach + 1, size, size))
    slab = block[[reach + o for o in SLAB_OFFSETS]]
    return _orient(slab, e, (0, 1, 2))


def _geometry(z: np.lib.npyio.NpzFile) -> CTScan:
    return CTScan(hu=np.zeros((0, 0, 0), np.int16), spacing=tuple(z["spacing"].tolist()),  # type: ignore[arg-type]
                  origin=tuple(z["origin"].tolist()), direction=z["direction"],  # type: ignore[arg-type]
                  series_uid=str(z["series_uid"]), sop_uids=(), source=Path(str(z["source"])))


# -- discovery, reference standard and split -----------------------------------------------------------------
def read_scan(path: Path) -> CTScan:
    """A series folder (DICOM) or a LUNA16 .mhd file; DICOM errors come from the readers."""
    if path.suffix == ".mhd":
        from nas.data.luna16 import read_mhd

        return read_mhd(path)
    from nas.data.dicom import read_dicom_series

    return read_dicom_series(path)


def _series_uid(folder: Path) -> str:
    import pydicom

    first = min(folder.glob("*.dcm"))
    try:
        return str(pydicom.dcmread(first, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"]).SeriesInstanceUID)
    except Exception as exc:  # pydicom raises many types; the reader gives the full diagnosis when decoding
        raise DataError(f"{first}: cannot read its SeriesInstanceUID ({type(exc).__name__}: {exc})") from None


def find_scans(root: Path) -> list[ScanEntry]:
    folders = sorted({p.parent for p in root.rglob("*.dcm")})
    entries = [ScanEntry(f, f.relative_to(root).parts[0] if f != root else f.name, _series_uid(f)) for f in folders]
    entries += [ScanEntry(p, p.stem, p.stem) for p in sorted(root.rglob("*.mhd"))]
    return entries


def find_annotations(root: Path) -> Path | None:
    for folder in (root, root.parent / "luna16"):
        if (folder / "annotations.csv").is_file():
            return folder / "annotations.csv"
    return None


def luna16_truth(annotations: Path, series_uid: str) -> ScanTruth:
    from nas.data.luna16 import read_annotations

    nodules = tuple(Finding(a.world_mm, a.diameter_mm) for a in read_annotations(annotations, series_uid))
    excluded_csv = annotations.with_name("annotations_excluded.csv")
    excluded = tuple(Finding(a.world_mm, a.diameter_mm) for a in read_annotations(excluded_csv, series_uid)) \
        if excluded_csv.is_file() else ()
    return ScanTruth(series_uid, nodules, excluded)


def lidc_truth(folder: Path, scan: CTScan) -> ScanTruth:
    from nas.data.lidc import read_lidc_xml, reference_nodules

    found = read_lidc_xml(folder, scan)
    nodules = reference_nodules(found, scan)
    kept = {id(n) for n in nodules}
    excluded = [Finding(n.world_mm, n.diameter_mm) for n in found.nodules if id(n) not in kept]
    excluded += [Finding(m.world_mm, None) for m in found.small_nodules + found.non_nodules]
    return ScanTruth(scan.series_uid, tuple(Finding(n.world_mm, n.diameter_mm) for n in nodules), tuple(excluded))


def _hashed(entries: list[tuple[int, ScanEntry]]) -> list[tuple[int, ScanEntry]]:
    return sorted(entries, key=lambda e: hashlib.sha256(e[1].patient.encode()).hexdigest())


def assign_splits(data: NoduleData) -> dict[str, list[int]]:
    """By patient (see the module docstring): every scan of a patient goes where its first scan goes."""
    patients: dict[str, list[int]] = {}
    for n, entry in enumerate(data.scans):
        patients.setdefault(entry.patient, []).append(n)
    with_nodules = [(ix[0], data.scans[ix[0]]) for p, ix in patients.items() if any(data.truth(i).nodules for i in ix)]
    without = [(ix[0], data.scans[ix[0]]) for p, ix in patients.items() if not any(data.truth(i).nodules for i in ix)]
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}

    def deal(entries: list[tuple[int, ScanEntry]], first: tuple[str, ...]) -> None:
        for rank, (_, entry) in enumerate(_hashed(entries)):
            split = first[rank] if rank < len(first) else {3: "test", 4: "val"}.get(rank % 5, "train")
            splits[split] += patients[entry.patient]

    deal(with_nodules, ("test", "val"))
    deal(without, ("train",))
    if not splits["train"]:
        raise DataError(f"{data.root}: {len(data.scans)} scan(s) leave none for training once test and "
                        "validation are held out; add scans")
    if not any(data.truth(i).nodules for i in splits["test"]):
        raise DataError(f"{data.root}: no scan has a reference nodule (LUNA16 rule: >= 3 mm, >= 3 of 4 readers), "
                        "so sensitivity cannot be measured; check the annotations")
    return {k: sorted(v) for k, v in splits.items()}


def open_data(path: str | Path | None) -> NoduleData:
    root = Path(path) if path is not None else DEFAULT_SCANS
    if not root.is_dir():
        raise DataError(f"CT data not found: {root}; give --data a folder of CT series (one folder of DICOM "
                        "slices or one .mhd per scan) with LUNA16 annotations.csv or LIDC XML files")
    scans = find_scans(root)
    if not scans:
        raise DataError(f"{root}: no CT scans found (folders of *.dcm slices, or *.mhd files)")
    data = NoduleData(root=root, scans=scans, splits={}, annotations=find_annotations(root),
                      material=find_material(root))
    data.splits = assign_splits(data)
    return data


def fingerprint(data: NoduleData) -> str:
    h = hashlib.sha256()
    for entry in data.scans:
        h.update(entry.series_uid.encode())
    if data.annotations is not None:
        h.update(data.annotations.read_bytes())
    if data.material is not None:
        h.update(data.material.fingerprint().encode())
    h.update(json.dumps(data.splits, sort_keys=True).encode())
    return h.hexdigest()[:16]


def load_nodule_dataset(path: str | Path | None) -> Dataset:
    """The task's data as a `Dataset` (what the search records), the scans themselves in `derived['nodule']`."""
    data = open_data(path)
    digest = fingerprint(data)

    def loader(split: str) -> Split:
        inputs, labels = data.inputs(split, "screen", 32)
        images = np.clip(np.rint((inputs.numpy() * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)
        return Split(images=images, labels=labels.numpy())

    dataset = Dataset(path=data.root, format="ct-series", class_names=["other", "nodule"], positive_class="nodule",
                      in_channels=1, image_size=(MAX_TILE, MAX_TILE), fingerprint=digest, _loader=loader)
    dataset.derived["nodule"] = data
    return dataset


def nodule_data(dataset: Dataset, cache_root: Path | None = None) -> NoduleData:
    """The scans behind a nodule `Dataset`. Pre-processed scans are cached in the results root's cache of decoded
    data (`dataset.decoded_cache`, set by the search), else under `cache_root`, else not at all."""
    data = dataset.derived.get("nodule")
    if not isinstance(data, NoduleData):
        raise DataError(f"{dataset.path}: not a nodule data set (load it with the nodule task)")
    if data.cache_dir is None:
        base = dataset.decoded_cache or (cache_root / "cache" if cache_root is not None else None)
        data.cache_dir = base / "nodule" / dataset.fingerprint if base is not None else None
        if data.material is not None:
            data.material.cache_dir = data.cache_dir
    return data

