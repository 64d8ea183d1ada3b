"""Tokens, words and context lengths of a QA dataset per language and tokenizer: does 4096 help a language?

Counted over distinct contexts (a context with five questions counts once): words are whitespace-separated
pieces (so for languages written without spaces, such as Chinese or Thai, words and fertility mean little),
tokens are the tokenizer's without special tokens. An answer "starts after token 512" when the token holding
its first character has index 512 or more: a 512-token model has to find it in a later window.
"""

from __future__ import annotations

import csv
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from longify.catalog.names import resolve_named
from longify.errors import LongifyError
from longify.loading import check_tokenizer
from longify.qa.tasks import load_examples

logger = logging.getLogger(__name__)

FIELDS = (
    "language", "tokenizer", "questions", "contexts", "words_mean", "tokens_mean", "tokens_p50", "tokens_p90",
    "tokens_p99", "tokens_max", "fertility", "share_over_512", "share_over_4096", "answers_after_512",
)  # fmt: skip


def _token_index(offsets: list[tuple[int, int]], char: int) -> int:
    """Index of the token that holds character ``char`` (the first token ending after it)."""
    for i, (_, end) in enumerate(offsets):
        if end > char:
            return i
    return len(offsets)


def language_stats(examples: list[Any], tokenizer: Any) -> dict[str, Any]:
    """The row of one language and one tokenizer (see the module docstring)."""
    contexts = list(dict.fromkeys(e.context for e in examples))
    encoded = tokenizer(contexts, add_special_tokens=False, return_offsets_mapping=True)
    tokens = np.array([len(ids) for ids in encoded["input_ids"]])
    words = np.array([len(c.split()) for c in contexts])
    offsets = dict(zip(contexts, encoded["offset_mapping"], strict=True))
    starts = [_token_index(offsets[e.context], e.answers[0].answer_start) for e in examples if e.answers]
    return {
        "questions": len(examples),
        "contexts": len(contexts),
        "words_mean": float(words.mean()),
        "tokens_mean": float(tokens.mean()),
        "tokens_p50": float(np.percentile(tokens, 50)),
        "tokens_p90": float(np.percentile(tokens, 90)),
        "tokens_p99": float(np.percentile(tokens, 99)),
        "tokens_max": int(tokens.max()),
        "fertility": float(tokens.sum() / max(int(words.sum()), 1)),
        "share_over_512": float((tokens > 512).mean()),
        "share_over_4096": float((tokens > 4096).mean()),
        "answers_after_512": float(np.mean([s >= 512 for s in starts])) if starts else 0.0,
        "_tokens": tokens.tolist(),
    }


def _load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise LongifyError(
            f"--tokenizer {name}: cannot load a tokenizer ({str(err).splitlines()[0]})"
        ) from None
    if not tok.is_fast:
        raise LongifyError(f"--tokenizer {name}: a fast tokenizer is needed (offsets)")
    check_tokenizer(tok, f"--tokenizer {name}", "--tokenizer")
    tok.model_max_length = 10**9  # counting, not truncating; no length warnings
    return tok


def tokenizer_labels(names: list[str]) -> list[str]:
    """A distinct label per ``--tokenizer``: a folder's name, with as many parent folders as it takes to tell
    folders of the same name apart (``a/model``, ``b/model``); a hub id as given. One given twice is refused."""
    keys = [str(Path(n).resolve()) if Path(n).exists() else n for n in names]
    twice = sorted({n for n, k in zip(names, keys, strict=True) if keys.count(k) > 1})
    if twice:
        raise LongifyError(f"--tokenizer {twice[0]}: given twice")
    parts = [Path(k).parts if Path(n).exists() else (n,) for n, k in zip(names, keys, strict=True)]
    depth = [1] * len(names)
    while True:
        labels = ["/".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        clash = [i for i, label in enumerate(labels) if labels.count(label) > 1 and depth[i] < len(parts[i])]
        if not clash:
            return labels
        for i in clash:
            depth[i] += 1


def dataset_stats(
    dataset: str,
    tokenizers: list[str],
    *,
    path: str | None = None,
    languages: list[str] | None = None,
    split: str | None = None,
) -> list[dict[str, Any]]:
    """One row per (language, tokenizer) of QA task ``dataset`` read from ``path`` (default: its folder in
    the data dir)."""
    where = resolve_named(path, dataset)
    if where is None:
        raise LongifyError(f"data stats {dataset}: give --path, or a registered dataset name")
    by_lang: dict[str, list[Any]] = defaultdict(list)
    for ex in load_examples(dataset, where, split=split, languages=languages):
        by_lang[ex.language].append(ex)
    if not by_lang:
        raise LongifyError(f"{where}: no questions found")
    rows = []
    for name, label in zip(tokenizers, tokenizer_labels(tokenizers), strict=True):
        tok = _load_tokenizer(name)
        for lang in sorted(by_lang):
            rows.append({"language": lang, "tokenizer": label, **language_stats(by_lang[lang], tok)})
    return rows


def _markdown(rows: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(FIELDS) + " |\n|" + "---|" * len(FIELDS) + "\n"
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    return head + "".join("| " + " | ".join(fmt(r[f]) for f in FIELDS) + " |\n" for r in rows)


def _plots(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["tokenizer"] for r in rows))
    langs = list(dict.fromkeys(r["language"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 4), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names, strict=True):
        for r in (r for r in rows if r["tokenizer"] == name):
            ax.hist(r["_tokens"], bins=30, histtype="step", label=r["language"])
        ax.axvline(512, color="grey", linestyle="--", linewidth=1)
        ax.set(title=f"context length: {name}", xlabel="tokens per context", ylabel="contexts")
        ax.legend(fontsize="small")
    fig.tight_layout()
    hist = out / "context_tokens.png"
    fig.savefig(hist, dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6, len(langs) * 0.9), 4))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        values = {r["language"]: r["fertility"] for r in rows if r["tokenizer"] == name}
        ax.bar(np.arange(len(langs)) + i * width, [values[lang] for lang in langs], width, label=name)
    ax.set_xticks(np.arange(len(langs)) + width * (len(names) - 1) / 2, langs)
    ax.set(title="fertility (tokens per whitespace word)", ylabel="tokens / word")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fert = out / "fertility.png"
    fig.savefig(fert, dpi=100)
    plt.close(fig)
    return [hist, fert]


def write_stats(rows: list[dict[str, Any]], out: str | Path) -> list[Path]:
    """``stats.json``, ``stats.csv``, ``stats.md`` and two PNG plots in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = [{f: r[f] for f in FIELDS} for r in rows]
    (out / "stats.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    with open(out / "stats.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(table)
    (out / "stats.md").write_text(_markdown(rows), encoding="utf-8")
    return [out / "stats.json", out / "stats.csv", out / "stats.md", *_plots(rows, out)]
