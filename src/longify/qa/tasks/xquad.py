"""XQuAD: ``xquad.{lang}.json`` per language, SQuAD v1.1 format, evaluation only (zero-shot from SQuAD)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from longify.errors import LongifyError
from longify.qa.tasks.example import QAExample
from longify.qa.tasks.squadformat import iter_nested, read_json

XQUAD_LANGUAGES = ("en", "es", "de", "el", "ru", "tr", "ar", "vi", "th", "zh", "hi", "ro")
# the languages of the published XQuAD averages (the XQuAD paper, XTREME): Romanian was added to the dataset later
XQUAD_PUBLISHED_LANGUAGES = XQUAD_LANGUAGES[:11]
_FILE = re.compile(r"xquad\.([a-z]{2})\.json$")


def xquad_files(path: str | Path, languages: Sequence[str] | None = None) -> dict[str, Path]:
    """Language -> file. Default: every one of the 12 languages present in the directory ``path``."""
    path = Path(path)
    if path.is_file():
        match = _FILE.search(path.name)
        if not match:
            raise LongifyError(f"{path}: expected a file named xquad.<lang>.json")
        if languages and match.group(1) not in languages:
            raise LongifyError(f"{path}: holds language {match.group(1)}, not {list(languages)}")
        return {match.group(1): path}
    if not path.is_dir():
        raise LongifyError(f"{path}: file or directory not found")
    unknown = sorted(set(languages or ()) - set(XQUAD_LANGUAGES))
    if unknown:
        raise LongifyError(f"{path}: XQuAD has no language {unknown}; choose from {list(XQUAD_LANGUAGES)}")
    wanted = list(languages) if languages else list(XQUAD_LANGUAGES)
    files = {lang: path / f"xquad.{lang}.json" for lang in wanted}
    present = {lang: file for lang, file in files.items() if file.is_file()}
    missing = [str(files[lang]) for lang in wanted if lang not in present]
    if (languages and missing) or not present:
        raise LongifyError(f"{missing[0]}: file not found (XQuAD language file)")
    return present


def load_xquad(
    path: str | Path,
    *,
    split: str = "test",
    languages: Sequence[str] | None = None,
    strict: bool = True,
) -> Iterator[QAExample]:
    """XQuAD examples, language by language (ids repeat across languages, so key results by language)."""
    del split  # XQuAD has one split
    for lang, file in xquad_files(path, languages).items():
        yield from iter_nested(read_json(file), file, language=lang, strict=strict)
