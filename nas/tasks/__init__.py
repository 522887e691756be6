"""Tasks: what is learned and how it is scored."""

from nas.tasks._task import TASKS, Task, get_task, list_tasks

from nas.tasks import xray as _xray  # noqa: E402,F401
from nas.tasks import nodule as _nodule  # noqa: E402,F401

__all__ = ["TASKS", "Task", "get_task", "list_tasks"]
