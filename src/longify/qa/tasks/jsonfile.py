"""Any SQuAD-format file: nested v1.1 JSON, flat HF-style JSON (``{"data": [records]}``), or JSONL records.

A flat record is ``{"id", "question", "context", "answers", ["title"], ["language"]}`` with answers either
``[{"text", "answer_start"}]`` or ``{"text": [...], "answer_start": [...]}`` (what HF ``run_qa`` reads).
Both shapes load here, so nested SQuAD files need no conversion step (transformers#11869); ``write_jsonl``
writes the flat shape for tools that only read that.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squadformat import iter_nested, make_example, read_json, single_language
from longify.textfiles import utf8_lines


def _iter_flat(
    records: Iterable[tuple[str, Any]], source: Path, *, language: str, strict: bool, require_answers: bool
) -> Iterator[QAExample]:
    seen: set[str] = set()
    for where, record in records:
        if not isinstance(record, dict):
            raise LongifyError(f"{where}: expected a JSON object, got {type(record).__name__}")
        qid = record.get("id")
        if not isinstance(qid, str | int) or isinstance(qid, bool):
            raise LongifyError(f"{where}: missing field 'id'")
        qid = str(qid)
        context = record.get("context")
        if not isinstance(context, str):
            raise LongifyError(f"{source}: question {qid}: missing field 'context'")
        if qid in seen:
            raise LongifyError(f"{source}: question {qid}: duplicate question id")
        seen.add(qid)
        example = make_example(
            {**record, "id": qid},
            context,
            source=source,
            language=str(record.get("language") or language),
            title=str(record.get("title") or ""),
            strict=strict,
            require_answers=require_answers,
        )
        if example is not None:
            yield example


def _jsonl_records(path: Path) -> Iterator[tuple[str, Any]]:
    for number, line in utf8_lines(path):  # unreadable or not UTF-8: one line naming the place
        if line.strip():
            try:
                yield f"{path}: line {number}", json.loads(line)
            except json.JSONDecodeError as e:
                raise LongifyError(f"{path}: line {number}: not valid JSON ({e.msg})") from None


_FLAT_KEYS = ("id", "question", "context", "answers")


def _is_nested(articles: list[Any]) -> bool:
    """Nested SQuAD (``{"title", "paragraphs"}`` articles) rather than flat records: the first article
    has ``paragraphs``, or has none of a flat record's fields (an article missing its ``paragraphs`` is
    then reported as that, not as a record missing its ``id``)."""
    first = articles[0] if articles else None
    if not isinstance(first, dict):
        return False
    return "paragraphs" in first or not any(key in first for key in _FLAT_KEYS)


def load_json_file(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    strict: bool = True,
    require_answers: bool = True,
) -> Iterator[QAExample]:
    """Examples of one SQuAD-format ``.json`` / ``.jsonl`` file (``split`` is unused: the file is the split).

    ``languages`` (one code) labels records without a ``language`` field; default ``en``.
    ``require_answers=False`` admits unanswered questions (a test file to predict on).
    """
    del split
    path = Path(path)
    language = single_language(languages, "en", path)
    options = {"language": language, "strict": strict, "require_answers": require_answers}
    if path.suffix == ".jsonl":
        yield from _iter_flat(_jsonl_records(path), path, **options)
        return
    data = read_json(path)
    articles = data.get("data") if isinstance(data, dict) else None
    if not isinstance(articles, list):
        raise LongifyError(f"{path}: expected a SQuAD-format object with a 'data' list")
    if _is_nested(articles):
        yield from iter_nested(data, path, **options)
    else:
        yield from _iter_flat(((f"{path}: record {i}", r) for i, r in enumerate(articles)), path, **options)


def write_jsonl(examples: Iterable[QAExample], path: str | Path) -> int:
    """Write flat squad-style JSONL (one example a line) via a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for example in examples:
                f.write(json.dumps(example.to_squad_dict(), ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
