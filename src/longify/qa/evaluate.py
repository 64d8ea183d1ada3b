"""``longify qa evaluate``: a model's predictions and official EM/F1 on a benchmark, or the scores of an
existing predictions JSON (``--predictions FILE``, no model, like the official scripts).

Outputs in ``--output_dir``: ``predictions.json`` (id -> text; language -> {id -> text} when ids repeat
across languages), ``nbest_predictions.json`` and ``results.json`` (metrics per language and their average,
buckets by answer position and context length, arguments, seed, versions, git hash). A folder whose
results.json another command wrote (a ``qa train`` run) is refused unless ``--overwrite_output_dir``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from longify.errors import LongifyError
from longify.hfargs import expanded_argv, has_flag
from longify.loading import check_vocab, has_qa_head
from longify.locks import output_lock
from longify.qa.args import QAArgs
from longify.qa.models import check_model_type, load_config, load_qa_model, load_tokenizer
from longify.qa.pipeline import (
    autocast_for,
    load_split,
    resolve_lowercase,
    run_evaluation,
    run_record,
    write_outputs,
)
from longify.qa.score import (
    evaluate_predictions_file,
)
from longify.qa.tasks import TASKS, data_flag_options
from longify.runargs import RUN_FILE
from longify.runinfo import write_json_atomic

logger = logging.getLogger(__name__)

EVAL_COMMAND = "qa evaluate"  # results.json's "command": what qa evaluate may overwrite
DEFAULT_EVAL_OUTPUT_DIR = "qa-eval-output"  # what `longify qa evaluate` passes when --output_dir is absent


WINDOW_FLAGS = ("max_seq_length", "doc_stride", "max_query_length")


def take_trained_windows(args: QAArgs, model_dir: str) -> None:
    """Windows as the model was trained: a ``qa train`` output records its ``--max_seq_length``,
    ``--doc_stride`` and ``--max_query_length`` (``longify_run.json``); those not given here are taken from
    it, so a long model is not evaluated in 384-token windows by default. One log line says which."""
    path = Path(model_dir) / RUN_FILE
    try:
        defining = json.loads(path.read_text(encoding="utf-8")).get("defining_args")
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(defining, dict) or "--doc_stride" not in defining:  # not a qa train run
        return
    argv = expanded_argv(args.argv)
    taken = []
    for name in WINDOW_FLAGS:
        value = defining.get(f"--{name}")
        given = has_flag(argv, f"--{name}") or has_flag(argv, f"--{name.replace('_', '-')}")
        if isinstance(value, int) and value > 0 and not given and getattr(args.data, name) != value:
            setattr(args.data, name, value)
            taken.append(f"--{name} {value}")
    if taken:
        logger.info(
            "%s: as %s was trained (its %s); pass the flags to override",
            ", ".join(taken),
            model_dir,
            RUN_FILE,
        )


@contextmanager
def eval_output_dir(args: QAArgs) -> Iterator[None]:
    """Lock ``--output_dir`` and refuse one whose results.json another command wrote (a ``qa train`` run's
    results, say), unless ``--overwrite_output_dir``: ``qa evaluate`` never overwrites another run's results."""
    out = Path(args.training.output_dir)
    with output_lock(out):
        check_results_owner(out / "results.json", overwrite=args.overwrite_output_dir)
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
        result = evaluate_predictions_file(
            data.predictions,
            dataset,
            path,
            split=data.eval_split,
            languages=data.languages,
            metric=data.metric,
            lang=data.lang,
            **(data_flag_options(data, data.dataset) if data.dataset in TASKS else {}),
        )
        if has_flag(args.argv, "--output_dir") or args.training.output_dir != DEFAULT_EVAL_OUTPUT_DIR:
            result = {**result, **run_record(args), "command": EVAL_COMMAND}
            with eval_output_dir(args):
                write_json_atomic(Path(args.training.output_dir) / "results.json", result)
        return result
    name = args.model.model_name_or_path
    if name is None:
        raise LongifyError("--model_name_or_path: required to evaluate a model (or pass --predictions FILE)")
    with eval_output_dir(args):  # before the model is loaded
        take_trained_windows(args, name)
        config = load_config(name)
        check_model_type(args.model_type, config, name)
        examples = load_split(data, data.predict_file, train=False, flag="--predict_file")
        tokenizer = load_tokenizer(args.model.tokenizer_name or name)
        check_vocab(tokenizer, args.model.tokenizer_name or name, config, name)
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
            autocast_dtype=autocast_for(args),
        )
        record = {
            "model": name,
            "predict_file": data.predict_file,
            "qa_head": "random" if new_head else "trained",
            **run_record(args),
            "command": EVAL_COMMAND,
        }
        if args.training.process_index != 0:  # under torchrun rank 0 writes
            return {**output.result, **record}
        return write_outputs(args.training.output_dir, output, record)
