"""MLQA: ``{split}-context-{c}-question-{q}.json`` (SQuAD v1.1 format) for 7 languages and their 49 pairs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from longify.errors import LongifyError
from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squadformat import iter_nested, read_json

MLQA_LANGUAGES = ("en", "es", "de", "ar", "hi", "vi", "zh")
MLQA_SPLITS = ("dev", "test")


def mlqa_pairs(pairs: str | Sequence[str], languages: Sequence[str] | None) -> list[tuple[str, str]]:
    """(context, question) language pairs: ``"same"`` (the 7 MLQA tasks), ``"all"`` (49, G-XLT), or ``["en-de"]``."""
    langs = list(languages) if languages else list(MLQA_LANGUAGES)
    bad = sorted(set(langs) - set(MLQA_LANGUAGES))
    if bad:
        raise LongifyError(f"MLQA has no language {bad}; choose from {list(MLQA_LANGUAGES)}")
    named = {"same": [(c, c) for c in langs], "all": [(c, q) for c in langs for q in langs]}
    if isinstance(pairs, str) and pairs in named:
        return named[pairs]
    chosen = [pairs] if isinstance(pairs, str) else list(pairs)
    result = []
    for pair in chosen:
        c, _, q = pair.partition("-")
        if c not in MLQA_LANGUAGES or q not in MLQA_LANGUAGES:
            raise LongifyError(f"MLQA pair {pair!r}: expected 'same', 'all' or CONTEXT-QUESTION like 'en-de'")
        result.append((c, q))
    return result


def mlqa_file(path: Path, split: str, context: str, question: str) -> Path:
    """The pair's file in ``path`` or ``path/split`` (the official archive's ``MLQA_V1/{dev,test}/``)."""
    name = f"{split}-context-{context}-question-{question}.json"
    for folder in (path, path / split):
        if (folder / name).is_file():
            return folder / name
    raise LongifyError(f"{path / split / name}: file not found (MLQA pair file)")


def load_mlqa(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    strict: bool = True,
    pairs: str | Sequence[str] = "same",
) -> Iterator[QAExample]:
    """MLQA examples pair by pair; ``language`` is the context language, ``question_language`` the other.

    ``path`` is the folder of pair files (or ``MLQA_V1/``), or one pair file whose name gives the pair.
    """
    path = Path(path)
    if split not in MLQA_SPLITS:
        raise LongifyError(f"MLQA split {split!r}: expected one of {list(MLQA_SPLITS)}")
    if path.is_file():
        parts = path.stem.split("-")
        if len(parts) != 5 or parts[1] != "context" or parts[3] != "question":
            raise LongifyError(f"{path}: expected a name like dev-context-en-question-de.json")
        files = [(parts[2], parts[4], path)]
    elif path.is_dir():
        files = [(c, q, mlqa_file(path, split, c, q)) for c, q in mlqa_pairs(pairs, languages)]
    else:
        raise LongifyError(f"{path}: file or directory not found")
    for context_lang, question_lang, file in files:
        yield from iter_nested(
            read_json(file), file, language=context_lang, strict=strict, question_language=question_lang
        )
