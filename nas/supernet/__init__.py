"""A weight-sharing supernet of the dsconv family, trained once per study, from which one-shot trials inherit
their weights (`nas search --strategy one-shot`)."""

from nas.supernet._net import FAMILY, Supernet, SupernetRange, slice_to
from nas.supernet._train import (
    BN_BATCHES, CHECKPOINT, SandwichStep, SupernetLog, SupernetRecipe, calibration_batches, checkpoint_epochs,
    load_supernet, recalibrate_bn, sandwich_step, train_supernet,
)

__all__ = ["BN_BATCHES", "CHECKPOINT", "FAMILY", "SandwichStep", "Supernet", "SupernetLog", "SupernetRange", "SupernetRecipe",
           "calibration_batches", "checkpoint_epochs", "load_supernet", "recalibrate_bn", "sandwich_step",
           "slice_to", "train_supernet"]
