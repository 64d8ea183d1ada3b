"""QA benchmarks behind one registry: task name -> loader yielding ``QAExample``.

Every loader is ``load(path, *, split, languages=None, strict=True, **task_options) -> Iterator[QAExample]``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.tasks.example import Answer, QAExample, check_example, examples_to_dataset
from longify.qa.tasks.jsonfile import load_json_file, write_jsonl
from longify.qa.tasks.mlqa import MLQA_LANGUAGES, load_mlqa
from longify.qa.tasks.squad import load_squad
from longify.qa.tasks.triviaqa import load_triviaqa
from longify.qa.tasks.tydiqa import TYDIQA_LANGUAGES, load_tydiqa
from longify.qa.tasks.xquad import XQUAD_LANGUAGES, load_xquad


@dataclass(frozen=True)
class QATask:
    """A benchmark: its loader, the metric its official evaluation uses, its languages and default split."""

    name: str
    load: Callable[..., Iterator[QAExample]]
    metric: str
    languages: tuple[str, ...]
    split: str
    description: str


TASKS: dict[str, QATask] = {
    "squad": QATask("squad", load_squad, "squad", ("en",), "dev", "SQuAD v1.1 JSON file or folder"),
    "xquad": QATask("xquad", load_xquad, "squad", XQUAD_LANGUAGES, "test", "folder of xquad.{lang}.json"),
    "mlqa": QATask(
        "mlqa", load_mlqa, "mlqa", MLQA_LANGUAGES, "dev", "folder of {split}-context-c-question-q.json"
    ),
    "tydiqa": QATask(
        "tydiqa", load_tydiqa, "squad", tuple(TYDIQA_LANGUAGES.values()), "dev", "TyDi QA GoldP v1.1 JSON"
    ),
    "triviaqa": QATask(
        "triviaqa", load_triviaqa, "triviaqa", ("en",), "dev", "TriviaQA rc folder (qa/, evidence/)"
    ),
    "json": QATask("json", load_json_file, "squad", (), "dev", "any SQuAD-format .json or .jsonl file"),
}


def get_task(name: str) -> QATask:
    """The registered task, or a one-line error listing the choices."""
    if name not in TASKS:
        raise LongifyError(f"--dataset {name}: expected one of {sorted(TASKS)}")
    return TASKS[name]


def load_examples(
    name: str,
    path: str | Path,
    *,
    split: str | None = None,
    languages: Sequence[str] | None = None,
    strict: bool = True,
    **options: Any,
) -> Iterator[QAExample]:
    """Examples of task ``name`` read from ``path`` (``split`` defaults to the task's evaluation split)."""
    task = get_task(name)
    return task.load(path, split=split or task.split, languages=languages, strict=strict, **options)


__all__ = [
    "TASKS",
    "Answer",
    "QAExample",
    "QATask",
    "check_example",
    "examples_to_dataset",
    "get_task",
    "load_examples",
    "write_jsonl",
]
