"""The training loop shared by tasks."""

from nas.train.loop import TrainLog, train_classifier

__all__ = ["TrainLog", "train_classifier"]
