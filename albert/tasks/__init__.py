"""Fine-tuning tasks, one module each: file reader, feature builder, label space and metric.

`get_task(name, options)` builds one; `TASKS` lists them; `task_for_architecture` maps a saved
model's head class back to its task; `default_task_files()` is the bundled labelled task
(which book does a passage come from: Austen, the King James Bible or Botchan).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from albert.errors import AlbertError
from albert.tasks.common import Task, TaskOptions
from albert.tasks.multiple_choice import MultipleChoiceTask
from albert.tasks.question_answering import QuestionAnsweringTask
from albert.tasks.text_classification import TextClassificationTask
from albert.tasks.token_classification import TokenClassificationTask

TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (TextClassificationTask, TokenClassificationTask, QuestionAnsweringTask, MultipleChoiceTask)
}

__all__ = ["TASKS", "Task", "TaskOptions", "default_task_files", "get_task", "task_for_architecture"]


def get_task(name: str, options: TaskOptions | None = None) -> Task:
    if name not in TASKS:
        raise AlbertError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name](options)


def task_for_architecture(architecture: str) -> str | None:
    return next((name for name, cls in TASKS.items() if cls.model_class == architecture), None)


def default_task_files() -> tuple[Path, Path]:
    """(train, dev) CSV files of the bundled task: `label,text` with label austen / kjv / botchan."""
    root = Path(str(resources.files("albert") / "resources"))
    return root / "task_train.csv", root / "task_dev.csv"
