"""The SQuAD-format parser every loader shares: nested ``data/paragraphs/qas`` JSON into checked QA examples,
with one-line errors naming the file and the question id."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.tasks.example import Answer, QAExample, check_example, realign_answers
from longify.textfiles import path_kind, read_utf8

logger = logging.getLogger(__name__)


def read_json(path: str | Path) -> Any:
    """The parsed JSON of ``path``; a missing, unreadable, non-UTF-8 or invalid file is a one-line
    LongifyError naming the place (line and column; the byte offset of a byte that is not UTF-8)."""
    path = Path(path)
    text = read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise LongifyError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None


def resolve_file(path: str | Path, candidates: Sequence[str]) -> Path:
    """``path`` itself if it is a file, else the first of ``candidates`` inside the directory ``path``."""
    path = Path(path)
    kind = path_kind(path)  # a folder that may not be looked into is said so, not "not found"
    if kind == "file":
        return path
    if kind == "dir":
        for name in candidates:
            if path_kind(path / name) == "file":
                return path / name
        raise LongifyError(f"{path}: no {' or '.join(candidates)} in this directory")
    raise LongifyError(f"{path}: file or directory not found")


def single_language(languages: Sequence[str] | None, default: str, source: str | Path) -> str:
    """The one language a single-language file is labelled with (``--languages X`` or ``default``)."""
    if not languages:
        return default
    if len(languages) != 1:
        raise LongifyError(f"{source}: one file holds one language; got languages {list(languages)}")
    return languages[0]


def _field(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise LongifyError(f"{where}: missing field {key!r}")
    value = record[key]
    if kind is int and isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LongifyError(f"{where}: field {key!r} should be {kind.__name__}, got {type(value).__name__}")
    return value


def parse_answers(raw: Any, where: str) -> list[Answer]:
    """Answers as a list of ``{"text", "answer_start"}`` or as HF's ``{"text": [...], "answer_start": [...]}``."""
    if isinstance(raw, dict):
        texts, starts = _field(raw, "text", list, where), _field(raw, "answer_start", list, where)
        if len(texts) != len(starts):
            raise LongifyError(f"{where}: answers have {len(texts)} texts but {len(starts)} answer_starts")
        raw = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if not isinstance(raw, list):
        raise LongifyError(f"{where}: field 'answers' should be a list, got {type(raw).__name__}")
    return [Answer(_field(a, "text", str, where), _field(a, "answer_start", int, where)) for a in raw]


def make_example(
    qa: Any,
    context: str,
    *,
    source: Path,
    language: str,
    title: str = "",
    strict: bool = True,
    require_answers: bool = True,
    **extra: Any,
) -> QAExample | None:
    """One checked example from a SQuAD ``qas`` entry; ``None`` when ``strict=False`` drops it."""
    qid = _field(qa, "id", str, f"{source}: question in article {title!r}")
    where = f"{source}: question {qid}"
    example = QAExample(
        id=qid,
        question=_field(qa, "question", str, where),
        context=context,
        answers=parse_answers(qa.get("answers", []), where),
        language=language,
        title=title,
        **extra,
    )
    if strict:
        if require_answers and not example.answers:
            raise LongifyError(f"{where}: no answers (SQuAD v1.1 format needs at least one)")
        return check_example(example, source)
    had_answers = bool(example.answers)
    example.answers = realign_answers(example)
    usable = example.answers or not (had_answers or require_answers)
    if example.question.strip() and example.context.strip() and usable:
        return example
    logger.warning("%s: question %s skipped: no usable answer or empty text", source, qid)
    return None


def iter_nested(
    data: Any,
    source: Path,
    *,
    language: str | Callable[[str], str],
    strict: bool = True,
    **extra: Any,
) -> Iterator[QAExample]:
    """Examples of a nested SQuAD v1.1 object; ``language`` may be a function of the question id (TyDi)."""
    articles = _field(data, "data", list, f"{source}: top level")
    seen: set[str] = set()
    for number, article in enumerate(articles):
        title = article.get("title", "") if isinstance(article, dict) else ""
        paragraphs = _field(article, "paragraphs", list, f"{source}: article {title or number!r}")
        for paragraph in paragraphs:
            context = paragraph.get("context") if isinstance(paragraph, dict) else None
            for qa in _field(paragraph, "qas", list, f"{source}: paragraph in article {title!r}"):
                qid = _field(qa, "id", str, f"{source}: question in article {title!r}")
                if not isinstance(context, str):
                    raise LongifyError(f"{source}: question {qid}: paragraph has no string field 'context'")
                if qid in seen:
                    raise LongifyError(f"{source}: question {qid}: duplicate question id")
                seen.add(qid)
                lang = language(qid) if callable(language) else language
                example = make_example(
                    qa, context, source=source, language=lang, title=title, strict=strict, **extra
                )
                if example is not None:
                    yield example
