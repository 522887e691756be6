"""Tasks: what is learned and how it is scored. Each task is one module, registered with `register_task`."""

from nas.tasks._candidate import Candidate, CandidateScore, Stage, measure_at_batch, target_at_batch
from nas.tasks._latency import ScanLatency, StageTiming
from nas.tasks._objectives import OBJECTIVES, Direction, Objective
from nas.tasks._task import TASKS, ClassificationTask, Task, get_task, list_tasks, register_task

from nas.tasks import xray as _xray  # noqa: E402,F401
from nas.tasks import nodule as _nodule  # noqa: E402,F401
from nas.tasks import malignancy as _malignancy  # noqa: E402,F401

__all__ = ["OBJECTIVES", "TASKS", "Candidate", "CandidateScore", "ClassificationTask", "Direction", "Objective",
           "ScanLatency", "Stage", "StageTiming", "Task", "get_task", "list_tasks", "measure_at_batch",
           "register_task", "target_at_batch"]
