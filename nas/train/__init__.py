"""The training loop shared by tasks."""

from nas.train.distill import distillation_loss
from nas.train.loop import Distillation, TrainLog, train_classifier

__all__ = ["Distillation", "TrainLog", "distillation_loss", "train_classifier"]
