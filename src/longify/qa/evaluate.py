"""``longify qa evaluate``: a model's predictions and official EM/F1 on a benchmark, or the scores of an
existing predictions JSON (``--predictions FILE``, no model, like the official scripts).

Outputs in ``--output_dir``: ``predictions.json`` (id -> text; language -> {id -> text} when ids repeat
across languages), ``nbest_predictions.json``, ``question_scores.jsonl`` and ``results.json`` (metrics per
language and their average, buckets by answer position and context length, arguments, seed, versions, git
hash, and the ``defining_args``), replaced as a set (``evalset``). A folder whose results.json another
command wrote (a ``qa train`` run), or an evaluation made with other defining arguments (model, files,
languages, windows, ...), is refused unless ``--overwrite_output_dir``; the same arguments evaluate again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from longify.artifacts import RESULTS_FILE, write_qa_results
from longify.errors import LongifyError
from longify.hfargs import expanded_argv, has_flag
from longify.loading import check_vocab, has_qa_head, load_tokenizer
from longify.locks import launch_rank, output_lock
from longify.qa.args import QAArgs
from longify.qa.evalset import eval_files_into, recover_eval_sets
from longify.qa.models import (
    check_model_type,
    effective_max_seq_length,
    load_config,
    load_qa_model,
)
from longify.qa.pipeline import (
    autocast_for,
    load_split,
    note_ignored_flags,
    resolve_lowercase,
    run_evaluation,
    run_record,
    write_outputs,
)
from longify.qa.score import evaluate_predictions_file
from longify.qa.tasks import TASKS, data_flag_options, file_languages
from longify.qa.trained_windows import log_windows_taken, trained_windows
from longify.runargs import KEY, check_same_run, defining_args

logger = logging.getLogger(__name__)

EVAL_COMMAND = "qa evaluate"  # results.json's "command": what qa evaluate may overwrite
DEFAULT_EVAL_OUTPUT_DIR = "qa-eval-output"  # what `longify qa evaluate` passes when --output_dir is absent


def take_trained_windows(args: QAArgs, model_dir: str) -> None:
    """Windows as the model was trained: a ``qa train`` output records its ``--max_seq_length``,
    ``--doc_stride`` and ``--max_query_length`` (``longify_run.json``); those not given here are taken from
    it, so a long model is not evaluated in 384-token windows by default. One log line says which."""
    argv = expanded_argv(args.argv)
    taken = {}
    for name, value in trained_windows(model_dir).items():
        given = has_flag(argv, f"--{name}") or has_flag(argv, f"--{name.replace('_', '-')}")
        if not given and getattr(args.data, name) != value:
            setattr(args.data, name, value)
            taken[name] = value
    log_windows_taken(taken, model_dir)


# what defines an evaluation (a rerun into its folder with other values is refused): the data flags
# that change which questions are scored, how, or the predictions themselves
EVAL_DATA_FLAGS = (
    "dataset",
    "predict_file",
    "predictions",
    "languages",
    "eval_split",
    "metric",
    "lang",
    "mlqa_pairs",
    "triviaqa_word_budget",
)
MODEL_DATA_FLAGS = (
    "max_seq_length",
    "doc_stride",
    "max_query_length",
    "n_best_size",
    "max_answer_length",
    "concat_contexts",
    "concat_seed",
    "max_eval_samples",
)


def evaluation_args(args: QAArgs, max_seq_length: int | None = None) -> dict[str, Any]:
    """The defining arguments of this evaluation (``{"--flag": value}``, as ``runargs.defining_args``);
    ``max_seq_length``: the window actually used (capped at the model's maximum)."""
    data = dataclasses.asdict(args.data)
    section: dict[str, Any] = {
        "model_name_or_path": args.model.model_name_or_path if not args.data.predictions else None,
        **{k: data[k] for k in EVAL_DATA_FLAGS},
    }
    if not args.data.predictions:
        section.update({k: data[k] for k in MODEL_DATA_FLAGS})
        section["max_seq_length"] = max_seq_length or data["max_seq_length"]
        section.update(tokenizer_name=args.model.tokenizer_name, do_lower_case=args.do_lower_case)
        section.update(bf16=args.training.bf16, fp16=args.training.fp16)
    return {k: v for k, v in defining_args([section], args.training).items() if k[2:] in section}


def check_same_evaluation(args: QAArgs, current: dict[str, Any]) -> None:
    """Refuse (one line naming each changed flag and its recorded value) to replace an evaluation that
    ``--output_dir`` holds, made with other defining arguments, unless ``--overwrite_output_dir``. The
    same arguments again evaluate again (the model's files may have changed under the same name)."""
    if not args.overwrite_output_dir:
        check_same_run(args.training.output_dir, current, record_file=RESULTS_FILE)


@contextmanager
def eval_output_dir(args: QAArgs) -> Iterator[None]:
    """Lock ``--output_dir`` and refuse one whose results.json another command wrote (a ``qa train`` run's
    results, say), unless ``--overwrite_output_dir``: ``qa evaluate`` never overwrites another run's results."""
    out = Path(args.training.output_dir)
    with output_lock(out):
        if launch_rank() == 0:  # what an evaluation killed while writing left: settled by the writer
            recover_eval_sets(out)
        check_results_owner(out / RESULTS_FILE, overwrite=args.overwrite_output_dir)
        yield


def check_results_owner(path: Path, *, overwrite: bool) -> None:
    """Raise when ``path`` exists and was not written by ``qa evaluate`` (and not ``overwrite``)."""
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("command") == EVAL_COMMAND:
        return
    writer = "`qa train`" if isinstance(old, dict) and "train" in old else "another command"
    raise LongifyError(
        f"--output_dir {path.parent}: holds the results.json of {writer}; choose another --output_dir "
        "(or pass --overwrite_output_dir to replace it)"
    )


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
        task = data.dataset if data.dataset in TASKS else "json"
        result = evaluate_predictions_file(
            data.predictions,
            dataset,
            path,
            split=data.eval_split,
            languages=file_languages(task, data.languages, data.lang),
            metric=data.metric,
            lang=data.lang,
            **(data_flag_options(data, data.dataset) if data.dataset in TASKS else {}),
        )
        if has_flag(args.argv, "--output_dir") or args.training.output_dir != DEFAULT_EVAL_OUTPUT_DIR:
            defining = evaluation_args(args)
            result = {**result, **run_record(args), "command": EVAL_COMMAND, KEY: defining}
            with eval_output_dir(args):
                check_same_evaluation(args, defining)
                with eval_files_into(args.training.output_dir) as tmp:
                    write_qa_results(tmp / RESULTS_FILE, result)
        return result
    name = args.model.model_name_or_path
    if name is None:
        raise LongifyError("--model_name_or_path: required to evaluate a model (or pass --predictions FILE)")
    with eval_output_dir(args):  # before the model is loaded
        take_trained_windows(args, name)
        config = load_config(name)
        check_model_type(args.model_type, config, name)
        tokenizer = load_tokenizer(args.model.tokenizer_name or name)
        check_vocab(tokenizer, args.model.tokenizer_name or name, config, name, pairs=True)
        seq_len = effective_max_seq_length(data.max_seq_length, config, tokenizer)
        defining = evaluation_args(args, seq_len)
        check_same_evaluation(args, defining)
        examples = load_split(data, data.predict_file, train=False, flag="--predict_file")
        note_ignored_flags(data)
        model = load_qa_model(name, args.model.attention).to(args.training.device)
        new_head = has_qa_head(name) is False
        if new_head:
            logger.warning(
                "%s has no trained question-answering head: its span head is random (a baseline); "
                "recorded as qa_head: random in results.json",
                name,
            )
        output = run_evaluation(
            model,
            tokenizer,
            examples,
            data,
            batch_size=args.training.per_device_eval_batch_size,
            lower=resolve_lowercase(args.do_lower_case, tokenizer),
            max_seq_length=seq_len,
            autocast_dtype=autocast_for(args),
        )
        record = {
            "model": name,
            "predict_file": data.predict_file,
            "qa_head": "random" if new_head else "trained",
            **run_record(args),
            "command": EVAL_COMMAND,
            KEY: defining,
        }
        if args.training.process_index != 0:  # under torchrun rank 0 writes
            return {**output.result, **record}
        return write_outputs(args.training.output_dir, output, record)
