"""TriviaQA rc: ``qa/{wikipedia,web}-{split}.json`` + ``evidence/``, one example per (question, document).

Evidence is cut after ``max_words`` whitespace words (default 4096, the budget longformer's TriviaQA
conversion used; a tokenizer-exact budget belongs to the feature step). Answers are every
case-insensitive, word-bounded occurrence of a normalised alias in the kept evidence. Ids are
``QuestionId--Filename`` as in the official evaluation; Wikipedia examples share ``group_id=QuestionId`` so
scoring takes one answer per question across its documents (allenai/longformer#69), as the official
Wikipedia evaluation keys on QuestionId; Web is scored per (question, document).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.metrics import triviaqa_normalize
from longify.qa.tasks.example import Answer, QAExample
from longify.qa.tasks.squad import read_json, resolve_file, single_language

logger = logging.getLogger(__name__)

TRIVIAQA_DOMAINS = ("wikipedia", "web")
# Each page list of a question and the evidence folder its Filename is relative to.
_PAGE_SOURCES = {"EntityPages": "wikipedia", "SearchResults": "web"}


def truncate_words(text: str, max_words: int | None) -> str:
    """``text`` up to the end of its ``max_words``-th whitespace word (original characters kept)."""
    if max_words is None:
        return text
    for number, match in enumerate(re.finditer(r"\S+", text), start=1):
        if number == max_words:
            return text[: match.end()]
    return text


def find_answers(context: str, aliases: Sequence[str]) -> list[Answer]:
    """Every case-insensitive occurrence of any alias in ``context`` bounded by non-word characters."""
    spans: set[tuple[int, int]] = set()
    for alias in {a for a in aliases if a.strip()}:
        pattern = re.compile(rf"(?<!\w){re.escape(alias)}(?!\w)", re.IGNORECASE)
        spans.update(m.span() for m in pattern.finditer(context))
    return [Answer(context[s:e], s) for s, e in sorted(spans)]


def gold_aliases(answer: dict[str, Any]) -> list[str]:
    """What the official evaluation scores against: NormalizedAliases plus normalised HumanAnswers."""
    return list(answer.get("NormalizedAliases", [])) + [
        triviaqa_normalize(a) for a in answer.get("HumanAnswers", [])
    ]


def _qa_file(path: Path, domain: str, split: str) -> Path:
    names = [f"{domain}-{split}.json", f"qa/{domain}-{split}.json"]
    if split.startswith("verified-"):
        names += [f"verified-{domain}-{split[9:]}.json", f"qa/verified-{domain}-{split[9:]}.json"]
    return resolve_file(path, names)


def _read_evidence(file: Path, source: Path, qid: str) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LongifyError(f"{source}: question {qid}: evidence file {file} not found") from None


def load_triviaqa(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    strict: bool = True,
    domain: str = "wikipedia",
    max_words: int | None = 4096,
    evidence_dir: str | Path | None = None,
    drop_unanswered: bool | None = None,
) -> Iterator[QAExample]:
    """TriviaQA rc examples. ``path``: the rc folder (with ``qa/`` and ``evidence/``) or a ``qa/*.json`` file.

    ``drop_unanswered`` (default: only for train) skips documents where no alias occurs, as the
    reference conversion does; dev keeps them, since scoring uses the aliases, not spans.
    """
    del strict  # nothing to realign: spans are found, not read
    if domain not in TRIVIAQA_DOMAINS:
        raise LongifyError(f"TriviaQA domain {domain!r}: expected one of {list(TRIVIAQA_DOMAINS)}")
    single_language(languages, "en", "TriviaQA")
    file = _qa_file(Path(path), domain, split)
    evidence = Path(evidence_dir) if evidence_dir else file.parent.parent / "evidence"
    if not evidence.is_dir():
        evidence = file.parent / "evidence"
    drop = split.endswith("train") if drop_unanswered is None else drop_unanswered
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
        raise LongifyError(f"{file}: expected a TriviaQA object with a 'Data' list")
    for datum in data["Data"]:
        qid = datum.get("QuestionId") if isinstance(datum, dict) else None
        if not isinstance(qid, str):
            raise LongifyError(f"{file}: question without a string field 'QuestionId'")
        where = f"{file}: question {qid}"
        question = datum.get("Question")
        if not isinstance(question, str) or not question.strip():
            raise LongifyError(f"{where}: missing field 'Question'")
        answer = datum.get("Answer", {})
        if not isinstance(answer, dict) or not isinstance(answer.get("NormalizedAliases", []), list):
            raise LongifyError(f"{where}: field 'Answer' should hold a 'NormalizedAliases' list")
        aliases = gold_aliases(answer)
        for key, folder in _PAGE_SOURCES.items():
            for page in datum.get(key, []):
                if not isinstance(page, dict) or not isinstance(page.get("Filename"), str):
                    raise LongifyError(f"{where}: an entry of {key} has no 'Filename'")
                text = _read_evidence(evidence / folder / page["Filename"], file, qid)
                context = truncate_words(text, max_words)
                if not context.strip():
                    logger.warning("%s: evidence %s is empty, skipped", where, page["Filename"])
                    continue
                answers = find_answers(context, answer.get("NormalizedAliases", []))
                if drop and not answers:
                    continue
                yield QAExample(
                    id=f"{qid}--{page['Filename']}",
                    question=question,
                    context=context,
                    answers=answers,
                    language="en",
                    title=str(page.get("Title", "")),
                    qid=qid,
                    doc_id=page["Filename"],
                    group_id=qid if domain == "wikipedia" else None,
                    aliases=aliases,
                )
