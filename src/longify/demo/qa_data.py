"""The demo's QA benchmark: long documents of several town articles, SQuAD v1.1 format.

Each context joins ``k`` articles (the target and ``k - 1`` distractors, order seeded), so the answer can
sit anywhere in a context of several hundred tokens and a model must find the right article first:
"Who founded X?" is answered by the founder named in X's article only.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from longify.demo.corpus import Town, article, make_town

_QUESTIONS = {
    "founder": ("Who founded {name}?", lambda t: t.founder),
    "year": ("In which year was {name} founded?", lambda t: str(t.year)),
}


def _doc(town: Town, rng: random.Random, filler: int) -> str:
    return " ".join(article(town, rng, filler))


def long_qa(
    n: int, *, k: int = 3, filler: int = 4, seed: int = 0, kinds: tuple[str, ...] = ("founder",)
) -> dict:
    """``n`` questions in SQuAD v1.1 JSON, one paragraph each, contexts of ``k`` articles."""
    rng = random.Random(seed)
    data = []
    for i in range(n):
        towns = [make_town(rng) for _ in range(k)]
        docs = [_doc(t, rng, filler) for t in towns]
        target = rng.randrange(k)
        context = "\n\n".join(docs)
        offset = sum(len(d) + 2 for d in docs[:target])
        town = towns[target]
        kind = kinds[i % len(kinds)]
        template, answer_of = _QUESTIONS[kind]
        answer = answer_of(town)
        start = offset + docs[target].index(answer)
        assert context[start : start + len(answer)] == answer
        qa = {"id": f"demo-{seed}-{i}", "question": template.format(name=town.name),
              "answers": [{"text": answer, "answer_start": start}]}  # fmt: skip
        data.append({"title": town.name, "paragraphs": [{"context": context, "qas": [qa]}]})
    return {"version": "1.1", "data": data}


def write_qa_files(
    out: Path, n_train: int = 192, n_dev: int = 48, *, articles: int = 3, filler: int = 4
) -> tuple[Path, Path]:
    """``train-v1.1.json`` and ``dev-v1.1.json`` under ``out`` (the seed's SQuAD file names); contexts of
    ``articles`` articles with ``filler`` filler paragraphs each (the real-encoder demo: 5 and 3, about 900
    BERT tokens, 40 % of the answers from token 512 on)."""
    out.mkdir(parents=True, exist_ok=True)
    train, dev = out / "train-v1.1.json", out / "dev-v1.1.json"
    shape = {"k": articles, "filler": filler}
    train.write_text(json.dumps(long_qa(n_train, seed=11, **shape)), encoding="utf-8")
    dev.write_text(json.dumps(long_qa(n_dev, seed=12, **shape)), encoding="utf-8")
    return train, dev
