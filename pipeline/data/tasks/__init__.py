"""Task registry: ``data.task`` names one of these."""

from __future__ import annotations

from pipeline.data.tasks.arithmetic import Addition
from pipeline.data.tasks.base import Task, TokenSplit, TokenTask, VectorSplit, VectorTask
from pipeline.data.tasks.co2 import CO2
from pipeline.data.tasks.dates import Dates
from pipeline.data.tasks.files import Files
from pipeline.data.tasks.g2p import G2P
from pipeline.data.tasks.synthetic import Copy, Reverse, Sort
from pipeline.data.tasks.vectors import Vectors

TASKS: dict[str, type[Task]] = {
    "copy": Copy,
    "reverse": Reverse,
    "sort": Sort,
    "addition": Addition,
    "dates": Dates,
    "vectors": Vectors,
    "g2p": G2P,
    "co2": CO2,
    "files": Files,
}


def make_task(name: str, **options) -> Task:
    """Build the task called ``name`` with its own options."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name](**options)


__all__ = ["TASKS", "Task", "TokenSplit", "TokenTask", "VectorSplit", "VectorTask", "make_task"]
