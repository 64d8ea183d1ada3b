"""``longify qa evaluate``: a model's predictions and official EM/F1 on a benchmark, or the scores of an
existing predictions JSON (``--predictions FILE``, no model, like the official scripts).

Outputs in ``--output_dir``: ``predictions.json`` (id -> text; language -> {id -> text} when ids repeat
across languages), ``nbest_predictions.json`` and ``results.json`` (metrics per language and their average,
buckets by answer position and context length, arguments, seed, versions, git hash).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from longify.errors import LongifyError
from longify.qa.analysis import bucket_scores
from longify.qa.args import QAArgs, QADataArguments
from longify.qa.decode import decode, keyed_by_id
from longify.qa.features import build_features, collator_for, tokenizer_is_uncased, uses_global_attention
from longify.qa.runtime import (
    check_model_type,
    effective_max_seq_length,
    load_config,
    load_qa_model,
    load_tokenizer,
    window_logits,
)
from longify.qa.score import evaluate_predictions_file, score_predictions, subset_of
from longify.qa.tasks import get_task, load_examples
from longify.qa.tasks.concat import concat_contexts
from longify.qa.tasks.example import QAExample
from longify.runinfo import git_hash, library_versions, now_iso, write_json_atomic

logger = logging.getLogger(__name__)


def infer_dataset(dataset: str | None, path: str) -> str:
    """``--dataset``, or ``json`` for a single file (any SQuAD format), ``squad`` for a folder."""
    if dataset:
        return dataset
    return "squad" if Path(path).is_dir() else "json"


def load_split(data: QADataArguments, path: str | None, *, train: bool, flag: str) -> list[QAExample]:
    """The examples of ``--train_file`` / ``--predict_file``, with --concat_contexts and sample limits."""
    if path is None:
        raise LongifyError(f"{flag}: required for {'--do_train' if train else '--do_eval'}")
    name = infer_dataset(data.dataset, path)
    split = data.train_split if train else data.eval_split
    examples = list(load_examples(name, path, split=split, languages=data.languages))
    if not examples:
        raise LongifyError(f"{path}: no questions found")
    if data.concat_contexts > 1:
        examples = list(concat_contexts(examples, data.concat_contexts, seed=data.concat_seed))
        logger.info(
            "--concat_contexts %d: each context joined with %d others",
            data.concat_contexts,
            data.concat_contexts - 1,
        )
    limit = data.max_train_samples if train else data.max_eval_samples
    return examples[:limit] if limit is not None else examples


def resolve_lowercase(do_lower_case: bool, tokenizer: PreTrainedTokenizerBase) -> bool:
    """``--do_lower_case`` lower-cases the text only for an uncased tokenizer, and says which it did."""
    if not do_lower_case:
        return False
    if tokenizer_is_uncased(tokenizer):
        logger.info("--do_lower_case: the tokenizer is uncased; text is lower-cased")
        return True
    logger.info("--do_lower_case: the tokenizer (%s) is cased; text is kept as is", type(tokenizer).__name__)
    return False


@dataclass
class EvalOutput:
    """What one evaluation produced: scores (with analysis) and the predictions keyed for the files."""

    result: dict[str, Any]
    predictions: dict[str, Any]
    nbest: dict[str, Any]


def run_evaluation(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: Sequence[QAExample],
    data: QADataArguments,
    *,
    batch_size: int = 8,
    lower: bool = False,
    max_seq_length: int | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> EvalOutput:
    """Windows -> logits -> n-best decoding -> official metric, per language, plus the position buckets."""
    seq_len = max_seq_length or effective_max_seq_length(data.max_seq_length, model.config, tokenizer)
    features = build_features(
        examples,
        tokenizer,
        max_seq_length=seq_len,
        doc_stride=data.doc_stride,
        max_query_length=data.max_query_length,
        global_attention=uses_global_attention(model.config),
        train=False,
        lower=lower,
    )
    collator = collator_for(tokenizer, model.config)
    starts, ends = window_logits(model, features, collator, batch_size, autocast_dtype=autocast_dtype)
    by_index, nbest_by_index = decode(
        examples,
        features,
        starts,
        ends,
        n_best_size=data.n_best_size,
        max_answer_length=data.max_answer_length,
    )
    predictions = keyed_by_id(examples, by_index, subset_of)
    metric = data.metric or (get_task(data.dataset).metric if data.dataset else "squad")
    scored = keyed_by_id(examples, {i: spans[0] for i, spans in nbest_by_index.items()}, subset_of)
    result = score_predictions(scored, examples, metric=metric, lang=data.lang)  # scores pick among documents
    result["windows"] = len(features)
    result["max_seq_length"] = seq_len
    result["analysis"] = bucket_scores(
        examples, by_index, tokenizer, metric=metric, lang=data.lang, bucket_width=data.bucket_width
    )
    return EvalOutput(result, predictions, keyed_by_id(examples, nbest_by_index, subset_of))


def flat_metrics(result: dict[str, Any], prefix: str = "eval") -> dict[str, float]:
    """Scalars for logging: ``eval_exact_match``, ``eval_f1`` and, with several languages, per language."""
    out = {f"{prefix}_exact_match": result["average"]["exact_match"], f"{prefix}_f1": result["average"]["f1"]}
    if len(result["per_language"]) > 1:
        for lang, scores in result["per_language"].items():
            out[f"{prefix}_{lang}_exact_match"] = scores["exact_match"]
            out[f"{prefix}_{lang}_f1"] = scores["f1"]
    return out


def run_record(args: QAArgs) -> dict[str, Any]:
    """Arguments, seed, versions and git hash for results.json."""
    return {
        "arguments": {
            "model": dataclasses.asdict(args.model),
            "data": dataclasses.asdict(args.data),
            "training": args.training.to_dict(),
            "do_lower_case": args.do_lower_case,
            "model_type": args.model_type,
            "argv": args.argv,
            "legacy_notes": args.notes,
        },
        "seed": args.training.seed,
        "versions": library_versions(),
        "git": git_hash(),
        "created": now_iso(),
    }


def write_outputs(output_dir: str | Path, output: EvalOutput, extra: dict[str, Any]) -> dict[str, Any]:
    """predictions.json, nbest_predictions.json and results.json, each written atomically."""
    out = Path(output_dir)
    write_json_atomic(out / "predictions.json", output.predictions)
    write_json_atomic(out / "nbest_predictions.json", output.nbest)
    results = {**output.result, **extra}
    write_json_atomic(out / "results.json", results)
    return results


def autocast_for(args: QAArgs) -> torch.dtype | None:
    if not torch.cuda.is_available():
        return None
    return torch.bfloat16 if args.training.bf16 else torch.float16 if args.training.fp16 else None


def evaluate_qa(args: QAArgs) -> dict[str, Any]:
    """Score ``--predictions`` without a model, or evaluate ``--model_name_or_path`` on ``--predict_file``."""
    data = args.data
    if data.predictions:
        dataset = data.dataset or data.predict_file
        if dataset is None:
            raise LongifyError(
                "--predictions: give --dataset NAME --predict_file PATH, or --dataset FILE.json"
            )
        path = data.predict_file if data.dataset else None
        return evaluate_predictions_file(
            data.predictions,
            dataset,
            path,
            split=data.eval_split,
            languages=data.languages,
            metric=data.metric,
            lang=data.lang,
        )
    name = args.model.model_name_or_path
    if name is None:
        raise LongifyError("--model_name_or_path: required to evaluate a model (or pass --predictions FILE)")
    config = load_config(name)
    check_model_type(args.model_type, config, name)
    examples = load_split(data, data.predict_file, train=False, flag="--predict_file")
    tokenizer = load_tokenizer(args.model.tokenizer_name or name)
    model = load_qa_model(name, args.model.attention).to(args.training.device)
    output = run_evaluation(
        model,
        tokenizer,
        examples,
        data,
        batch_size=args.training.per_device_eval_batch_size,
        lower=resolve_lowercase(args.do_lower_case, tokenizer),
        autocast_dtype=autocast_for(args),
    )
    record = {"model": name, "predict_file": data.predict_file, **run_record(args)}
    return write_outputs(args.training.output_dir, output, record)
