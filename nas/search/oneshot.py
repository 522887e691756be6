"""`nas search --strategy one-shot`: one supernet trained per study, then ordinary trials whose candidates inherit
its weights instead of training, and a front fine-tuned as standalone models before it is reported (settled
point 21).

The trial path is the same one (phase 1 measures before any weights; phase 2 prunes, quantizes, exports and scores
the deployed artifact); only phase 2's training is replaced, by `OneShot.inherit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from nas import progress
from nas._io import write_json
from nas.compress import load_model
from nas.errors import ConfigError, StudyError
from nas.search.result import TrialResult
from nas.search.trial import INHERITED_FLAG, TrialContext, export_stage, score_on_val
from nas.spaces import Distribution, SearchSpace
from nas.spec import Spec
from nas.supernet import (
    CHECKPOINT, FAMILY, Supernet, SupernetRange, SupernetRecipe, calibration_batches, checkpoint_epochs, load_supernet,
    recalibrate_bn, train_supernet,
)

FINETUNED = "finetuned.json"
"""In a front member's trial folder: its result after fine-tuning, so a finalize run again does not repeat it."""
SEED_OFFSET = 104_729
"""Keeps the supernet's and the fine-tunes' random streams apart from the trials' (seed + trial number)."""


def one_shot_space(space: SearchSpace) -> SearchSpace:
    """The space as a one-shot search samples it: the dsconv family only (the supernet's), and the training knobs
    pinned to their defaults, since with inherited weights they have no effect the sampler could learn from (the
    supernet and the front's fine-tuning use them). Fidelity rungs do not apply: nothing trains per trial."""
    if FAMILY not in space.families:
        raise ConfigError(f"{space.path}: --strategy one-shot needs the {FAMILY} family in the search space (it "
                          f"has {', '.join(space.families)}); use --strategy trials")
    missing = [k for k, v in space.training.items() if isinstance(v, Distribution) and v.default is None]
    if missing:
        raise ConfigError(f"{space.path}: training.{missing[0]} is searched without a `default`; --strategy one-shot "
                          "needs one for every training knob (the recipe the supernet and the front's fine-tuning "
                          "use)")
    training = {k: v.default if isinstance(v, Distribution) else v for k, v in space.training.items()}
    return space.model_copy(update={"families": {FAMILY: space.families[FAMILY]}, "training": training,
                                    "fidelity": None})


def strategy_settings(strategy: str, supernet_epochs: int) -> dict[str, Any] | None:
    """What a study records of its strategy, for resumes to match (None: trials, as studies made before it)."""
    return {"name": strategy, "supernet_epochs": supernet_epochs} if strategy == "one-shot" else None


@dataclass
class OneShot:
    """A study's supernet (where it is kept, how it trains) and what a one-shot trial and finalize do with it."""

    span: SupernetRange
    recipe: SupernetRecipe
    checkpoint: Path
    member_epochs: int
    """Epochs each front member is fine-tuned as a standalone model (capped by --epochs)."""
    supernet: Supernet | None = None

    @classmethod
    def for_study(cls, space: SearchSpace, *, in_channels: int, results_dir: Path, supernet_epochs: int,
                  member_epochs: int, seed: int) -> OneShot:
        if supernet_epochs < 1:
            raise ConfigError(f"--supernet-epochs must be at least 1, got {supernet_epochs}")
        if member_epochs < 1:
            raise ConfigError(f"--member-epochs must be at least 1, got {member_epochs}: the front ships models "
                              "trained as themselves, not inherited estimates")
        recipe = space.training_defaults()
        return cls(span=SupernetRange.from_space(space, in_channels=in_channels),
                   recipe=SupernetRecipe(epochs=supernet_epochs, lr=float(recipe["lr"]),
                                         weight_decay=float(recipe["weight_decay"]),
                                         augment=float(recipe["augment"]), batch_size=int(recipe["batch_size"]),
                                         seed=seed + SEED_OFFSET),
                   checkpoint=results_dir / CHECKPOINT, member_epochs=member_epochs)

    def ready(self, ctx: TrialContext, say: Callable[[str], None]) -> Supernet:
        """The study's trained supernet: loaded when its checkpoint is finished, else trained (resumed from an
        unfinished checkpoint). One process trains it; others (workers) wait on a lock and load it."""
        if self.supernet is not None:
            return self.supernet
        with FileLock(str(self.checkpoint) + ".lock"):
            done = checkpoint_epochs(self.checkpoint)
            if done is None or done < self.recipe.epochs:
                self._train(ctx, done or 0, say)
            else:
                say(f"supernet: using the finished checkpoint {self.checkpoint} ({done} epoch(s))")
            self.supernet = load_supernet(self.checkpoint, self.span, self.recipe)
        return self.supernet

    def _train(self, ctx: TrialContext, done: int, say: Callable[[str], None]) -> None:
        largest = self.subnet_spec(ctx, "largest")
        images = ctx.task.sample_inputs(largest, ctx.dataset, None, "train")
        labels = torch.from_numpy(ctx.dataset.split("train").labels).long().reshape(-1)
        say(f"supernet: training {self.recipe.epochs - done} of {self.recipe.epochs} epoch(s) on "
            f"{len(labels)} images" + (f", resumed after epoch {done}" if done else "") + f" ({self.checkpoint})")
        torch.manual_seed(self.recipe.seed)  # initial weights are part of what --seed fixes
        result = train_supernet(Supernet(self.span), images, labels, self.recipe, checkpoint=self.checkpoint,
                                device=ctx.train_device,
                                on_epoch=lambda e, loss: say(f"supernet: epoch {e}/{self.recipe.epochs}, sandwich "
                                                             f"loss {loss:.4f}"))
        say(f"supernet: trained in {result.seconds:.0f} s")

    def subnet_spec(self, ctx: TrialContext, pick: str) -> Spec:
        return Spec(family=FAMILY, arch=self.span.arch(pick), input_size=self.span.input_size(pick),
                    in_channels=self.span.in_channels, num_classes=self.span.num_classes,
                    training=ctx.space.training_defaults())

    def inherit(self, ctx: TrialContext, model: torch.nn.Module, spec: Spec) -> dict[str, object]:
        """Phase 2's training in a one-shot trial: the supernet's slices copied into `model` (built from `spec`
        by the ordinary builder), and its BatchNorm statistics recomputed on a few training batches."""
        if self.supernet is None:
            raise StudyError("a one-shot trial ran before the study's supernet was ready (OneShot.ready)")
        self.supernet.copy_into(model, spec.arch)
        images = ctx.task.sample_inputs(spec, ctx.dataset, None, "train")
        batches = calibration_batches(images, spec.training.batch_size, seed=ctx.seed)
        recalibrate_bn(model, batches)
        return {"epoch_losses": [], "weights": "inherited", "supernet": str(self.checkpoint),
                "bn_batches": len(batches)}

    def finetune(self, ctx: TrialContext, r: TrialResult) -> TrialResult:
        """A front member fine-tuned as a standalone model, exported, quantized and scored on validation again.

        Fine-tuned rather than retrained: the inherited weights are already a trained network of this shape (the
        supernet's), so a few epochs at the member's recipe adapt them to the subnet alone, at a fraction of
        training from scratch, and what ships is the model the search ranked (Once-for-All fine-tunes its
        subnets the same way). Kept in the trial folder, so a finalize run again reuses it.
        """
        folder = ctx.trial_dir(r.trial)
        if (folder / FINETUNED).exists():
            return TrialResult.model_validate_json((folder / FINETUNED).read_text())
        stage = ctx.task.candidate_of(r.spec, r.pipeline).main
        model = load_model(stage.spec, folder / "model.pt")  # inherited (and pruned, fine-tuned) weights
        epochs = min(self.member_epochs, ctx.max_epochs or self.member_epochs)
        progress.phase("fine-tuning")
        recipe = stage.spec.training.model_copy(update={"epochs": epochs})
        losses = ctx.task.train(model, stage.spec, ctx.dataset, seed=ctx.seed + SEED_OFFSET + r.trial,
                                deadline=None, recipe=recipe, device=ctx.train_device)["epoch_losses"]
        deployed = export_stage(ctx, stage, model, folder, r.runtime_choice)
        val, float_val = score_on_val(ctx, stage.spec, folder, deployed)
        (folder / "test_metrics.json").unlink(missing_ok=True)  # of the inherited weights, if any were scored
        flags = [f for f in r.flags if f != INHERITED_FLAG]
        primary = ctx.task.primary_metric
        flags.append(f"fine-tuned {epochs} epoch(s) as a standalone model from its supernet weights (validation "
                     f"{ctx.task.label(primary)} {r.metrics['val'][primary]:.4f} inherited -> "
                     f"{val[primary]:.4f} fine-tuned)")
        tuned = r.model_copy(update={
            "metrics": {"val": val}, "float_metrics": {"val": float_val}, "flags": flags,
            "train_log": r.train_log | {"weights": "fine-tuned", "member_epochs": epochs,
                                        "member_epoch_losses": losses, "inherited_val": r.metrics["val"]}})
        write_json(folder / "result.json", tuned.model_dump(mode="json"))
        write_json(folder / FINETUNED, tuned.model_dump(mode="json"))
        return tuned

