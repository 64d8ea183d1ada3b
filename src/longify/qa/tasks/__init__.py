"""QA benchmarks behind one registry: task name -> loader yielding ``QAExample``.

Every loader is ``load(path, *, split, languages=None, strict=True, **task_options) -> Iterator[QAExample]``.
Variants of a benchmark are registered tasks with fixed loader options (as lm-evaluation-harness does):
``mlqa-gxlt`` (all 49 context/question pairs), ``triviaqa-web`` / ``triviaqa-wikipedia``. A task with a
``gold`` function can list its official scoring keys without reading its evidence (TriviaQA); ``average``
says which subsets its headline average is taken over (TyDi QA GoldP: the non-English languages).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.tasks.example import Answer, GoldUnit, QAExample, check_example, examples_to_dataset
from longify.qa.tasks.jsonfile import load_json_file, write_jsonl
from longify.qa.tasks.mlqa import MLQA_LANGUAGES, load_mlqa
from longify.qa.tasks.squad import load_squad
from longify.qa.tasks.triviaqa import load_triviaqa, triviaqa_units
from longify.qa.tasks.tydiqa import TYDIQA_LANGUAGES, load_tydiqa
from longify.qa.tasks.xquad import XQUAD_LANGUAGES, XQUAD_PUBLISHED_LANGUAGES, load_xquad


@dataclass(frozen=True)
class AverageRule:
    """Which subsets (languages, MLQA pairs) a benchmark's headline average is the unweighted mean of."""

    description: str
    exclude: tuple[str, ...] = ()
    official: tuple[str, ...] = ()  # the subsets of the benchmark's published average (empty: no such set)
    benchmark: str = ""

    def subsets(self, present: Sequence[str]) -> list[str]:
        """The averaged subsets among ``present`` (all of them when the rule would leave none)."""
        kept = [s for s in present if s not in self.exclude]
        return kept or list(present)

    def missing(self, averaged: Sequence[str]) -> list[str]:
        """The subsets of the official average that ``averaged`` lacks."""
        return [s for s in self.official if s not in averaged]


ALL_SUBSETS = AverageRule("unweighted mean over all evaluated languages")


@dataclass(frozen=True)
class QATask:
    """A benchmark: its loader, the metric its official evaluation uses, its languages and default split.

    ``options``: loader options fixed by this variant; ``accepts``: the loader options the ``--mlqa_pairs`` /
    ``--triviaqa_word_budget`` flags may set; ``gold``: lists the official scoring keys without evidence.
    """

    name: str
    load: Callable[..., Iterator[QAExample]]
    metric: str
    languages: tuple[str, ...]
    split: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    accepts: tuple[str, ...] = ()
    gold: Callable[..., list[GoldUnit]] | None = None
    average: AverageRule = ALL_SUBSETS
    plain: bool = False  # its files carry no language: labelled with --languages' one, or --lang, else en


_MLQA_FILES = "folder of {split}-context-c-question-q.json"
_TRIVIAQA_FILES = "TriviaQA rc folder (qa/, evidence/) or a qa/*.json file"
_TYDIQA_AVERAGE = AverageRule(
    "TyDi QA GoldP protocol: unweighted mean over the non-English languages (English is left out)",
    ("en",),
    tuple(code for code in TYDIQA_LANGUAGES.values() if code != "en"),
    "TyDi QA GoldP",
)
_MLQA_PROTOCOL = "MLQA protocol: unweighted mean over the evaluated context-question pairs"
_MLQA_AVERAGE = AverageRule(_MLQA_PROTOCOL, official=MLQA_LANGUAGES, benchmark="MLQA")  # the 7 XLT tasks
_MLQA_GXLT_AVERAGE = AverageRule(
    _MLQA_PROTOCOL,
    official=tuple(c if c == q else f"{c}-{q}" for c in MLQA_LANGUAGES for q in MLQA_LANGUAGES),
    benchmark="MLQA G-XLT",
)
_XQUAD_AVERAGE = AverageRule(  # official: the 11 languages of the published averages (no ro)
    ALL_SUBSETS.description, official=XQUAD_PUBLISHED_LANGUAGES, benchmark="XQuAD"
)


def _triviaqa(name: str, domain: str | None, what: str) -> QATask:
    options = {"domain": domain} if domain else {}
    return QATask(
        name,
        load_triviaqa,
        "triviaqa",
        ("en",),
        "dev",
        f"{what}: {_TRIVIAQA_FILES}",
        options,
        ("max_words",),
        triviaqa_units,
        AverageRule("one language (en)"),
    )


TASKS: dict[str, QATask] = {
    "squad": QATask(
        "squad", load_squad, "squad", ("en",), "dev", "SQuAD v1.1 JSON file or folder", plain=True
    ),
    "xquad": QATask(
        "xquad",
        load_xquad,
        "squad",
        XQUAD_LANGUAGES,
        "test",
        "folder of xquad.{lang}.json",
        average=_XQUAD_AVERAGE,
    ),
    "mlqa": QATask(
        "mlqa",
        load_mlqa,
        "mlqa",
        MLQA_LANGUAGES,
        "dev",
        f"MLQA (XLT, same-language): {_MLQA_FILES}",
        accepts=("pairs",),
        average=_MLQA_AVERAGE,
    ),
    "mlqa-gxlt": QATask(
        "mlqa-gxlt",
        load_mlqa,
        "mlqa",
        MLQA_LANGUAGES,
        "dev",
        f"MLQA G-XLT (all 49 pairs): {_MLQA_FILES}",
        {"pairs": "all"},
        ("pairs",),
        average=_MLQA_GXLT_AVERAGE,
    ),
    "tydiqa": QATask(
        "tydiqa",
        load_tydiqa,
        "squad",
        tuple(TYDIQA_LANGUAGES.values()),
        "dev",
        "TyDi QA GoldP v1.1 JSON",
        average=_TYDIQA_AVERAGE,
    ),
    "triviaqa": _triviaqa("triviaqa", None, "TriviaQA, domain from the file (a folder: wikipedia)"),
    "triviaqa-wikipedia": _triviaqa("triviaqa-wikipedia", "wikipedia", "TriviaQA Wikipedia"),
    "triviaqa-web": _triviaqa("triviaqa-web", "web", "TriviaQA Web"),
    "json": QATask(
        "json", load_json_file, "squad", (), "dev", "any SQuAD-format .json or .jsonl file", plain=True
    ),
}

# Command-line flags that set a loader option, and the option each sets.
FLAG_OPTIONS = {"mlqa_pairs": "pairs", "triviaqa_word_budget": "max_words"}


def get_task(name: str) -> QATask:
    """The registered task, or a one-line error listing the choices."""
    if name not in TASKS:
        raise LongifyError(f"--dataset {name}: expected one of {sorted(TASKS)}")
    return TASKS[name]


def file_languages(name: str, languages: Sequence[str] | None, lang: str | None) -> list[str] | None:
    """The ``languages`` a loader gets: ``--languages``, or for a plain SQuAD-format file (no language of its
    own) the one ``--lang`` names, so that ``--metric mlqa --lang de`` scores it as ``de``, not ``en``."""
    if languages or not lang or not get_task(name).plain:
        return list(languages) if languages else None
    return [lang]


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
    merged = {**task.options, **options}
    return task.load(path, split=split or task.split, languages=languages, strict=strict, **merged)


def load_gold(
    name: str,
    path: str | Path,
    *,
    split: str | None = None,
    languages: Sequence[str] | None = None,
    **options: Any,
) -> list[GoldUnit] | None:
    """The task's official scoring units read without evidence, or None when it has no ``gold`` function."""
    task = get_task(name)
    if task.gold is None:
        return None
    return task.gold(path, split=split or task.split, languages=languages, **{**task.options, **options})


def flag_options(name: str, **flags: Any) -> dict[str, Any]:
    """Loader options from the task flags given (``mlqa_pairs="en-de,de-en"`` -> ``pairs=["en-de", ...]``).

    A flag the task does not take is a one-line error naming the tasks that take it.
    """
    task = get_task(name)
    options: dict[str, Any] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        option = FLAG_OPTIONS[flag]
        if option not in task.accepts:
            takers = sorted(n for n, t in TASKS.items() if option in t.accepts)
            raise LongifyError(f"--{flag}: not an option of --dataset {name}; it is for {takers}")
        if option == "pairs" and value not in ("same", "all"):
            value = [p.strip() for p in str(value).split(",") if p.strip()]
        if option == "max_words" and value == 0:
            value = None  # whole documents
        options[option] = value
    return options


def data_flag_options(data: Any, name: str) -> dict[str, Any]:
    """``flag_options`` for the task flags of a ``QADataArguments``."""
    return flag_options(name, **{flag: getattr(data, flag, None) for flag in FLAG_OPTIONS})


__all__ = [
    "ALL_SUBSETS",
    "FLAG_OPTIONS",
    "TASKS",
    "Answer",
    "AverageRule",
    "GoldUnit",
    "QAExample",
    "QATask",
    "check_example",
    "data_flag_options",
    "examples_to_dataset",
    "file_languages",
    "flag_options",
    "get_task",
    "load_examples",
    "load_gold",
    "write_jsonl",
]
