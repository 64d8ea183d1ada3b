"""The one record every QA benchmark loader yields, plus its checks and its flat (HF ``squad``) form."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from longify.errors import LongifyError


class Answer(NamedTuple):
    """One gold span: its text and the character offset where it starts in the context."""

    text: str
    answer_start: int


@dataclass
class QAExample:
    """One extractive-QA question over one context.

    ``answers`` are spans of ``context`` (``context[start:start+len(text)] == text`` is checked by the
    loaders). ``language`` is the context language (MLQA scores in it). ``aliases`` are extra gold
    strings used only for scoring (TriviaQA's normalised aliases, which may not occur in the context).
    Examples sharing a ``group_id`` are scored once, as one question (TriviaQA Wikipedia: one question,
    several evidence documents).
    """

    id: str
    question: str
    context: str
    answers: list[Answer]
    language: str
    title: str = ""
    question_language: str | None = None
    qid: str | None = None
    doc_id: str | None = None
    group_id: str | None = None
    aliases: list[str] = field(default_factory=list)

    def gold_texts(self) -> list[str]:
        """The strings a prediction is scored against: the aliases if any, else the answer texts."""
        return list(self.aliases) if self.aliases else [a.text for a in self.answers]

    def to_squad_dict(self) -> dict[str, Any]:
        """The flat record of HF ``datasets`` "squad" (what ``run_qa --train_file`` reads), plus our fields."""
        record = asdict(self)
        record["answers"] = {
            "text": [a.text for a in self.answers],
            "answer_start": [a.answer_start for a in self.answers],
        }
        return record


@dataclass(frozen=True)
class GoldUnit:
    """One item an official evaluation scores: the key its prediction is read under, its subset (language or
    ``context-question`` pair), its gold strings and metric language, and ``members``: the example ids whose
    predictions stand in for it when the key itself is absent (a TriviaQA Wikipedia question's documents).

    Units exist without examples (a TriviaQA document with empty evidence still counts, scoring 0), so the
    denominator is the official one, not the number of examples a model could read.
    """

    key: str
    subset: str
    golds: tuple[str, ...]
    lang: str
    members: tuple[str, ...] = ()


def check_example(example: QAExample, source: str | Path) -> QAExample:
    """Raise a one-line LongifyError naming ``source`` and the question id if ``example`` is unusable."""
    where = f"{source}: question {example.id}"
    if not example.question.strip():
        raise LongifyError(f"{where}: empty question")
    if not example.context.strip():
        raise LongifyError(f"{where}: empty context")
    for answer in example.answers:
        start, text = answer.answer_start, answer.text
        if not text:
            raise LongifyError(f"{where}: empty answer text at answer_start {start}")
        found = example.context[start : start + len(text)] if 0 <= start < len(example.context) else None
        if found != text:
            shown = "outside the context" if found is None else f"found {found!r}"
            raise LongifyError(
                f"{where}: answer {text!r} is not at answer_start {start} of the context ({shown})"
            )
    return example


def realign_answers(example: QAExample) -> list[Answer]:
    """Answers moved to the occurrence of their text nearest the given start; unfindable ones dropped.

    Used by the loaders' ``strict=False`` mode for files with off-by-a-few offsets.
    """
    fixed: list[Answer] = []
    for text, start in example.answers:
        if text and example.context[start : start + len(text)] == text:
            fixed.append(Answer(text, start))
            continue
        hits, pos = [], example.context.find(text) if text else -1
        while pos != -1:
            hits.append(pos)
            pos = example.context.find(text, pos + 1)
        if hits:
            fixed.append(Answer(text, min(hits, key=lambda p: abs(p - start))))
    return fixed


def examples_to_dataset(examples: Iterable[QAExample]) -> Any:
    """A ``datasets.Dataset`` with one flat squad-style row per example (answers as text/answer_start lists)."""
    import datasets

    rows = [ex.to_squad_dict() for ex in examples]
    if not rows:
        raise LongifyError("no examples to build a dataset from")
    return datasets.Dataset.from_list(rows)
