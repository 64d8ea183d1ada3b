"""Span decoding over windows, whitespace handling, analysis buckets, and long contexts (one window for a
long model, strided windows for a short one) answered through ``answer_question``."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoTokenizer

from longify.convert import convert
from longify.qa.analysis import bucket_label, bucket_scores
from longify.qa.decode import best_spans, decode, keyed_by_id, strip_span
from longify.qa.features import build_features, collator_for
from longify.qa.models import load_qa_model
from longify.qa.pipeline import window_logits
from longify.qa.predict import answer_question
from longify.qa.score import subset_of
from longify.qa.tasks.example import Answer, QAExample
from longify.tiny import save_tiny, train_tokenizer

CONTEXT = "Alpha beta gamma delta epsilon."
#          0     6    11    17    23


def ex(context: str = CONTEXT, id: str = "a", language: str = "en", answer: str = "gamma") -> QAExample:
    return QAExample(id, "q?", context, [Answer(answer, context.index(answer))], language)


def feature(offsets: list, index: int = 0) -> dict:
    return {"example_index": index, "offset_mapping": offsets, "input_ids": [0] * len(offsets)}


def logits(n: int, peaks: dict[int, float]) -> np.ndarray:
    out = np.full(n, -5.0)
    for i, v in peaks.items():
        out[i] = v
    return out


OFFSETS = [None, None, (0, 5), (6, 10), (11, 16), (17, 22), (23, 30), (30, 31), None]


def test_hand_built_logits_give_the_expected_span() -> None:
    start, end = logits(9, {4: 3.0, 2: 1.0}), logits(9, {5: 3.0, 3: 2.0})
    preds, nbest = decode([ex()], [feature(OFFSETS)], [start], [end])
    assert preds[0] == "gamma delta"
    top = nbest[0][0]
    assert (top["start"], top["end"], top["score"]) == (11, 22, 6.0)
    assert abs(sum(c["probability"] for c in nbest[0]) - 1) < 1e-6
    assert all(a["score"] >= b["score"] for a, b in zip(nbest[0], nbest[0][1:], strict=False))


def test_spans_outside_the_context_too_long_or_reversed_are_skipped() -> None:
    start = logits(9, {0: 9.0, 6: 4.0, 2: 3.0})
    end = logits(9, {8: 9.0, 2: 5.0, 6: 1.0})
    preds, _ = decode([ex()], [feature(OFFSETS)], [start], [end], max_answer_length=3)
    assert preds[0] == "Alpha"  # (6, 2) reversed, (2, 6) too long, CLS/padding not in the context


def test_a_span_seen_by_two_windows_keeps_its_best_score_and_the_best_window_wins() -> None:
    w1 = [None, (0, 5), (6, 10), (11, 16), (17, 22)]
    w2 = [None, (11, 16), (17, 22), (23, 30)]
    feats = [feature(w1), feature(w2)]
    starts = [logits(5, {3: 2.0, 1: 1.5}), logits(4, {1: 4.0, 3: 1.0})]
    ends = [logits(5, {3: 2.0, 1: 1.5}), logits(4, {1: 3.0, 3: 1.0})]
    preds, nbest = decode([ex()], feats, starts, ends)
    assert preds[0] == "gamma"
    assert nbest[0][0]["score"] == 7.0
    assert [c["text"] for c in nbest[0]].count("gamma") == 1


def test_whitespace_is_stripped_and_offsets_moved() -> None:
    context = "Kalo is   big"
    assert strip_span(context, 4, 10) == (5, 7)
    spans = best_spans(context, [(5.0, 7, 10), (4.0, 4, 13)])  # a lone-space span is dropped
    assert [(s["text"], s["start"], s["end"]) for s in spans] == [("is   big", 5, 13)]
    preds, nbest = decode(
        [ex(context, answer="big")], [feature([None, (4, 5)])], [np.zeros(2)], [np.zeros(2)]
    )
    assert preds[0] == "" and nbest[0][0]["text"] == ""  # nothing valid: the empty answer


def test_no_space_script_text_comes_from_the_original_context() -> None:
    context = "東京は日本の首都です。"
    offsets = [None, *[(i, i + 1) for i in range(len(context))]]
    start, end = logits(len(offsets), {1: 5.0}), logits(len(offsets), {2: 5.0})
    preds, _ = decode([ex(context, answer="東京")], [feature(offsets)], [start], [end])
    assert preds[0] == "東京"


def test_predictions_are_nested_by_language_when_ids_repeat() -> None:
    examples = [ex(id="a", language="en"), ex(id="a", language="de")]
    assert keyed_by_id(examples, {0: "x", 1: "y"}, subset_of) == {"en": {"a": "x"}, "de": {"a": "y"}}
    assert keyed_by_id(examples[:1], {0: "x"}, subset_of) == {"a": "x"}


def test_buckets_by_answer_position_and_context_length() -> None:
    tok = train_tokenizer("roberta")
    near = ex("Elena Stone founded it. " + "The town is old. " * 40, answer="Elena Stone")
    far = ex("The town is old. " * 40 + "Elena Stone founded it.", answer="Elena Stone")
    result = bucket_scores([near, far], {0: "Elena Stone", 1: "old"}, tok, bucket_width=64)
    assert result["answer_position"]["0-63"] == {"exact_match": 100.0, "f1": 100.0, "count": 1}
    far_bucket = [k for k in result["answer_position"] if k != "0-63"]
    assert len(far_bucket) == 1 and result["answer_position"][far_bucket[0]]["f1"] == 0.0
    assert sum(v["count"] for v in result["context_length"].values()) == 2
    assert bucket_label(600, 512) == "512-1023"


# --- long contexts: one window for a long model, strided windows for a short one -------------------------

PLANTED = "Zaratustra Quillfeather"


class OracleQA(torch.nn.Module):
    """Returns high logits exactly where the planted answer's token ids occur (a model with perfect recall)."""

    def __init__(self, config: object, answer_ids: list[int]) -> None:
        super().__init__()
        self.config = config
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.answer_ids = answer_ids
        self.lengths: list[int] = []

    def forward(self, input_ids: torch.Tensor, **kwargs: torch.Tensor) -> SimpleNamespace:
        n = len(self.answer_ids)
        start = torch.full(input_ids.shape, -10.0)
        end = torch.full(input_ids.shape, -10.0)
        target = torch.tensor(self.answer_ids)
        for b, row in enumerate(input_ids):
            self.lengths.append(int(kwargs["attention_mask"][b].sum()))
            windows = row.unfold(0, n, 1)
            for i in torch.nonzero((windows == target).all(dim=1)).flatten().tolist():
                start[b, i], end[b, i + n - 1] = 10.0, 10.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def planted_context() -> tuple[str, int]:
    filler = "The climate is mild in summer and wet in winter. A stone bridge connects the old market. "
    context = filler * 60 + f"The town was founded by {PLANTED} long ago. " + filler * 20
    return context, context.index(PLANTED)


def answer_ids(tokenizer: object, context: str, start: int) -> list[int]:
    enc = tokenizer(context, add_special_tokens=False, return_offsets_mapping=True)
    end = start + len(PLANTED)
    return [
        i for i, (s, e) in zip(enc["input_ids"], enc["offset_mapping"], strict=True) if s < end and e > start
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("long")
    short = save_tiny("roberta", root / "short", max_len=64)
    convert(str(short), root / "long", max_pos=4096, attention_window=32)
    return {"short": short, "long": root / "long"}


@pytest.mark.parametrize("kind", ["long", "short"])
def test_planted_answer_in_a_long_context(models: dict[str, Path], kind: str) -> None:
    tok = AutoTokenizer.from_pretrained(models[kind])
    config = AutoConfig.from_pretrained(models[kind])
    context, start = planted_context()
    n_tokens = len(tok(context, add_special_tokens=False)["input_ids"])
    assert 2500 < n_tokens < 4000
    oracle = OracleQA(config, answer_ids(tok, context, start))
    result = answer_question(oracle, tok, "Who founded the town?", context, doc_stride=16)
    assert (result["answer"], result["start"], result["end"]) == (PLANTED, start, start + len(PLANTED))
    if kind == "long":
        assert result["windows"] == 1
        assert max(oracle.lengths) > 2500 and max(oracle.lengths) <= 4096
    else:
        assert result["windows"] > 40
        assert max(oracle.lengths) <= 64


def test_long_model_runs_the_whole_context_in_one_window(models: dict[str, Path]) -> None:
    tok = AutoTokenizer.from_pretrained(models["long"])
    model = load_qa_model(str(models["long"]))
    context, _ = planted_context()
    example = QAExample("x", "Who founded the town?", context, [], "en")
    feats = build_features(
        [example], tok, max_seq_length=4096, doc_stride=128, global_attention=True, train=False
    )
    assert len(feats) == 1
    starts, ends = window_logits(model, feats, collator_for(tok, model.config))
    assert starts[0].shape == (len(feats[0]["input_ids"]),) and np.isfinite(ends[0]).all()


def test_answer_positions_do_not_raise_the_too_long_false_alarm(tiny_sources, monkeypatch) -> None:
    """Whole contexts are tokenised for the answer-position analysis; transformers' "Token indices sequence
    length is longer than ..." warning is a false alarm there (silenced), and only there (restored)."""
    import transformers.tokenization_utils_base as tub

    from longify.qa.analysis import token_positions
    from longify.qa.tasks.example import Answer, QAExample

    warnings: list[str] = []
    monkeypatch.setattr(tub.logger, "warning", lambda msg, *a, **k: warnings.append(str(msg)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    context = "word " * (tokenizer.model_max_length + 50)
    example = QAExample(id="q", question="q?", context=context, answers=[Answer("word", 5)], language="en")
    ((position, length),) = token_positions([example], tokenizer)
    assert position is not None and 0 < position < length and length > tokenizer.model_max_length
    assert not [w for w in warnings if "sequence length is longer" in w], warnings
    tokenizer(context)  # a real model input that long still warns
    assert [w for w in warnings if "sequence length is longer" in w], warnings
