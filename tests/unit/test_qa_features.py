"""QA windows: stride coverage, labels, offsets per tokenizer family, global mask, dynamic padding."""

from __future__ import annotations

import itertools

import pytest
from transformers import LongformerConfig, RobertaConfig

from longify.errors import LongifyError
from longify.qa.features import (
    QACollator,
    build_features,
    collator_for,
    keep_length_lower,
    pad_multiple_for,
    tokenizer_is_uncased,
)
from longify.qa.tasks.example import Answer, QAExample
from longify.tiny import train_tokenizer

FAMILIES = ("roberta", "xlm-roberta", "bert")
FILLER = "The climate is mild in summer and wet in winter. A stone bridge connects the old market. "
ANSWER = "Elena Stone"


@pytest.fixture(scope="module")
def tokenizers() -> dict:
    return {fam: train_tokenizer(fam) for fam in FAMILIES}


def long_example(repeats: int = 12, at: int = 7) -> QAExample:
    parts = [FILLER] * repeats
    parts.insert(at, f"It was founded in 1707 by {ANSWER}, a weaver. ")
    context = "".join(parts)
    return QAExample(
        id="q1",
        question="Who founded the town?",
        context=context,
        answers=[Answer(ANSWER, context.index(ANSWER))],
        language="en",
    )


def context_tokens(feature: dict) -> list[int]:
    return [i for i, o in enumerate(feature["offset_mapping"]) if o is not None]


@pytest.mark.parametrize("family", FAMILIES)
def test_windows_cover_the_context_with_the_stride(tokenizers: dict, family: str) -> None:
    tok, example = tokenizers[family], long_example()
    feats = build_features([example], tok, max_seq_length=64, doc_stride=16, train=False)
    assert len(feats) > 3
    assert all(len(f["input_ids"]) <= 64 for f in feats)
    spans = [[f["offset_mapping"][i] for i in context_tokens(f)] for f in feats]
    assert spans[0][0][0] == 0
    assert spans[-1][-1][1] >= len(example.context.rstrip())
    for prev, nxt in itertools.pairwise(spans):
        assert prev[-16:] == nxt[:16]  # consecutive windows share exactly doc_stride context tokens
    assert {f["example_index"] for f in feats} == {0}


@pytest.mark.parametrize("family", FAMILIES)
def test_labels_point_at_the_answer_in_exactly_the_windows_holding_it(tokenizers: dict, family: str) -> None:
    tok, example = tokenizers[family], long_example()
    train = build_features([example], tok, max_seq_length=64, doc_stride=16, train=True)
    evals = build_features([example], tok, max_seq_length=64, doc_stride=16, train=False)
    assert len(train) == len(evals)
    start, end = example.answers[0].answer_start, example.answers[0].answer_start + len(ANSWER)
    labelled = 0
    for tf, ef in zip(train, evals, strict=True):
        offs = [ef["offset_mapping"][i] for i in context_tokens(ef)]
        holds = offs[0][0] <= start and offs[-1][1] >= end
        s, e = tf["start_positions"], tf["end_positions"]
        if not holds:
            assert (s, e) == (0, 0)
            continue
        labelled += 1
        text = example.context[ef["offset_mapping"][s][0] : ef["offset_mapping"][e][1]]
        assert text.strip() == ANSWER  # offsets recover the answer text for this tokenizer family
    assert labelled >= 1


def test_question_comes_first_and_is_cut(tokenizers: dict) -> None:
    tok = tokenizers["roberta"]
    example = long_example(repeats=2)
    example.question = "Who " * 80 + "founded it?"
    feat = build_features(
        [example], tok, max_seq_length=128, doc_stride=16, max_query_length=10, train=False
    )[0]
    first_context = context_tokens(feat)[0]
    assert 10 <= first_context <= 14  # CLS + 10 question tokens + separators


def test_left_padding_tokenizer_puts_the_context_first(tokenizers: dict) -> None:
    tok = train_tokenizer("roberta")
    tok.padding_side = "left"
    example = long_example(repeats=2, at=1)
    feats = build_features(
        [example], tok, max_seq_length=64, doc_stride=16, train=True, global_attention=True
    )
    evals = build_features([example], tok, max_seq_length=64, doc_stride=16, train=False)
    assert context_tokens(evals[0])[0] == 1
    hits = [(f, e) for f, e in zip(feats, evals, strict=True) if f["start_positions"] > 0]
    assert hits
    f, e = hits[0]
    text = example.context[
        e["offset_mapping"][f["start_positions"]][0] : e["offset_mapping"][f["end_positions"]][1]
    ]
    assert text.strip() == ANSWER
    mask = f["global_attention_mask"]
    assert mask[0] == 1 and mask[1] == 0 and mask[-2] == 1  # question (second here) is global


@pytest.mark.parametrize("family", FAMILIES)
def test_global_mask_is_on_the_question_and_cls(tokenizers: dict, family: str) -> None:
    tok = tokenizers[family]
    feat = build_features(
        [long_example(repeats=1)], tok, max_seq_length=128, doc_stride=16, global_attention=True
    )[0]
    ids = list(feat["input_ids"])
    question_ids = tok("Who founded the town?", add_special_tokens=False)["input_ids"]
    mask = list(feat["global_attention_mask"])
    q_start = 1
    assert ids[q_start : q_start + len(question_ids)] == question_ids
    expected = [1] + [1] * len(question_ids) + [0] * (len(ids) - 1 - len(question_ids))
    assert mask == expected
    assert (
        "global_attention_mask"
        not in build_features([long_example(1)], tok, max_seq_length=128, doc_stride=16)[0]
    )


def test_xlmr_lone_metaspace_never_cuts_a_word(tokenizers: dict) -> None:
    tok = tokenizers["xlm-roberta"]
    feat = build_features([long_example(repeats=1)], tok, max_seq_length=128, doc_stride=16, train=False)[0]
    pieces = tok.convert_ids_to_tokens([int(i) for i in feat["input_ids"]])
    lone = [o for p, o in zip(pieces, feat["offset_mapping"], strict=True) if p == "▁" and o is not None]
    assert lone and all(s == e for s, e in lone)


def test_collator_pads_dynamically_to_the_window_multiple(tokenizers: dict) -> None:
    tok = tokenizers["roberta"]
    feats = build_features(
        [long_example(1), long_example(3)], tok, max_seq_length=200, doc_stride=16, global_attention=True
    )
    lengths = [len(f["input_ids"]) for f in feats]
    config = LongformerConfig(attention_window=[16, 32], num_hidden_layers=2)
    collator = collator_for(tok, config)
    assert collator.pad_to_multiple_of == 32
    batch = collator(feats)
    width = batch["input_ids"].shape[1]
    assert width % 32 == 0 and max(lengths) <= width < max(lengths) + 32
    assert int(batch["attention_mask"].sum()) == sum(lengths)
    assert batch["input_ids"][0, lengths[0] :].eq(tok.pad_token_id).all()
    assert batch["start_positions"].shape == (len(feats),)
    plain = QACollator(pad_token_id=tok.pad_token_id)(feats[:1])
    assert plain["input_ids"].shape[1] == lengths[0]
    assert pad_multiple_for(RobertaConfig()) == 1


def test_stride_too_large_is_one_clear_error(tokenizers: dict) -> None:
    with pytest.raises(LongifyError, match="--doc_stride 60"):
        build_features([long_example()], tokenizers["roberta"], max_seq_length=64, doc_stride=60)


def test_lowercasing_keeps_offsets_and_knows_uncased_tokenizers(tokenizers: dict) -> None:
    text = "İstanbul ABC"
    assert len(keep_length_lower(text)) == len(text)
    assert keep_length_lower("ABC") == "abc"
    assert tokenizer_is_uncased(tokenizers["bert"])
    assert not tokenizer_is_uncased(tokenizers["roberta"])
    example = long_example(repeats=2)
    # lower-casing keeps the offsets: every window holding the answer labels exactly its (lower-cased) tokens
    train = build_features(
        [example], tokenizers["roberta"], max_seq_length=128, doc_stride=16, lower=True, train=True
    )
    held = [f for f in train if f["start_positions"] > 0]
    assert held, "no window holds the answer"
    for f in held:
        span = f["input_ids"][f["start_positions"] : f["end_positions"] + 1]
        assert tokenizers["roberta"].decode(span).strip() == example.answers[0].text.lower()
