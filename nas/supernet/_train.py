"""Training the supernet once per study (the sandwich rule with in-place distillation), its checkpoint, and the
BatchNorm recalibration that makes an inherited subnet's statistics its own."""

from __future__ import annotations

import io
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas import interrupt
from nas._io import atomic_write_bytes
from nas.errors import StudyError, TrialError
from nas.supernet._net import Supernet, SupernetRange
from nas.train.distill import distillation_loss
from nas.train.loop import random_affine

CHECKPOINT = "supernet.pt"
"""Under results/<study>/: weights, optimizer, schedule, epoch and random streams, written after every epoch."""
RANDOM_SUBNETS = 2
"""Random subnets per sandwich step, beside the largest and the smallest (BigNAS)."""
INPLACE_ALPHA = 0.5
"""Weight of the largest subnet's soft targets against the labels in the smaller subnets' loss: the teacher is
itself in training, so early on the labels keep the small ones from learning its mistakes."""
BN_BATCHES = 8
"""Training batches a subnet's BatchNorm statistics are recomputed from (OFA uses a few thousand images)."""


@dataclass(frozen=True)
class SupernetRecipe:
    """How the supernet trains: the space's training defaults (the recipe baselines share), for `epochs`."""

    epochs: int
    lr: float
    weight_decay: float
    augment: float
    batch_size: int
    seed: int


@dataclass
class SupernetLog:
    epoch_losses: list[float] = field(default_factory=list)
    """Mean loss of the four sandwich subnets, per epoch (every epoch trained, across resumes)."""
    seconds: float = 0.0
    """Training time spent by this process (a resumed run adds only its own)."""
    resumed_from: int = 0
    """Epochs already done in the checkpoint found at the start (0: trained from scratch)."""


@dataclass
class SandwichStep:
    losses: dict[str, list[float]]
    """Loss per subnet kind: `largest`, `smallest`, `random`."""
    archs: list[dict[str, Any]]


def sandwich_step(net: Supernet, images: torch.Tensor, labels: torch.Tensor, optimizer: torch.optim.Optimizer,
                  rng: random.Random, *, random_subnets: int = RANDOM_SUBNETS) -> SandwichStep:
    """One optimizer step on the largest, the smallest and `random_subnets` random subnets: gradients of all of
    them summed, the largest learning from the labels and the others from its (detached) outputs as well."""
    optimizer.zero_grad(set_to_none=True)
    teacher: torch.Tensor | None = None
    step = SandwichStep(losses={}, archs=[])
    for pick in ["largest", "smallest"] + ["random"] * random_subnets:
        arch, size = net.span.arch(pick, rng), net.span.input_size(pick, rng)
        x = images if size == images.shape[-1] else F.interpolate(images, size=(size, size), mode="bilinear",
                                                                  antialias=True, align_corners=False)
        logits = net(x, arch)
        if teacher is None:
            loss = F.cross_entropy(logits, labels)
            teacher = logits.detach()
        else:
            loss = distillation_loss(logits, teacher, labels, temperature=1.0, alpha=INPLACE_ALPHA)
        if not torch.isfinite(loss):
            raise TrialError(f"supernet loss became {loss.item()} on the {pick} subnet {arch}")
        loss.backward()
        step.losses.setdefault(pick, []).append(loss.item())
        step.archs.append(arch)
    optimizer.step()
    return step


def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Reset every BatchNorm's running statistics and recompute them as the exact average over `batches`.

    An inherited subnet's statistics were accumulated over many different subnets; its own are what evaluation
    needs. Only BatchNorm runs in train mode (dropout stays off) and nothing has a gradient, so only BatchNorm
    buffers change.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
        m.train()
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.eval()
    return model


def calibration_batches(images: torch.Tensor, batch_size: int, count: int = BN_BATCHES, seed: int = 0
                        ) -> list[torch.Tensor]:
    """`count` random training batches (at least two images each, as BatchNorm needs), fixed by `seed`."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    size = max(2, min(batch_size, len(images) // count or len(images)))
    return [images[order[i * size:(i + 1) * size]] for i in range(count) if len(order[i * size:(i + 1) * size]) >= 2]


def train_supernet(net: Supernet, images: torch.Tensor, labels: torch.Tensor, recipe: SupernetRecipe, *,
                   checkpoint: Path | None = None, device: str = "cpu",
                   on_epoch: Callable[[int, float], None] | None = None) -> SupernetLog:
    """Train `net` in place for `recipe.epochs` with AdamW and a cosine schedule (as candidates train), saving a
    checkpoint after every epoch; a checkpoint found at the start is resumed exactly, one already finished is
    loaded and returned at once."""
    generator = torch.Generator().manual_seed(recipe.seed)
    torch.manual_seed(recipe.seed)
    net.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps_per_epoch = math.ceil(len(labels) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, max(1, total // 10))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: (s + 1) / warmup if s < warmup else
                                                 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup))))
    log = SupernetLog()
    if checkpoint is not None and checkpoint.exists():
        state = _load(checkpoint, net, recipe)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        log.epoch_losses, log.resumed_from = list(state["epoch_losses"]), int(state["epoch"])
    start = time.monotonic()
    images, labels = images.to(device), labels.to(device)
    net.train()
    for epoch in range(log.resumed_from, recipe.epochs):
        order = torch.randperm(len(labels), generator=generator)
        running, seen = 0.0, 0
        for s in range(steps_per_epoch):
            index = order[s * recipe.batch_size:(s + 1) * recipe.batch_size].to(device)
            if len(index) < 2:  # BatchNorm cannot train on a single sample
                continue
            rng = random.Random(int(torch.randint(2**31, (1,), generator=generator)))
            batch = random_affine(images[index], recipe.augment, generator)
            step = sandwich_step(net, batch, labels[index], optimizer, rng)
            schedule.step()
            losses = [v for values in step.losses.values() for v in values]
            running += sum(losses) / len(losses) * len(index)
            seen += len(index)
            interrupt.check()
        log.epoch_losses.append(running / max(1, seen))
        if checkpoint is not None:
            _save(checkpoint, net, recipe, epoch + 1, optimizer, schedule, generator, log.epoch_losses)
        if on_epoch is not None:
            on_epoch(epoch + 1, log.epoch_losses[-1])
    net.eval().to("cpu")
    log.seconds = time.monotonic() - start
    return log


def checkpoint_epochs(path: Path) -> int | None:
    """Epochs the checkpoint at `path` holds (None when there is none)."""
    if not path.exists():
        return None
    return int(_read(path)["epoch"])


def load_supernet(path: Path, span: SupernetRange, recipe: SupernetRecipe) -> Supernet:
    """The finished supernet of a study; refused when the checkpoint is unfinished or of another space/recipe."""
    net = Supernet(span)
    state = _load(path, net, recipe)
    if int(state["epoch"]) < recipe.epochs:
        raise StudyError(f"{path}: the supernet has trained {state['epoch']} of {recipe.epochs} epochs; run "
                         "`nas search` on the study to finish it")
    return net.eval()


def _save(path: Path, net: Supernet, recipe: SupernetRecipe, epoch: int, optimizer: torch.optim.Optimizer,
          schedule: Any, generator: torch.Generator, losses: list[float]) -> None:
    buffer = io.BytesIO()
    torch.save({"model": net.state_dict(), "span": net.span.params, "recipe": asdict(recipe), "epoch": epoch,
                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                "epoch_losses": losses}, buffer)
    atomic_write_bytes(path, buffer.getvalue())  # a kill mid-write leaves the previous epoch's checkpoint


def _read(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise StudyError(f"{path}: cannot be read as a supernet checkpoint ({type(exc).__name__}); delete it to "
                         "train the supernet again") from None


def _load(path: Path, net: Supernet, recipe: SupernetRecipe) -> dict[str, Any]:
    state = _read(path)
    if state["span"] != net.span.params:
        raise StudyError(f"{path}: this supernet was trained on another search space ({state['span']}); use a new "
                         "--study, or delete the file to train it again")
    mine = {k: v for k, v in asdict(recipe).items() if k != "epochs"}
    theirs = {k: v for k, v in state["recipe"].items() if k != "epochs"}
    if mine != theirs or state["epoch"] > recipe.epochs:
        raise StudyError(f"{path}: this supernet was trained with another recipe ({state['recipe']}, not "
                         f"{asdict(recipe)}); use the same --supernet-epochs and seed, or a new --study")
    net.load_state_dict(state["model"])
    return state
