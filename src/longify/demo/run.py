"""``longify demo``: the embedded default pipeline, offline, on the data shipped in ``demo/data``.

Stages (each writes to ``OUT``): a small pre-trained short RoBERTa (trained on the shipped WikiText-format
text) -> conversion to a Longformer, verified against it -> summary (also ``OUT/summary.json``).
"""

from __future__ import annotations

import logging
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

from longify.convert import convert
from longify.demo.source import pretrain_source
from longify.runinfo import library_versions, write_json_atomic
from longify.tiny import tiny_model, train_tokenizer

logger = logging.getLogger(__name__)

DATA_FILES = ("wiki.train.raw", "wiki.valid.raw")
SOURCE_LEN = 128
LONG_LEN = 1024
WINDOW = 64


def shipped_data_dir() -> Path:
    """The folder of the shipped demo corpus (WikiText-103 raw layout)."""
    return Path(str(resources.files("longify.demo") / "data"))


def stage_data(out: Path) -> Path:
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(shipped_data_dir() / name, data / name)
    return data


def run_demo(out: str | Path = "demo-output", *, steps: int = 300, overwrite: bool = True) -> dict[str, Any]:
    """Run every stage on the shipped data and return (and print) the summary."""
    out = Path(out)
    t0 = time.perf_counter()
    data = stage_data(out)
    train_text = (data / "wiki.train.raw").read_text(encoding="utf-8")
    valid_text = (data / "wiki.valid.raw").read_text(encoding="utf-8")

    logger.info("[1/2] training a tokenizer and a small short-context RoBERTa on %s", data)
    tok = train_tokenizer("roberta", train_text.splitlines(), vocab_size=1000, model_max_length=SOURCE_LEN)
    model = tiny_model(
        "roberta", tok, max_len=SOURCE_LEN, hidden=64, layers=2, heads=4, intermediate=128, perturb=0
    )
    training = pretrain_source(model, tok, train_text, valid_text, steps=steps, block=SOURCE_LEN)
    source_dir = out / "source"
    shutil.rmtree(source_dir, ignore_errors=True)
    model.save_pretrained(source_dir)
    tok.save_pretrained(source_dir)

    logger.info("[2/2] converting to a Longformer with %d positions", LONG_LEN)
    record = convert(
        str(source_dir), out / "long", max_pos=LONG_LEN, attention_window=WINDOW, overwrite=overwrite
    )

    summary = {
        "source": {"dir": str(source_dir), "positions": SOURCE_LEN, **training.__dict__},
        "convert": {
            "dir": record["output"],
            "positions": record["max_pos"],
            "attention_window": WINDOW,
            "verification": record["verification"],
            "seconds": record["seconds"],
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "versions": library_versions(),
    }
    write_json_atomic(out / "summary.json", summary)
    print(format_summary(summary))
    return summary


def format_summary(s: dict[str, Any]) -> str:
    src, conv = s["source"], s["convert"]
    v = conv["verification"]
    lines = [
        "longify demo: summary",
        f"  source   tiny RoBERTa, {src['positions']} positions, {src['steps']} MLM steps: "
        f"eval loss {src['eval_loss_before']:.3f} -> {src['eval_loss_after']:.3f}",
        f"  convert  Longformer, {conv['positions']} positions, window {conv['attention_window']}: "
        f"max |diff| vs source hidden {v['max_abs_diff_hidden']:.1e}, logits {v['max_abs_diff_logits']:.1e} "
        f"on {v['tokens_compared']} tokens ({'ok' if v['passed'] else 'FAILED'}), {conv['seconds']:.1f} s",
        f"  total    {s['seconds']:.0f} s; details in summary.json",
    ]
    return "\n".join(lines)
