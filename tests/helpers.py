"""Constants and small helpers shared by the tests (imported as ``helpers``; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import random
import select
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from longify.demo.corpus import article, make_town, wikitext

FAMILIES = ("roberta", "xlm-roberta", "camembert", "bert", "data2vec-text")
SOURCE_LEN = 64

REPO = Path(__file__).resolve().parents[1]
SHARED_XQUAD = REPO.parent / "shared" / "data" / "xquad"


def send_range_headers(handler: BaseHTTPRequestHandler, body: bytes, rng: str | None) -> int:
    """A test server's status and headers for ``body`` asked with the ``Range`` header ``rng`` (``bytes=N-``,
    or None for the whole file); returns the offset its payload starts at."""
    start = int(rng.split("=")[1].split("-")[0]) if rng else 0
    handler.send_response(206 if rng else 200)
    if rng:
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    handler.send_header("Content-Length", str(len(body) - start))
    handler.end_headers()
    return start


def write_wikitext(folder: Path) -> Path:
    """A small WikiText-103-raw layout: ``wiki.train.raw`` (60 articles) and ``wiki.valid.raw`` (6)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wiki.train.raw").write_text(wikitext(60, seed=1), encoding="utf-8")
    (folder / "wiki.valid.raw").write_text(wikitext(6, seed=2), encoding="utf-8")
    return folder


def write_squad(path: Path, n: int, seed: int) -> Path:
    """An EASY SQuAD v1.1 file: "Who founded X?" answered by the name after "founded in YEAR by"."""
    rng = random.Random(seed)
    articles = []
    for i in range(n):
        town = make_town(rng)
        context = article(town, rng, filler=0)[0]
        start = context.index(f"by {town.founder}") + 3
        qa = {
            "id": f"s{seed}-{i}",
            "question": f"Who founded {town.name}?",
            "answers": [{"text": town.founder, "answer_start": start}],
        }
        articles.append({"title": town.name, "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def tiny_qa_setup(
    root: Path, n_train: int, n_dev: int, *, names: tuple[str, str] = ("train", "dev")
) -> dict[str, Path]:
    """A tiny RoBERTa converted to a 256-position Longformer (window 32) and EASY SQuAD train/dev files."""
    from longify.convert import convert
    from longify.tiny import save_tiny

    source = save_tiny("roberta", root / "source", max_len=64)
    convert(str(source), root / "long", max_pos=256, attention_window=32)
    return {
        "root": root,
        "model": root / "long",
        "train": write_squad(root / f"{names[0]}.json", n_train, 1),
        "dev": write_squad(root / f"{names[1]}.json", n_dev, 2),
    }


HOLDER = """
import sys, time
from longify.locks import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(300)
"""


@contextmanager
def lock_held_elsewhere(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``folder``'s lock for the block (killed, SIGKILL, at its end)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def longformer_batch(lengths: list[int], n: int, globals_per_row: list[list[int]], seed: int = 1) -> dict:
    """Random ids padded to ``n`` (pad id 1): one row per length, global attention on the given positions."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 100, (len(lengths), n), generator=g)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    glob = torch.zeros(len(lengths), n, dtype=torch.long)
    for i, (length, gl) in enumerate(zip(lengths, globals_per_row, strict=True)):
        mask[i, :length] = 1
        ids[i, length:] = 1
        glob[i, gl] = 1
    return {"input_ids": ids, "attention_mask": mask, "global_attention_mask": glob}


class AttentionCalls:
    """What every Longformer self-attention call saw: train mode, inference mode, grad, CPU autocast, output
    dtype and shape (a global forward hook, see the ``seen`` fixture)."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def hook(self, module, args, output) -> None:
        import torch
        from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

        if isinstance(module, LongformerSelfAttention):
            self.calls.append(
                {
                    "training": module.training,
                    "inference": torch.is_inference_mode_enabled(),
                    "grad": torch.is_grad_enabled(),
                    "autocast": torch.is_autocast_enabled("cpu"),
                    "dtype": output[0].dtype,
                    "shape": tuple(output[0].shape),
                }
            )

    def states(self) -> set[tuple]:
        """The distinct (training, autocast, inference, dtype) of the calls."""
        return {(c["training"], c["autocast"], c["inference"], c["dtype"]) for c in self.calls}
