"""QA examples -> model windows: fast-tokenizer offsets, question first, strided windows, labels,
the target's extras (Longformer's global attention mask, BigBird's token types), and a collator that pads
each batch dynamically (to the target's multiple).

Windows hold the (possibly cut) question and a stretch of the context; consecutive windows of one context
share ``doc_stride`` tokens. Training windows are labelled with the answer's first and last token, or
with the CLS position 0 when the answer is not wholly inside. Evaluation windows keep ``example_index`` and
``offset_mapping`` (``None`` outside the context) so decode.py can map logits back to the original text.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from longify.errors import LongifyError
from longify.qa.tasks.example import QAExample
from longify.targets import QAExtras, target_of

logger = logging.getLogger(__name__)

PAD_VALUES = {"attention_mask": 0, "token_type_ids": 0, "global_attention_mask": 0}


def keep_length_lower(text: str) -> str:
    """Lower-case ``text`` character by character, keeping characters whose lower form has another length
    (so character offsets into the result are offsets into ``text``)."""
    return "".join(low if len(low := ch.lower()) == 1 else ch for ch in text)


def tokenizer_is_uncased(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True when the tokenizer lower-cases its input itself (BERT uncased and the like)."""
    if getattr(tokenizer, "do_lower_case", False):
        return True
    backend = getattr(tokenizer, "backend_tokenizer", None)
    normalizer = getattr(backend, "normalizer", None)
    return normalizer is not None and normalizer.normalize_str("ABC") == "abc"


def question_first(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Question before context, except for tokenizers that pad on the left (their context goes first)."""
    return tokenizer.padding_side == "right"


def special_tokens_in_pair(tokenizer: PreTrainedTokenizerBase) -> int:
    return tokenizer.num_special_tokens_to_add(pair=True)


def check_window(
    tokenizer: PreTrainedTokenizerBase, max_seq_length: int, doc_stride: int, question_tokens: int
) -> None:
    """A window must leave room for context tokens beyond the stride, or tokenisation cannot progress."""
    room = max_seq_length - question_tokens - special_tokens_in_pair(tokenizer)
    if room <= 0:
        raise LongifyError(
            f"--max_seq_length {max_seq_length}: leaves no room for context after a question of "
            f"{question_tokens} tokens (cut questions shorter with --max_query_length)"
        )
    if doc_stride >= room:
        raise LongifyError(
            f"--doc_stride {doc_stride}: must be smaller than the context tokens per window ({room} = "
            f"--max_seq_length {max_seq_length} - longest question {question_tokens} - special tokens)"
        )


def cut_questions(
    questions: Sequence[str], tokenizer: PreTrainedTokenizerBase, max_query_length: int
) -> tuple[list[str], int]:
    """Questions without leading whitespace, cut after their first ``max_query_length`` tokens, and the
    length in tokens of the longest one after cutting."""
    questions = [q.lstrip() for q in questions]
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    out, longest = [], 0
    for question, offsets in zip(questions, enc["offset_mapping"], strict=True):
        if len(offsets) > max_query_length:
            question = question[: offsets[max_query_length - 1][1]]
        out.append(question)
        longest = max(longest, min(len(offsets), max_query_length))
    return out, longest


def _tokenize(
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int,
    doc_stride: int,
    max_query_length: int,
    lower: bool,
) -> tuple[Any, int]:
    """Tokenise every example into strided windows; returns the encoding and the context's sequence index."""
    if not getattr(tokenizer, "is_fast", False):
        raise LongifyError(
            f"tokenizer {type(tokenizer).__name__}: a fast tokenizer (with offsets) is required"
        )
    questions, longest = cut_questions([e.question for e in examples], tokenizer, max_query_length)
    check_window(tokenizer, max_seq_length, doc_stride, longest)
    contexts = [e.context for e in examples]
    if lower:
        questions, contexts = (
            [keep_length_lower(q) for q in questions],
            [keep_length_lower(c) for c in contexts],
        )
    first = question_first(tokenizer)
    enc = tokenizer(
        questions if first else contexts,
        contexts if first else questions,
        truncation="only_second" if first else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding=False,
    )
    return enc, 1 if first else 0


def lone_space_ids(tokenizer: PreTrainedTokenizerBase) -> frozenset[int]:
    """Ids of the bare word-boundary pieces (SentencePiece ``▁``, byte-level ``Ġ``). Fast XLM-R tokenizers
    give a lone ``▁`` the offsets of the next character (transformers#17454), which would cut a word."""
    vocab = tokenizer.get_vocab()
    return frozenset(vocab[t] for t in ("▁", "Ġ") if t in vocab)


def fix_offsets(
    offsets: Sequence[tuple[int, int]], input_ids: Sequence[int], lone: frozenset[int]
) -> list[tuple[int, int]]:
    """Offsets with every lone word-boundary piece made empty at its start."""
    return [(o[0], o[0]) if i in lone else (o[0], o[1]) for o, i in zip(offsets, input_ids, strict=True)]


def _global_mask(sequence_ids: Sequence[int | None], question_index: int) -> list[int]:
    """1 on the question tokens and on the first (CLS) token, 0 elsewhere."""
    mask = [int(s == question_index) for s in sequence_ids]
    if mask:
        mask[0] = 1
    return mask


def _label(
    offsets: Sequence[tuple[int, int]], seq_ids: Sequence[int | None], ctx: int, example: QAExample
) -> tuple[int, int]:
    """(start, end) token of the example's first answer in this window; (0, 0) when not wholly inside."""
    if not example.answers:
        return 0, 0
    start_char = example.answers[0].answer_start
    end_char = start_char + len(example.answers[0].text)
    inside = [i for i, s in enumerate(seq_ids) if s == ctx]
    if not inside or offsets[inside[0]][0] > start_char or offsets[inside[-1]][1] < end_char:
        return 0, 0
    start = next(i for i in inside if offsets[i][1] > start_char)
    end = next(i for i in reversed(inside) if offsets[i][0] < end_char)
    return start, max(start, end)


def build_features(
    examples: Sequence[QAExample],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_seq_length: int = 384,
    doc_stride: int = 128,
    max_query_length: int = 64,
    global_attention: bool = False,
    train: bool = True,
    lower: bool = False,
    chunk_size: int = 1000,
) -> list[dict[str, Any]]:
    """One feature dict per window. Training features carry ``start_positions`` / ``end_positions``;
    evaluation features carry ``example_index`` and ``offset_mapping`` (None outside the context).
    ``global_attention`` adds ``global_attention_mask`` (question + CLS), for targets that have it
    (``uses_global_attention``: Longformer)."""
    features: list[dict[str, Any]] = []
    lone = lone_space_ids(tokenizer)
    for first in range(0, len(examples), chunk_size):
        chunk = examples[first : first + chunk_size]
        enc, ctx = _tokenize(
            chunk,
            tokenizer,
            max_seq_length=max_seq_length,
            doc_stride=doc_stride,
            max_query_length=max_query_length,
            lower=lower,
        )
        model_keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        for i, index in enumerate(enc["overflow_to_sample_mapping"]):
            seq_ids = enc.sequence_ids(i)
            feature: dict[str, Any] = {k: np.asarray(enc[k][i], dtype=np.int32) for k in model_keys}
            if global_attention:
                feature["global_attention_mask"] = np.asarray(_global_mask(seq_ids, 1 - ctx), dtype=np.int32)
            offsets = fix_offsets(enc["offset_mapping"][i], enc["input_ids"][i], lone)
            if train:
                start, end = _label(offsets, seq_ids, ctx, chunk[index])
                feature["start_positions"], feature["end_positions"] = start, end
            else:
                feature["example_index"] = first + index
                feature["offset_mapping"] = [
                    o if s == ctx else None for o, s in zip(offsets, seq_ids, strict=True)
                ]
            features.append(feature)
    return features


def qa_extras_of(config: Any) -> QAExtras:
    """What a QA batch of this model needs, from its target (``longify.targets``: Longformer's global mask
    and window multiple, BigBird's blocks and token types); a model of no target's type needs nothing."""
    try:
        target = target_of(config)
    except LongifyError:
        return QAExtras(global_attention=False, pad_multiple=1)
    return target.qa_extras(config)


def pad_multiple_for(config: Any) -> int:
    """The multiple each batch is padded to: Longformer's largest window, BigBird's block; 1 for others."""
    return qa_extras_of(config).pad_multiple


def uses_global_attention(config: Any) -> bool:
    """Whether the model takes a global attention mask (question + CLS): Longformer's."""
    return qa_extras_of(config).global_attention


@dataclass
class QACollator:
    """Pads each batch on the right to its longest window, rounded up to ``pad_to_multiple_of`` (the
    Longformer window, the BigBird block), so label and logit positions stay those of the features; drops the bookkeeping
    fields decode.py uses."""

    pad_token_id: int
    pad_to_multiple_of: int = 1
    token_type_ids: bool = False  # every batch carries token_type_ids (zeros where the features have none)

    def __call__(self, batch: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        longest = max(len(f["input_ids"]) for f in batch)
        m = self.pad_to_multiple_of
        length = -(-longest // m) * m
        out: dict[str, torch.Tensor] = {}
        if self.token_type_ids and "token_type_ids" not in batch[0]:
            out["token_type_ids"] = torch.zeros((len(batch), length), dtype=torch.long)
        for key in batch[0]:
            if key in ("example_index", "offset_mapping"):
                continue
            if key in ("start_positions", "end_positions"):
                out[key] = torch.tensor([f[key] for f in batch], dtype=torch.long)
                continue
            pad = self.pad_token_id if key == "input_ids" else PAD_VALUES.get(key, 0)
            rows = torch.full((len(batch), length), pad, dtype=torch.long)
            for row, f in zip(rows, batch, strict=True):
                row[: len(f[key])] = torch.as_tensor(np.asarray(f[key]), dtype=torch.long)
            out[key] = rows
        return out


def collator_for(tokenizer: PreTrainedTokenizerBase, config: Any) -> QACollator:
    extras = qa_extras_of(config)
    return QACollator(
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        pad_to_multiple_of=extras.pad_multiple,
        token_type_ids=extras.token_type_ids,
    )
