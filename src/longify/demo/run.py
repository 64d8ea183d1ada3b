"""``longify demo``: the embedded default pipeline, offline, on the data shipped in ``demo/data``.

Stages (each writes to ``OUT``): a small pre-trained short RoBERTa (trained on the shipped WikiText-format
text) -> conversion to a Longformer, verified against it -> long masked-LM pretraining with the seed's
``run_long_lm.py`` flags -> QA fine-tuning with the seed's ``run_squad.py`` flags on long synthetic
documents, scored against the same model with an untrained head -> summary (also ``OUT/summary.json``).
"""

from __future__ import annotations

import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

from longify.convert import convert
from longify.demo.qa_data import write_qa_files
from longify.demo.source import pretrain_source
from longify.errors import LongifyError
from longify.locks import INSIDE_NAME, output_lock
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.args import parse_qa_args
from longify.qa.evaluate import evaluate_qa
from longify.qa.train import train_qa
from longify.runinfo import library_versions, write_json_atomic
from longify.tiny import tiny_model, train_tokenizer

logger = logging.getLogger(__name__)

DATA_FILES = ("wiki.train.raw", "wiki.valid.raw")
SOURCE_LEN = 128
LONG_LEN = 1024
WINDOW = 64
MARKER = ".longify-demo"  # in OUT: the demo made this folder and may replace what it holds


def shipped_data_dir() -> Path:
    """The folder of the shipped demo corpus (WikiText-103 raw layout)."""
    return Path(str(resources.files("longify.demo") / "data"))


def stage_data(out: Path) -> Path:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(shipped_data_dir() / name, data / name)
    return data


def pretrain_command(out: Path, data: Path, steps: int) -> list[str]:
    """The seed's run_long_lm.py flags, scaled to the demo (CPU, a tiny model, short text)."""
    return [
        "--model_name_or_path", str(out / "long"),
        "--model_name", "demo-roberta-1024-lm",
        "--output_dir", str(out / "long-lm"),
        "--logging_dir", str(out / "logs" / "long-lm"),
        "--val_file_path", str(data / "wiki.valid.raw"),
        "--train_file_path", str(data / "wiki.train.raw"),
        "--seed", "42",
        "--max_pos", str(LONG_LEN),
        "--adam_epsilon", "1e-8",
        "--warmup_steps", "5",
        "--learning_rate", "1e-3",
        "--weight_decay", "0.01",
        "--max_steps", str(steps),
        "--evaluate_during_training",
        "--logging_steps", "10",
        "--eval_steps", str(max(1, steps // 2)),
        "--save_steps", str(steps),
        "--max_grad_norm", "1.0",
        "--per_device_eval_batch_size", "4",
        "--per_device_train_batch_size", "2",
        "--gradient_accumulation_steps", "1",
        "--overwrite_output_dir",
        "--fp16",
        "--do_train",
        "--do_eval",
        "--data_cache_dir", str(out / "cache"),
    ]  # fmt: skip


def qa_command(out: Path, epochs: float, train: bool) -> list[str]:
    """The seed's run_squad.py flags on the demo's long-document QA files (one 1024-token window each)."""
    qa_dir = out / "data" / "qa"
    argv = [
        "--model_type", "roberta",
        "--model_name_or_path", str(out / "long-lm"),
        "--tokenizer_name", str(out / "long-lm"),
        *(["--do_train"] if train else []),
        "--do_eval",
        "--fp16",
        "--seed", "42",
        "--do_lower_case",
        "--train_file", str(qa_dir / "train-v1.1.json"),
        "--predict_file", str(qa_dir / "dev-v1.1.json"),
        "--per_gpu_train_batch_size", "4",
        "--learning_rate", "2e-3",
        "--num_train_epochs", str(epochs),
        "--max_seq_length", str(LONG_LEN),
        "--doc_stride", "128",
        "--output_dir", str(out / ("qa" if train else "qa-untrained")),
        "--overwrite_output_dir",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    return argv


def run_demo(
    out: str | Path = "demo-output",
    *,
    steps: int = 300,
    lm_steps: int = 40,
    qa_epochs: float = 3.0,
    qa_examples: tuple[int, int] = (192, 48),
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run every stage on the shipped data and return (and print) the summary.

    ``out`` must be new, empty or made by an earlier demo (its ``.longify-demo`` marker): the demo replaces
    its own folders there. ``overwrite`` accepts any other non-empty folder too.
    """
    out = Path(out)
    with output_lock(out):
        claim_output(out, overwrite)
        return _run(out, steps, lm_steps, qa_epochs, qa_examples)


def claim_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` the demo did not create (unless ``overwrite``), then mark it as the demo's."""
    if out.exists() and not out.is_dir():
        raise LongifyError(f"--out {out}: exists and is not a directory")
    foreign = out.is_dir() and not (out / MARKER).is_file()
    if foreign and any(p.name != INSIDE_NAME for p in out.iterdir()) and not overwrite:
        raise LongifyError(
            f"--out {out}: not empty and not made by `longify demo` (which replaces its data/, source/, "
            "long/, long-lm/, qa/ folders); choose a new or empty folder, or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `longify demo`: a later demo may replace what is here\n", "utf-8")


def _run(
    out: Path, steps: int, lm_steps: int, qa_epochs: float, qa_examples: tuple[int, int]
) -> dict[str, Any]:
    overwrite = True  # every folder below is the demo's own (claim_output)
    t0 = time.perf_counter()
    data = stage_data(out)
    train_text = (data / "wiki.train.raw").read_text(encoding="utf-8")
    valid_text = (data / "wiki.valid.raw").read_text(encoding="utf-8")

    logger.info("[1/4] training a tokenizer and a small short-context RoBERTa on %s", data)
    tok = train_tokenizer("roberta", train_text.splitlines(), vocab_size=1000, model_max_length=SOURCE_LEN)
    model = tiny_model(
        "roberta", tok, max_len=SOURCE_LEN, hidden=64, layers=2, heads=4, intermediate=128, perturb=0
    )
    training = pretrain_source(model, tok, train_text, valid_text, steps=steps, block=SOURCE_LEN)
    source_dir = out / "source"
    shutil.rmtree(source_dir, ignore_errors=True)
    model.save_pretrained(source_dir)
    tok.save_pretrained(source_dir)

    logger.info("[2/4] converting to a Longformer with %d positions", LONG_LEN)
    record = convert(
        str(source_dir), out / "long", max_pos=LONG_LEN, attention_window=WINDOW, overwrite=overwrite
    )

    logger.info("[3/4] long masked-LM pretraining at %d tokens (the seed's run_long_lm flags)", LONG_LEN)
    lm = pretrain(parse_pretrain_args(pretrain_command(out, data, lm_steps)))

    logger.info("[4/4] extractive QA on long documents (the seed's run_squad flags)")
    qa_dir = out / "data" / "qa"
    write_qa_files(qa_dir, *qa_examples)
    untrained = evaluate_qa(parse_qa_args(qa_command(out, qa_epochs, train=False)))
    trained = train_qa(parse_qa_args(qa_command(out, qa_epochs, train=True)))

    summary = {
        "source": {"dir": str(source_dir), "positions": SOURCE_LEN, **training.__dict__},
        "convert": {
            "dir": record["output"],
            "positions": record["max_pos"],
            "attention_window": WINDOW,
            "verification": record["verification"],
            "seconds": record["seconds"],
        },
        "pretrain": {
            "dir": str(out / "long-lm"),
            "steps": lm["steps"],
            "initial": lm["initial"],
            "final": lm["final"],
            "seconds": lm["seconds"],
        },
        "qa": {
            "dir": str(out / "qa"),
            "untrained_head": untrained["average"],
            "fine_tuned": trained["average"],
            "epochs": qa_epochs,
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": library_versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    src, conv, lm, qa = s["source"], s["convert"], s["pretrain"], s["qa"]
    v = conv["verification"]
    lines = [
        "longify demo: summary",
        f"  source   tiny RoBERTa, {src['positions']} positions, {src['steps']} MLM steps: "
        f"eval loss {src['eval_loss_before']:.3f} -> {src['eval_loss_after']:.3f}",
        f"  convert  Longformer, {conv['positions']} positions, window {conv['attention_window']}: "
        f"max |diff| vs source hidden {v['max_abs_diff_hidden']:.1e}, logits {v['max_abs_diff_logits']:.1e} "
        f"on {v['tokens_compared']} tokens ({'ok' if v['passed'] else 'FAILED'}), {conv['seconds']:.1f} s",
        f"  pretrain long MLM at {conv['positions']} tokens, {lm['steps']} steps: eval loss "
        f"{lm['initial']['loss']:.3f} -> {lm['final']['loss']:.3f}, pseudo bits/char {lm['initial']['pseudo_bits_per_char']:.3f} "
        f"-> {lm['final']['pseudo_bits_per_char']:.3f} ({lm['seconds']:.0f} s)",
        f"  qa       long-document QA, dev EM/F1: untrained head {qa['untrained_head']['exact_match']:.1f}/"
        f"{qa['untrained_head']['f1']:.1f} -> fine-tuned {qa['fine_tuned']['exact_match']:.1f}/"
        f"{qa['fine_tuned']['f1']:.1f} ({qa['epochs']:g} epochs)",
        f"  total    {s['seconds']:.0f} s; details in summary.json",
    ]
    return "\n".join(lines)
