"""The demo's shipped corpus and its output folder: ``longify demo`` may replace what it made itself.

The shipped text (``demo/data``, WikiText-103 raw layout) is what the demo study's ``prepare`` jobs start from
(see ``demo/study.yaml``); ``scripts/make_demo_data.py`` regenerates it exactly.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from longify.errors import LongifyError
from longify.locks import INSIDE_NAME

DATA_FILES = ("wiki.train.raw", "wiki.valid.raw")
SOURCE_LEN = 128
MARKER = ".longify-demo"  # in OUT: the demo made this folder and may replace what it holds


def shipped_data_dir() -> Path:
    """The folder of the shipped demo corpus (WikiText-103 raw layout)."""
    return Path(str(resources.files("longify.demo") / "data"))


def claim_output(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty ``out`` the demo did not create (unless ``overwrite``), then mark it as the demo's."""
    if out.exists() and not out.is_dir():
        raise LongifyError(f"--out {out}: exists and is not a directory")
    foreign = out.is_dir() and not (out / MARKER).is_file()
    if foreign and any(p.name != INSIDE_NAME for p in out.iterdir()) and not overwrite:
        raise LongifyError(
            f"--out {out}: not empty and not made by `longify demo` (which writes its study there: "
            "jobs/, report/, results.jsonl); choose a new or empty folder, or pass --overwrite"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by `longify demo`: a later demo may replace what is here\n", "utf-8")
