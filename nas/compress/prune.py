"""Structured pruning with torch-pruning: channels are really removed, so the exported model is smaller and faster.

Settled point 1: the prune ratio fixes every pruned layer's channel count up front (`plan_channels`, per layer,
rounded to the profile's multiple) and the spec stores those counts. Trained weights only decide *which*
channels go (`prune_to_channels`, L1 magnitude over each dependency group). So phase 1 measures exactly the shapes
phase 2 ships, and any member is rebuilt from its spec alone (`build_model`).
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import torch
from torch import nn

from nas.errors import StudyError, TrialError
from nas.models import create_model
from nas.spec import Spec

PRUNABLE = (nn.Conv2d, nn.Conv3d, nn.Linear)


def _output_layer(model: nn.Module) -> nn.Module:
    """The classifier: its outputs are the classes, so it is never pruned."""
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    layers = [m for m in model.modules() if isinstance(m, PRUNABLE)]
    linear = [m for m in layers if isinstance(m, nn.Linear)]
    return (linear or layers)[-1]


def _out_channels(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _channels(model: nn.Module) -> dict[str, int]:
    return {name: _out_channels(m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def _example(spec: Spec) -> torch.Tensor:
    return torch.zeros(1, *spec.input_shape)


def plan_channels(model: nn.Module, spec: Spec, ratio: float, round_to: int = 1) -> dict[str, int]:
    """The output channel count of every layer that pruning at `ratio` shrinks ({module name: channels}).

    Per-layer pruning: each dependency group keeps (1 - ratio) of its channels, rounded to `round_to`, so the
    counts depend on the architecture and the ratio only, never on weights.
    """
    import torch_pruning as tp  # imports timm, hence torchvision: seconds, paid only by a pruned candidate

    if not 0 <= ratio < 1:
        raise ValueError(f"prune_ratio must be in [0, 1), got {ratio}")
    if ratio == 0:
        return {}
    before = _channels(model)
    pruned = copy.deepcopy(model).eval()
    try:
        pruner = tp.pruner.MetaPruner(
            pruned, _example(spec), importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=ratio,
            ignored_layers=[_output_layer(pruned)], round_to=round_to if round_to > 1 else None,
        )
        pruner.step()
    except Exception as exc:  # torch-pruning raises assorted errors for graphs it cannot trace
        raise TrialError(f"structured pruning at ratio {ratio} failed: {type(exc).__name__}: {exc}") from exc
    return {name: count for name, count in _channels(pruned).items() if count != before[name]}


def prune_to_channels(model: nn.Module, spec: Spec, channels: dict[str, int]) -> nn.Module:
    """Remove channels in place until each named layer has the given count, dropping the lowest-L1 ones.

    Pruning one layer's outputs also prunes what is coupled to them (batch norms, depthwise convolutions, the
    inputs of the next layer, residual partners), which is why several names may already be at their count when
    reached.
    """
    import torch_pruning as tp

    model.eval()
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=_example(spec))
    importance = tp.importance.MagnitudeImportance(p=1)
    modules = dict(model.named_modules())
    for name, target in channels.items():
        layer = modules.get(name)
        if layer is None:
            raise TrialError(f"pruned layer {name!r} of the spec does not exist in the {spec.family} model")
        current = _out_channels(layer)
        if current == target:
            continue
        if target > current or target < 1:
            raise TrialError(f"cannot prune {name!r} from {current} to {target} channels")
        prune_fn = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else tp.prune_conv_out_channels
        scores = importance(graph.get_pruning_group(layer, prune_fn, idxs=list(range(current))))
        drop = torch.argsort(scores)[: current - target].tolist()
        group = graph.get_pruning_group(layer, prune_fn, idxs=drop)
        if not graph.check_pruning_group(group):
            raise TrialError(f"pruning {name!r} to {target} channels would empty a coupled layer")
        group.prune()
    return model


def build_model(spec: Spec) -> nn.Module:
    """The model a spec describes, pruned shapes included (load weights into it to get a trained member)."""
    model = create_model(spec)
    if spec.compression.channels:
        prune_to_channels(model, spec, spec.compression.channels)
    return model


def load_model(spec: Spec, weights: Path) -> nn.Module:
    """A trained member, in eval mode, from its spec and state dict."""
    model = build_model(spec)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise StudyError(f"{weights}: cannot be read as PyTorch weights ({first}); the file is truncated or "
                         "damaged: restore it, or run the trial again") from None
    model.load_state_dict(state)
    return model.eval()
