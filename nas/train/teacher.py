"""The teacher for distillation: the study's best model so far (validation AUC), or a checkpoint the user names.

Its logits on a split are computed once, on un-augmented inputs, and cached beside its weights and in memory,
so a student never re-runs the teacher per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna
import torch
from optuna.trial import TrialState

from nas.compress import load_model
from nas.data import Dataset
from nas.errors import ConfigError
from nas.spec import Spec

WEIGHTS = "model.pt"
SPEC = "spec.json"

if TYPE_CHECKING:
    from nas.tasks import Task


@dataclass(frozen=True)
class Teacher:
    name: str
    """"trial 12", or the checkpoint folder given with --teacher."""
    folder: Path
    """Holds spec.json and model.pt: a trial's folder, or one written by `nas export`."""

    @property
    def spec(self) -> Spec:
        return Spec.load(self.folder / SPEC)


def teacher_from_path(path: str | Path) -> Teacher:
    folder = Path(path)
    missing = [name for name in (SPEC, WEIGHTS) if not (folder / name).is_file()]
    if missing:
        raise ConfigError(f"--teacher {path}: needs a folder holding {SPEC} and {WEIGHTS} (a trial's folder under "
                          f"results/<study>/trials/, or one written by nas export); missing {', '.join(missing)}")
    return Teacher(name=str(folder), folder=folder)


def best_in_study(study: optuna.Study, trials_dir: Path) -> Teacher | None:
    """The completed trial with the highest validation AUC whose weights are still on disk."""
    best: tuple[float, int] | None = None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        result = trial.user_attrs.get("result")
        if result and (trials_dir / str(trial.number) / WEIGHTS).is_file():
            candidate = (result["metrics"]["val"]["auc"], -trial.number)
            best = max(best, candidate) if best else candidate
    if best is None:
        return None
    number = -best[1]
    return Teacher(name=f"trial {number}", folder=trials_dir / str(number))


def teacher_logits(teacher: Teacher, task: Task, dataset: Dataset, split: str = "train") -> torch.Tensor:
    """(N, classes) logits of the teacher on every case of `split`, in the split's order."""
    key = ("teacher-logits", str(teacher.folder.resolve()), split)
    if key in dataset.derived:
        return dataset.derived[key]  # type: ignore[return-value]
    cache = teacher.folder / f"logits-{split}-{dataset.fingerprint[:16]}.npy"
    if cache.is_file():
        logits = torch.from_numpy(np.load(cache))
    else:
        spec = teacher.spec
        model = load_model(spec, teacher.folder / WEIGHTS)
        inputs = task.sample_inputs(spec, dataset, count=None, split=split)
        with torch.no_grad():
            logits = torch.cat([model(inputs[i:i + 256]) for i in range(0, len(inputs), 256)])
        np.save(cache, logits.numpy())
    dataset.derived[key] = logits
    return logits
