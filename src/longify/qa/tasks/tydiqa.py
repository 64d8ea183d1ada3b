"""TyDi QA GoldP v1.1: SQuAD format, one file per split, the language in each id (``english-123...``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from longify.errors import LongifyError
from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squadformat import iter_nested, read_json, resolve_file

TYDIQA_LANGUAGES = {
    "english": "en",
    "arabic": "ar",
    "bengali": "bn",
    "finnish": "fi",
    "indonesian": "id",
    "korean": "ko",
    "russian": "ru",
    "swahili": "sw",
    "telugu": "te",
}


def tydiqa_language(qid: str, source: str | Path = "TyDi QA") -> str:
    """The ISO code of a GoldP id's language prefix (``arabic-2387...-1`` -> ``ar``)."""
    prefix = qid.split("-", 1)[0].lower()
    if prefix not in TYDIQA_LANGUAGES:
        raise LongifyError(
            f"{source}: question {qid}: id should start with a language name, one of {list(TYDIQA_LANGUAGES)}"
        )
    return TYDIQA_LANGUAGES[prefix]


def _codes(languages: Sequence[str]) -> set[str]:
    codes = set()
    for lang in languages:
        code = TYDIQA_LANGUAGES.get(lang.lower(), lang.lower())
        if code not in TYDIQA_LANGUAGES.values():
            raise LongifyError(
                f"TyDi QA has no language {lang!r}; choose from {sorted(TYDIQA_LANGUAGES.values())}"
            )
        codes.add(code)
    return codes


def load_tydiqa(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    strict: bool = True,
) -> Iterator[QAExample]:
    """GoldP examples of all languages, or of ``languages`` (codes like ``en`` or names like ``english``).

    ``path`` is the file or a directory holding ``tydiqa-goldp-v1.1-{split}.json`` (or XTREME's split
    per-language dev files). Train on all languages, one, or a subset by passing ``languages``.
    """
    keep = _codes(languages) if languages else None
    for file in tydiqa_files(Path(path), split):
        for example in iter_nested(
            read_json(file), file, language=lambda qid, f=file: tydiqa_language(qid, f), strict=strict
        ):
            if keep is None or example.language in keep:
                yield example


def tydiqa_files(path: Path, split: str) -> list[Path]:
    """The official single file, or XTREME's per-language ``tydiqa-goldp-{split}-{language}.json`` files."""
    if path.is_dir() and not (path / f"tydiqa-goldp-v1.1-{split}.json").is_file():
        for folder in (path, path / f"tydiqa-goldp-v1.1-{split}"):
            parts = sorted(folder.glob(f"tydiqa-goldp-{split}-*.json"))
            if parts:
                return parts
    return [resolve_file(path, [f"tydiqa-goldp-v1.1-{split}.json"])]
