"""SQuAD v1.1: ``{split}-v1.1.json`` (nested ``data/paragraphs/qas``), read by the shared SQuAD-format parser."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squadformat import iter_nested, read_json, resolve_file, single_language


def load_squad(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    strict: bool = True,
) -> Iterator[QAExample]:
    """SQuAD v1.1: ``path`` is the JSON file or a directory holding ``{split}-v1.1.json``."""
    file = resolve_file(path, [f"{split}-v1.1.json"])
    language = single_language(languages, "en", file)
    yield from iter_nested(read_json(file), file, language=language, strict=strict)
