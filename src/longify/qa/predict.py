"""``longify qa predict``: answer one question about one context with a fine-tuned model, with the same
windowing, global attention mask and n-best decoding as evaluation (transformers 5 has no QA pipeline).

Windows not given are the ones the model was trained with (its ``longify_run.json``, as ``qa evaluate``
takes them), else the whole model length, stride 128 and 64 question tokens; a window that leaves no room
for the context, or a stride as long as that room, is refused as ``qa evaluate`` refuses it."""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from longify.errors import LongifyError
from longify.loading import check_model_source, check_vocab, has_qa_head, load_tokenizer
from longify.qa.args import QADataArguments
from longify.qa.decode import decode
from longify.qa.features import build_features, collator_for, uses_global_attention
from longify.qa.models import effective_max_seq_length, load_qa_model, model_max_length
from longify.qa.pipeline import window_logits
from longify.qa.tasks.example import QAExample
from longify.qa.trained_windows import log_windows_taken, trained_windows

DEFAULT_DOC_STRIDE: int = QADataArguments.doc_stride  # the defaults of qa train / evaluate
DEFAULT_MAX_QUERY_LENGTH: int = QADataArguments.max_query_length


def answer_question(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    context: str,
    *,
    max_seq_length: int | None = None,
    doc_stride: int = DEFAULT_DOC_STRIDE,
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    batch_size: int = 8,
) -> dict[str, Any]:
    """The best span of ``context``: ``{"answer", "score", "start", "end", "nbest"}`` (character offsets).
    ``max_seq_length`` None: the model's maximum; windows are checked as in evaluation (``check_window``)."""
    if not question.strip():
        raise LongifyError("--question: empty question")
    if not context.strip():
        raise LongifyError("--context: empty context")
    if max_seq_length is None:
        max_seq_length = model_max_length(model.config, tokenizer)
    else:
        max_seq_length = effective_max_seq_length(max_seq_length, model.config, tokenizer)
    example = QAExample(id="q", question=question, context=context, answers=[], language="")
    features = build_features(
        [example],
        tokenizer,
        max_seq_length=max_seq_length,
        doc_stride=doc_stride,
        max_query_length=max_query_length,
        global_attention=uses_global_attention(model.config),
        train=False,
    )
    starts, ends = window_logits(model, features, collator_for(tokenizer, model.config), batch_size)
    _, nbest = decode(
        [example], features, starts, ends, n_best_size=n_best_size, max_answer_length=max_answer_length
    )
    best = nbest[0][0]
    return {
        "answer": best["text"],
        "score": best["score"],
        "probability": best["probability"],
        "start": best["start"],
        "end": best["end"],
        "windows": len(features),
        "nbest": nbest[0],
    }


def predict(
    model_dir: str,
    question: str,
    context: str,
    *,
    max_seq_length: int | None = None,
    doc_stride: int | None = None,
    max_query_length: int | None = None,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    attention: str = "fast",
    allow_new_head: bool = False,
) -> dict[str, Any]:
    """Load ``model_dir`` (model + tokenizer) and answer ``question`` about ``context``. A model without a
    trained span head is refused (its answers would come from random weights) unless ``allow_new_head``.
    Windows given as None are the model's trained ones (``trained_windows``), else the defaults."""
    check_model_source(model_dir, "--model")
    if has_qa_head(model_dir) is False and not allow_new_head:
        raise LongifyError(
            f"--model {model_dir}: has no question-answering head (no qa_outputs weights): fine-tune it with "
            "`longify qa train` first, or pass --allow-new-head to answer with a random head"
        )
    tokenizer = load_tokenizer(model_dir, flag=None)  # qa predict takes the model's own
    model = load_qa_model(model_dir, attention)
    check_vocab(tokenizer, model_dir, model.config, model_dir, pairs=True)
    given = {"max_seq_length": max_seq_length, "doc_stride": doc_stride, "max_query_length": max_query_length}
    taken = {k: v for k, v in trained_windows(model_dir).items() if given[k] is None}
    log_windows_taken(taken, model_dir)
    windows = {**given, **taken}
    return answer_question(
        model,
        tokenizer,
        question,
        context,
        max_seq_length=windows["max_seq_length"],
        doc_stride=DEFAULT_DOC_STRIDE if windows["doc_stride"] is None else windows["doc_stride"],
        max_query_length=windows["max_query_length"] or DEFAULT_MAX_QUERY_LENGTH,
        n_best_size=n_best_size,
        max_answer_length=max_answer_length,
    )
