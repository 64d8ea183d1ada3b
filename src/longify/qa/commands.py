"""``longify qa train | evaluate | predict``: parse the flags, run the function, print one summary line.

Errors for users are ``LongifyError`` (the CLI prints them on one line and exits 2).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from longify.errors import LongifyError, positive_int
from longify.textfiles import read_utf8


def summary_line(result: dict[str, Any], label: str) -> str:
    """``label: EM 81.20 F1 88.45 (en EM .. F1 ..; ...) -> results.json`` from a results record."""
    avg = result.get("average")
    if not avg:
        return f"{label}: done"
    line = f"{label}: EM {avg['exact_match']:.2f} F1 {avg['f1']:.2f}"
    langs = result.get("per_language", {})
    if len(langs) > 1:
        line += " (" + "; ".join(f"{k} {v['exact_match']:.1f}/{v['f1']:.1f}" for k, v in langs.items()) + ")"
    return line


def qa_train_main(argv: Sequence[str]) -> int:
    """``longify qa train ...run_squad.py flags...`` or ``longify qa train config.yaml [flags]``."""
    from longify.qa.args import parse_qa_args
    from longify.qa.train import train_qa

    args = parse_qa_args(argv)
    result = train_qa(args)
    print(summary_line(result, f"longify qa train: {args.training.output_dir}"))
    return 0


def qa_evaluate_main(argv: Sequence[str]) -> int:
    """``longify qa evaluate --model_name_or_path M --predict_file F [--output_dir D]`` or
    ``longify qa evaluate --predictions P.json --dataset NAME --predict_file PATH`` (no model)."""
    from longify.qa.args import parse_qa_args
    from longify.qa.evaluate import evaluate_qa

    args = parse_qa_args(argv, default_output_dir="qa-eval-output")
    result = evaluate_qa(args)
    where = args.data.predictions or args.training.output_dir
    print(summary_line(result, f"longify qa evaluate: {where}"))
    return 0


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``longify qa predict``."""
    p.add_argument("--model", required=True, help="fine-tuned QA model directory (from `longify qa train`)")
    p.add_argument("--question", required=True, help="the question")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--context", help="the context text")
    src.add_argument("--context-file", "--context_file", help="a UTF-8 text file holding the context")
    p.add_argument(
        "--max-seq-length",
        "--max_seq_length",
        type=positive_int,
        default=None,
        help="tokens per window (default: as the model was trained by `qa train`, else the model's maximum)",
    )
    p.add_argument(
        "--doc-stride",
        "--doc_stride",
        type=positive_int,
        default=None,
        help="tokens shared by consecutive windows (default: as the model was trained, else 128)",
    )
    p.add_argument(
        "--max-query-length",
        "--max_query_length",
        type=positive_int,
        default=None,
        help="question tokens kept (default: as the model was trained, else 64)",
    )
    p.add_argument(
        "--n-best-size", "--n_best_size", type=positive_int, default=20, help="candidates per window"
    )
    p.add_argument(
        "--max-answer-length", "--max_answer_length", type=positive_int, default=30, help="in tokens"
    )
    p.add_argument("--attention", choices=("fast", "hf"), default="fast", help="Longformer attention kernel")
    p.add_argument(
        "--allow-new-head",
        "--allow_new_head",
        action="store_true",
        help="answer even when the model has no trained span head (random qa_outputs)",
    )


def qa_predict_main(argv: Sequence[str]) -> int:
    """``longify qa predict`` flags -> :func:`qa_predict` (for callers holding an argv)."""
    parser = argparse.ArgumentParser(
        prog="longify qa predict", description="Answer a question about a context.", allow_abbrev=False
    )
    add_predict_arguments(parser)
    return qa_predict(parser.parse_args(list(argv)))


def read_context(path: str) -> str:
    """The text of ``--context-file`` (newlines as ``read_text`` gives them); a byte that is not UTF-8 is
    named by line, column and byte offset, as in every other input."""
    try:
        text = read_utf8(path)
    except LongifyError as err:
        raise LongifyError(f"--context-file {err}") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def qa_predict(ns: argparse.Namespace) -> int:
    """Print ``{"answer", "score", "probability", "start", "end"}`` as one JSON line."""
    from longify.qa.predict import predict

    context = ns.context
    if ns.context_file is not None:
        context = read_context(ns.context_file)
    result = predict(
        ns.model,
        ns.question,
        context,
        max_seq_length=ns.max_seq_length,
        doc_stride=ns.doc_stride,
        max_query_length=ns.max_query_length,
        n_best_size=ns.n_best_size,
        max_answer_length=ns.max_answer_length,
        attention=ns.attention,
        allow_new_head=ns.allow_new_head,
    )
    shown = {k: result[k] for k in ("answer", "score", "probability", "start", "end")}
    print(json.dumps(shown, ensure_ascii=False))
    return 0
