"""TriviaQA rc: ``qa/{wikipedia,web}-{split}.json`` + ``evidence/``, one example per (question, document).

Scoring follows the official evaluation, mandarjoshi90/triviaqa ``evaluation/triviaqa_evaluation.py`` with
``utils/dataset_utils.py`` (``read_triviaqa_data``, ``get_key_to_ground_truth``), read at HEAD (ca43b58):

- the domain is the file's ``Domain`` field (``Wikipedia`` or ``Web``); ``--dataset triviaqa-web`` /
  ``triviaqa-wikipedia`` pick the folder's file and must agree with it;
- Wikipedia is scored per question (key ``QuestionId``), every question of the file counted, even one without
  evidence documents; Web per (question, document) over ``EntityPages`` + ``SearchResults`` (key
  ``QuestionId--Filename``), a question without documents adding nothing;
- a file with ``"VerifiedEval": true`` (``verified-*.json``) keeps only questions with
  ``QuestionPartOfVerifiedEval``, and for Web only documents with ``DocPartOfVerifiedEval``;
- gold strings are ``NormalizedAliases`` plus the normalised ``HumanAnswers``; the evidence is never read,
  so ``triviaqa_units`` needs no evidence folder and documents with empty evidence still count (score 0).

Examples (what a model reads): evidence is cut after ``max_words`` whitespace words (default 4096, the budget
longformer's TriviaQA conversion used; a tokenizer-exact budget belongs to the feature step); answers are every
case-insensitive, word-bounded occurrence of a normalised alias in the kept evidence; ids are
``QuestionId--Filename``; Wikipedia examples share ``group_id=QuestionId``; empty documents are skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.qa.metrics import triviaqa_normalize
from longify.qa.tasks.example import Answer, GoldUnit, QAExample
from longify.qa.tasks.squadformat import read_json, resolve_file, single_language

logger = logging.getLogger(__name__)

TRIVIAQA_DOMAINS = ("wikipedia", "web")
_DECLARED = {"Wikipedia": "wikipedia", "Web": "web"}
# Each page list of a question and the evidence folder its Filename is relative to (official order).
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


@dataclass
class TriviaQAQuestion:
    """One question after the official verified filtering: its documents as (evidence folder, page)."""

    qid: str
    question: str
    answer: dict[str, Any]
    pages: list[tuple[str, dict[str, Any]]]

    def doc_ids(self) -> list[str]:
        """``QuestionId--Filename`` of each distinct document, in the official order."""
        return list(dict.fromkeys(f"{self.qid}--{page['Filename']}" for _, page in self.pages))


def _qa_file(path: Path, domain: str, split: str) -> Path:
    names = [f"{domain}-{split}.json", f"qa/{domain}-{split}.json"]
    if split.startswith("verified-"):
        names += [f"verified-{domain}-{split[9:]}.json", f"qa/verified-{domain}-{split[9:]}.json"]
    return resolve_file(path, names)


def file_domain(data: dict[str, Any], file: Path, domain: str | None) -> str:
    """The domain to score: the file's ``Domain`` field, checked against ``domain`` when one is asked for."""
    if domain is not None and domain not in TRIVIAQA_DOMAINS:
        raise LongifyError(f"TriviaQA domain {domain!r}: expected one of {list(TRIVIAQA_DOMAINS)}")
    declared = data.get("Domain")
    if declared is not None and declared not in _DECLARED:
        raise LongifyError(f"{file}: field 'Domain' is {declared!r}; expected one of {list(_DECLARED)}")
    found = _DECLARED.get(declared) if declared is not None else None
    if domain is not None and found is not None and found != domain:
        raise LongifyError(
            f"{file}: its Domain is {declared!r}, not {domain}; use --dataset triviaqa-{found} (or triviaqa)"
        )
    return domain or found or "wikipedia"


def _question(datum: Any, file: Path, *, verified: bool, domain: str) -> TriviaQAQuestion | None:
    qid = datum.get("QuestionId") if isinstance(datum, dict) else None
    if not isinstance(qid, str):
        raise LongifyError(f"{file}: question without a string field 'QuestionId'")
    where = f"{file}: question {qid}"
    if verified and not datum.get("QuestionPartOfVerifiedEval"):
        return None
    question = datum.get("Question")
    if not isinstance(question, str) or not question.strip():
        raise LongifyError(f"{where}: missing field 'Question'")
    answer = datum.get("Answer", {})
    if not isinstance(answer, dict) or not isinstance(answer.get("NormalizedAliases", []), list):
        raise LongifyError(f"{where}: field 'Answer' should hold a 'NormalizedAliases' list")
    pages = []
    for key, folder in _PAGE_SOURCES.items():
        for page in datum.get(key) or []:
            if not isinstance(page, dict) or not isinstance(page.get("Filename"), str):
                raise LongifyError(f"{where}: an entry of {key} has no 'Filename'")
            if verified and domain == "web" and not page.get("DocPartOfVerifiedEval"):
                continue
            pages.append((folder, page))
    return TriviaQAQuestion(qid, question, answer, pages)


def read_triviaqa(
    path: str | Path, *, split: str = "dev", domain: str | None = None
) -> tuple[Path, str, list[TriviaQAQuestion]]:
    """(qa file, domain, questions) as the official ``read_triviaqa_data`` keeps them.

    ``path``: the rc folder (``domain`` picks its file, default wikipedia) or one ``qa/*.json`` file (its
    ``Domain`` field decides; ``domain``, when given, must agree).
    """
    if domain is not None and domain not in TRIVIAQA_DOMAINS:
        raise LongifyError(f"TriviaQA domain {domain!r}: expected one of {list(TRIVIAQA_DOMAINS)}")
    file = _qa_file(Path(path), domain or "wikipedia", split)
    data = read_json(file)
    if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
        raise LongifyError(f"{file}: expected a TriviaQA object with a 'Data' list")
    domain = file_domain(data, file, domain)
    verified = bool(data.get("VerifiedEval"))
    questions = [_question(d, file, verified=verified, domain=domain) for d in data["Data"]]
    return file, domain, [q for q in questions if q is not None]


def triviaqa_units(
    path: str | Path,
    *,
    split: str = "dev",
    languages: Sequence[str] | None = None,
    domain: str | None = None,
    **_: Any,
) -> list[GoldUnit]:
    """The official key set (``get_key_to_ground_truth``) with each key's gold strings; no evidence read."""
    single_language(languages, "en", "TriviaQA")
    _, domain, questions = read_triviaqa(path, split=split, domain=domain)
    units: dict[str, GoldUnit] = {}
    for q in questions:
        golds = tuple(gold_aliases(q.answer))
        docs = q.doc_ids()
        if domain == "wikipedia":
            units[q.qid] = GoldUnit(q.qid, "en", golds, "en", tuple(docs))
        else:
            units.update((doc, GoldUnit(doc, "en", golds, "en", (doc,))) for doc in docs)
    return list(units.values())


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
    domain: str | None = None,
    max_words: int | None = 4096,
    evidence_dir: str | Path | None = None,
    drop_unanswered: bool | None = None,
) -> Iterator[QAExample]:
    """TriviaQA rc examples. ``path``: the rc folder (with ``qa/`` and ``evidence/``) or a ``qa/*.json`` file.

    ``drop_unanswered`` (default: only for train) skips documents where no alias occurs, as the
    reference conversion does; dev keeps them, since scoring uses the aliases, not spans.
    """
    del strict  # nothing to realign: spans are found, not read
    single_language(languages, "en", "TriviaQA")
    file, domain, questions = read_triviaqa(path, split=split, domain=domain)
    evidence = Path(evidence_dir) if evidence_dir else file.parent.parent / "evidence"
    if not evidence.is_dir():
        evidence = file.parent / "evidence"
    drop = split.endswith("train") if drop_unanswered is None else drop_unanswered
    for q in questions:
        aliases = gold_aliases(q.answer)
        seen: set[str] = set()
        for folder, page in q.pages:
            if page["Filename"] in seen:
                continue
            seen.add(page["Filename"])
            text = _read_evidence(evidence / folder / page["Filename"], file, q.qid)
            context = truncate_words(text, max_words)
            if not context.strip():
                logger.warning(
                    "%s: question %s: evidence %s is empty: no example (it still counts, scoring 0)",
                    file,
                    q.qid,
                    page["Filename"],
                )
                continue
            answers = find_answers(context, q.answer.get("NormalizedAliases", []))
            if drop and not answers:
                continue
            yield QAExample(
                id=f"{q.qid}--{page['Filename']}",
                question=q.question,
                context=context,
                answers=answers,
                language="en",
                title=str(page.get("Title", "")),
                qid=q.qid,
                doc_id=page["Filename"],
                group_id=q.qid if domain == "wikipedia" else None,
                aliases=aliases,
            )
