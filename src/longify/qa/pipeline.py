"""The QA pipeline shared by ``qa train`` and ``qa evaluate``: load a split, run the model over its windows
(sharded across processes under torchrun, scored once), decode and score officially, write the outputs and
the run record."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.artifacts import (
    NBEST_FILE,
    PREDICTIONS_FILE,
    QUESTION_SCORES_FILE,
    RESULTS_FILE,
    write_qa_results,
    write_question_scores,
)
from longify.catalog.names import resolve_named
from longify.cpu import cpu_info
from longify.distributed import from_main, gather_on_main, rank_and_world
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.hfargs import data_parallel_size, precision
from longify.qa.analysis import bucket_scores
from longify.qa.args import QAArgs, QADataArguments
from longify.qa.decode import decode, keyed_by_id
from longify.qa.evalset import eval_files_into
from longify.qa.features import (
    QACollator,
    build_features,
    collator_for,
    tokenizer_is_uncased,
    uses_global_attention,
)
from longify.qa.models import effective_max_seq_length
from longify.qa.score import (
    eval_scoring,
    official_predictions,
    score_predictions,
    subset_of,
)
from longify.qa.tasks import data_flag_options, file_languages, get_task, load_examples
from longify.qa.tasks.concat import concat_contexts
from longify.qa.tasks.example import QAExample
from longify.runinfo import git_hash, library_versions, now_iso

logger = logging.getLogger(__name__)


def infer_dataset(dataset: str | None, path: str) -> str:
    """``--dataset``, or ``json`` for a single file (any SQuAD format), ``squad`` for a folder."""
    if dataset:
        return dataset
    return "squad" if Path(path).is_dir() else "json"


def load_split(data: QADataArguments, path: str | None, *, train: bool, flag: str) -> list[QAExample]:
    """The examples of ``--train_file`` / ``--predict_file``, with --concat_contexts and sample limits.
    A dataset name (``--dataset xquad`` without a path, or ``--predict_file xquad``) means its folder in the
    data dir (``longify data download``)."""
    path = resolve_named(path, data.dataset)
    if path is None:
        what = "training" if train else "evaluation"
        raise LongifyError(
            f"{flag}: required: the {what} questions (a SQuAD-format file, a folder or a dataset name)"
        )
    name = infer_dataset(data.dataset, path)
    split = data.train_split if train else data.eval_split
    options = data_flag_options(data, name)  # --mlqa_pairs, --triviaqa_word_budget
    languages = file_languages(name, data.languages, data.lang)  # a plain file under --lang: that language
    examples = list(load_examples(name, path, split=split, languages=languages, **options))
    if not examples:
        raise LongifyError(f"{path}: no questions found")
    if data.concat_contexts > 1:
        examples = list(concat_contexts(examples, data.concat_contexts, seed=data.concat_seed))
        logger.info(
            "--concat_contexts %d: each context joined with %d others",
            data.concat_contexts,
            data.concat_contexts - 1,
        )
    if train:
        return examples[: data.max_train_samples] if data.max_train_samples is not None else examples
    return first_per_language(examples, data.max_eval_samples)


def first_per_language(examples: list[QAExample], limit: int | None) -> list[QAExample]:
    """``--max_eval_samples``: the first ``limit`` questions of each language (of each language pair for MLQA),
    in file order, so that a multilingual evaluation keeps every language its average is taken over."""
    if limit is None:
        return examples
    taken: dict[tuple[str, str | None], int] = {}
    kept = []
    for ex in examples:
        key = (ex.language, ex.question_language)
        if taken.get(key, 0) < limit:
            taken[key] = taken.get(key, 0) + 1
            kept.append(ex)
    if len(taken) > 1:
        what = "language pairs" if any(q is not None for _, q in taken) else "languages"  # MLQA: pairs
        logger.info(
            "--max_eval_samples %d: the first %d questions of each of %d %s", limit, limit, len(taken), what
        )
    return kept


def note_ignored_flags(data: QADataArguments) -> None:
    """One log line for ``--preprocessing_num_workers``, accepted (run_squad.py / run_qa.py command lines
    carry it) but without effect: QA tokenisation runs batched on the fast tokenizer's own threads."""
    if data.preprocessing_num_workers:
        logger.info(
            "--preprocessing_num_workers %d: ignored; tokenisation runs batched on the fast tokenizer's "
            "own threads",
            data.preprocessing_num_workers,
        )


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
    question_scores: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def window_logits(
    model: PreTrainedModel,
    features: Sequence[dict[str, Any]],
    collator: QACollator,
    batch_size: int = 8,
    *,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Start and end logits of each window, in feature order, trimmed to its length. Windows are batched
    by length (the collator pads each batch to its longest window, rounded up to the attention window),
    so padding stays small. Runs under ``torch.inference_mode()`` (and under autocast to
    ``autocast_dtype`` on the model's device when given)."""
    device = next(model.parameters()).device
    order = sorted(range(len(features)), key=lambda i: len(features[i]["input_ids"]))
    starts: list[np.ndarray] = [np.empty(0)] * len(features)
    ends: list[np.ndarray] = [np.empty(0)] * len(features)
    was_training = model.training
    model.eval()
    try:
        for first in range(0, len(order), batch_size):
            idx = order[first : first + batch_size]
            batch = {k: v.to(device) for k, v in collator([features[i] for i in idx]).items()}
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None),
            ):
                out = model(**batch)
            s, e = out.start_logits.float().cpu().numpy(), out.end_logits.float().cpu().numpy()
            for row, i in enumerate(idx):
                n = len(features[i]["input_ids"])
                starts[i], ends[i] = s[row, :n], e[row, :n]
    finally:
        model.train(was_training)
    return starts, ends


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
    logits = sharded_window_logits(model, features, collator, batch_size, autocast_dtype)
    if logits is None:  # not rank 0: it decodes and scores every question, once
        return EvalOutput(from_main(None), {}, {})
    starts, ends = logits
    by_index, nbest_by_index = decode(
        examples,
        features,
        starts,
        ends,
        n_best_size=data.n_best_size,
        max_answer_length=data.max_answer_length,
    )
    metric = data.metric or (get_task(data.dataset).metric if data.dataset else "squad")
    units, average = eval_scoring(data, examples)  # the official key set and headline average
    top = {i: spans[0] for i, spans in nbest_by_index.items()}
    predictions = official_predictions(examples, top, units)  # one per key; scores pick among documents
    question_scores: list[dict[str, Any]] = []
    result = score_predictions(
        predictions,
        units=units,
        metric=metric,
        lang=data.lang,
        average=average,
        question_scores=question_scores,
    )
    result["windows"] = len(features)
    result["max_seq_length"] = seq_len
    result["analysis"] = bucket_scores(
        examples, by_index, tokenizer, metric=metric, lang=data.lang, bucket_width=data.bucket_width
    )
    nbest = keyed_by_id(examples, nbest_by_index, subset_of)
    return EvalOutput(from_main(result), predictions, nbest, question_scores)


def sharded_window_logits(
    model: PreTrainedModel,
    features: Sequence[dict[str, Any]],
    collator: Any,
    batch_size: int,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """Under torchrun each rank runs every world-th window and rank 0 gets all the logits in feature order
    (the other ranks None); one process runs them all."""
    rank, world = rank_and_world()
    mine = list(range(rank, len(features), world))
    starts, ends = window_logits(
        model, [features[i] for i in mine], collator, batch_size, autocast_dtype=autocast_dtype
    )
    parts = gather_on_main((mine, starts, ends))
    if parts is None:
        return None
    all_starts: list[np.ndarray] = [np.empty(0)] * len(features)
    all_ends: list[np.ndarray] = [np.empty(0)] * len(features)
    for indices, part_starts, part_ends in parts:
        for i, start, end in zip(indices, part_starts, part_ends, strict=True):
            all_starts[i], all_ends[i] = start, end
    return all_starts, all_ends


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
        "precision": precision(args.training),
        "cpu": cpu_info().record(),  # the kind of CPU: its floating-point paths move the last digits
        "world_size": data_parallel_size(args.training),
        "versions": library_versions(),
        "git": git_hash(),
        "created": now_iso(),
    }


def write_outputs(output_dir: str | Path, output: EvalOutput, extra: dict[str, Any]) -> dict[str, Any]:
    """predictions.json, nbest_predictions.json, question_scores.jsonl (one line per scored question: id,
    language, EM and F1 in percent; the per-language results are their means) and results.json, replacing
    the folder's earlier ones as a set (``evalset.eval_files_into``; call it under the folder's lock)."""
    results = {**output.result, **extra}
    with eval_files_into(output_dir) as tmp:
        write_json_atomic(tmp / PREDICTIONS_FILE, output.predictions)
        write_json_atomic(tmp / NBEST_FILE, output.nbest)
        write_question_scores(tmp / QUESTION_SCORES_FILE, output.question_scores)
        write_qa_results(tmp / RESULTS_FILE, results)
    return results


def autocast_for(args: QAArgs) -> torch.dtype | None:
    """The autocast dtype of evaluation, the training's precision (``hfargs.precision``): bf16 for
    ``--bf16`` on CPU or GPU, fp16 for ``--fp16`` on CUDA (without CUDA ``--fp16`` is dropped), else none."""
    if args.training.bf16:
        return torch.bfloat16
    return torch.float16 if args.training.fp16 and torch.cuda.is_available() else None
