"""Constants and small helpers shared by the tests of both tiers (imported as ``helpers``: pyproject's pytest
``pythonpath``; fixtures live in conftest.py). Test modules never import each other: what two of them share
is here."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from longify.demo.corpus import article, make_town, wikitext
from longify.families import FAMILIES as REGISTRY
from longify.locks import lock_path

# From the family registry: the families whose encoder is the canonical one under a prefix (roberta, bert,
# ...: every target, the source's MLM head names) run the shared conversion tests; every family has its own
# test file (tests/unit/test_family_<name>.py or test_family_registry.py)
ALL_FAMILIES = tuple(REGISTRY)
FAMILIES = tuple(name for name, family in REGISTRY.items() if family.is_prefix_rename)
SOURCE_LEN = 64

REPO = Path(__file__).resolve().parents[1]
SHARED_XQUAD = REPO.parent / "shared" / "data" / "xquad"
SQUAD = REPO / "tests" / "fixtures" / "qa" / "squad" / "dev-v1.1.json"
WIKI = REPO / "src" / "longify" / "demo" / "data" / "wiki.valid.raw"
# `longify convert` flags of the ``long_model`` fixture
CONVERT = ["--max-pos", "128", "--attention-window", "32"]


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one ``longify: error:`` line a refused command printed (and no traceback)."""
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if line.startswith("longify: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@functools.cache
def can_mount() -> bool:
    """Whether this process may mount a tmpfs (root, and a kernel that lets it): tried once, on first use."""
    if os.geteuid() != 0:
        return False
    with tempfile.TemporaryDirectory() as d:
        ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True)
        if ok.returncode != 0:
            return False
        subprocess.run(["umount", d], check=True)
    return True


def require_mount() -> None:
    """Skip the calling test unless it can mount a tmpfs (see the ``tmpfs`` fixture)."""
    if not can_mount():
        pytest.skip("needs root that may mount a tmpfs (a real read-only or full file system); a simulation "
                    "would not test the real errors")  # fmt: skip


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


# --------------------------------------------------------------------- checkpoints written without training


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def trainer_step(ckpt: Path) -> int:
    """The ``global_step`` of a checkpoint's ``trainer_state.json``."""
    return read_json(ckpt / "trainer_state.json")["global_step"]


def fake_checkpoint(folder: Path, step: int, *, mark: bool = True, skip: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder with the files HF writes (tiny stand-ins), completed the way longify does."""
    from longify.checkpoints import mark_complete

    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (ckpt / name).write_bytes(b"x" * 10)
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if mark:
        mark_complete(ckpt, {"total": 0.0, "pending": [0.0], "last_logged_step": step, "step": step})
    for name in skip:
        (ckpt / name).unlink()
    return ckpt


def same_weights(a: Path, b: Path) -> None:
    """The ``model.safetensors`` of two folders hold the same tensors, bit for bit."""
    import torch
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


# ---------------------------------------------------- a synthetic study folder (what `longify report` reads)


SEEDS = (1, 2)
LANGS = ("de", "en")
QUESTIONS = 30


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def bucket_f1(model: str, low: int, seed: int) -> float:
    return 40.0 + low / (64 if model == "long" else -64) + seed


def bucket_em(model: str, low: int, seed: int) -> float:
    return 20.0 + low / (128 if model == "long" else -128) + 2 * seed


def make_study(root: Path, scores: dict[tuple[str, int], Any] | None = None) -> dict[str, Any]:
    """Two models (short, and long converted from it), 2 seeds, 2 languages, QUESTIONS questions each.

    ``scores[(model, seed)]``: per-question F1 in [0, 1], shape (languages, questions); EM is F1 == 1.
    Returns the per-language percentages written to results.jsonl: {(model, lang, seed): (f1, em)}."""
    import numpy as np

    rng = np.random.default_rng(7)
    if scores is None:
        scores = {
            (m, s): np.round(rng.uniform(size=(len(LANGS), QUESTIONS)) ** (0.5 if m == "long" else 1.0), 2)
            for m in ("short", "long")
            for s in SEEDS
        }
    written: dict[tuple[str, str, int], tuple[float, float]] = {}
    rows = []
    for (model, seed), f1 in scores.items():
        job = root / "jobs" / f"eval-{model}-{seed}"
        qs = [
            {"id": f"q{i}", "language": lang, "exact_match": float(f1[li, i] == 1.0), "f1": float(f1[li, i])}
            for li, lang in enumerate(LANGS)
            for i in range(QUESTIONS)
        ]
        write_jsonl(job / "question_scores.jsonl", qs)
        analysis = {
            kind: {f"{lo}-{lo + 511}": {"exact_match": bucket_em(model, lo, seed), "f1": bucket_f1(model, lo, seed),
                                        "count": 3 + lo // 512}
                   for lo in (0, 512, 1024)}
            for kind in ("answer_position", "context_length")
        }  # fmt: skip
        (job / "results.json").write_text(json.dumps({"analysis": {"bucket_width": 512, **analysis}}))
        base = {"model": model, "source_model": "short" if model == "long" else None, "eval_set": "xquad",
                "task": "xquad", "seed": seed, "job_id": f"e{model}{seed}",
                "results_path": f"jobs/eval-{model}-{seed}/results.json", "predictions_path": None,
                "question_scores_path": f"jobs/eval-{model}-{seed}/question_scores.jsonl"}  # fmt: skip
        per_lang = []
        for li, lang in enumerate(LANGS):
            f1_pct, em_pct = 100 * f1[li].mean(), 100 * (f1[li] == 1.0).mean()
            written[(model, lang, seed)] = (f1_pct, em_pct)
            per_lang.append((f1_pct, em_pct))
            rows.append({**base, "language": lang, "exact_match": em_pct, "f1": f1_pct, "total": QUESTIONS})
        avg = np.mean(per_lang, axis=0)
        written[(model, "average", seed)] = (avg[0], avg[1])
        rows.append(
            {**base, "language": "average", "exact_match": avg[1], "f1": avg[0], "total": 2 * QUESTIONS}
        )
    write_jsonl(root / "results.jsonl", rows)
    curves = [
        {"model": "long", "step": step, "loss": 5.0 - step / 50, "bits_per_token": (5.0 - step / 50) / np.log(2),
         "pseudo_bits_per_char": 2.0 - step / 200, "job_id": "p"}
        for step in range(0, 101, 20)
    ]  # fmt: skip
    write_jsonl(root / "pretrain_curves.jsonl", curves)
    return {"written": written, "scores": scores}


# ------------------------------------------------------------------------------------------ study specs


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tiny_spec(tmp: Path, source: Path, evaluate: str = "", seeds: str = "[1]", long: bool = True) -> Path:
    """A study of ``source`` (and, with ``long``, a 256-position conversion pretrained 4 steps) fine-tuned and
    evaluated on EASY SQuAD files written under ``tmp/data``; ``evaluate`` adds evaluation sets."""
    data = tmp / "data"
    if not data.is_dir():
        write_wikitext(data)
        write_squad(data / "train.json", 16, seed=1)
        write_squad(data / "dev.json", 6, seed=2)
    long_model = (
        f"""
  tiny-256:
    from: tiny
    convert: {{max_pos: 256, attention_window: "16"}}
    pretrain: {{train_file_path: {data}/wiki.train.raw, val_file_path: {data}/wiki.valid.raw, max_steps: 4,
               save_steps: 2, eval_steps: 2, eval_strategy: steps, logging_steps: 2, block_size: 128,
               per_device_train_batch_size: 2, per_device_eval_batch_size: 2, max_eval_blocks: 4,
               disable_tqdm: "true"}}
"""
        if long
        else ""
    )
    return write_spec(
        tmp / "study.yaml",
        f"""
output_dir: {tmp / "out"}
seeds: {seeds}
models:
  tiny: {{source: {source}}}{long_model}
finetune: {{train_file: {data}/train.json, num_train_epochs: 1, per_device_train_batch_size: 4,
           max_seq_length: 128, doc_stride: 32, learning_rate: 1.0e-3, save_strategy: "no", disable_tqdm: "true"}}
evaluate:
  dev: {{task: squad, predict_file: {data}/dev.json, max_seq_length: 128, doc_stride: 32}}{evaluate}
""",
    )


# ------------------------- data-parallel runs (tests/unit/test_ddp_args.py, tests/integration/test_ddp.py)


def ddp_files(root: Path) -> dict[str, Path]:
    """A tiny RoBERTa without dropout (so one process and two can be compared exactly), its Longformer,
    WikiText-format text and SQuAD files, under ``root``."""
    from longify.convert import convert
    from longify.tiny import save_tiny

    source = save_tiny("roberta", root / "source", max_len=64)
    config = json.loads((source / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (source / "config.json").write_text(json.dumps(config))
    convert(str(source), root / "long", max_pos=128, attention_window=32)
    (root / "wiki.train.raw").write_text(wikitext(12, seed=1), encoding="utf-8")
    (root / "wiki.valid.raw").write_text(wikitext(3, seed=2), encoding="utf-8")
    return {
        "root": root,
        "source": source,
        "long": root / "long",
        "train": with_short_contexts(write_squad(root / "train.json", 24, 1), 16),
        "dev": write_squad(root / "dev.json", 9, 2),
    }


def with_short_contexts(path: Path, n: int) -> Path:
    """Add ``n`` one-sentence questions: windows under 32 tokens beside the others' 64, so micro-batches
    are padded to different lengths depending on how the global batch is split (the loss must not care)."""
    data = json.loads(path.read_text())
    for i in range(n):
        name = f"Ann Lee{i}"
        context = f"The mill was founded by {name}."
        qa = {"id": f"short-{i}", "question": "Who founded the mill?",
              "answers": [{"text": name, "answer_start": context.index(name)}]}  # fmt: skip
        data["data"].append({"title": f"mill {i}", "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps(data))
    return path


# ---------------------------------------------- locks held as another process holds them; folder snapshots


OTHER_HOLDER = {"pid": 4_000_001, "host": "other-host", "command": "longify pretrain --output_dir somewhere"}


@contextmanager
def held_by_other(folder: Path) -> Iterator[None]:
    """``folder``'s lock held as another process holds it: an exclusive ``flock`` on its own open file,
    with another process's PID and host written in it."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, (json.dumps(OTHER_HOLDER) + "\n").encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def tree_digests(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (links not followed) with a digest of each file's bytes."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            if path.is_symlink() or name in dirs:
                digest = "link" if path.is_symlink() else "dir"
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(folder))] = digest
    return out


# -------------------------------------------------------- a test HTTP server that cuts and holds transfers


class SlowServer:
    """A loopback server (127.0.0.1, port 0) with Range support. ``cut``: the first request for a file gets half
    of it and a closed connection; requests that resume (with ``Range``) wait at a barrier until ``parties`` of
    them have arrived, so that every client has written its partial file before any gets the rest. Otherwise
    a request waits for ``release`` before sending anything."""

    def __init__(self, files: dict[str, bytes], *, cut: bool, parties: int = 2) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.barrier = threading.Barrier(parties, timeout=20)
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name, rng = self.path.lstrip("/"), self.headers.get("Range")
                server.requests.append((name, rng))
                body = server.files[name]
                if not cut:
                    server.release.wait(30)
                elif rng:
                    with contextlib.suppress(threading.BrokenBarrierError):
                        server.barrier.wait()
                start = send_range_headers(self, body, rng)
                if cut and not rng:
                    self.wfile.write(body[: len(body) // 2])
                    self.close_connection = True
                    return
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def names(self) -> list[str]:
        return [n for n, _ in self.requests]

    def close(self) -> None:
        self.release.set()
        self.barrier.abort()
        self.httpd.shutdown()
        self.httpd.server_close()


# ------------------------------------------------------------------ the MLM data cache, damaged on purpose


def arrow_file(entry: Path) -> Path:
    """The one ``.arrow`` file of a data-cache entry."""
    (arrow,) = entry.glob("*.arrow")
    return arrow


def negate_ids(arrow: Path, rows: list[list[int]], n_ids: int = 16) -> None:
    """In ``arrow``, replace ``n_ids`` ids (``4 * n_ids`` bytes) after the first one of each of ``rows`` by
    their bitwise complement (``-id - 1``: negative ids); the file keeps its size."""
    import numpy as np

    data = bytearray(arrow.read_bytes())
    for row in rows:
        body = np.asarray(row[1 : 1 + n_ids], dtype="<i4").tobytes()
        at = data.find(body)
        assert at >= 0, "the row's ids are not in the file"
        data[at : at + len(body)] = (~np.asarray(row[1 : 1 + n_ids], dtype="<i4")).tobytes()
    assert len(data) == arrow.stat().st_size
    arrow.write_bytes(bytes(data))


# --------------------------------------------------------------------------------------- masked-LM corpora


def units_of(text: str) -> list[str]:
    """The expected text units, computed independently of the module."""
    return [line.strip() for line in text.split("\n") if line.strip()]


def write_corpus(tmp: Path, fmt: str, n_articles: int = 40, seed: int = 0) -> tuple[Path, list[str]]:
    """A WikiText-format corpus in ``fmt`` (``raw``: wiki.train.raw; ``txt``: blank-line separated; ``jsonl``:
    a ``body`` per line, one line blank) and its text units."""
    text = wikitext(n_articles, seed=seed)
    units = units_of(text)
    if fmt == "raw":
        path = tmp / "wiki.train.raw"
        path.write_text(text)
    elif fmt == "txt":
        path = tmp / "corpus.txt"
        path.write_text("\n\n".join(units) + "\n")
    else:
        path = tmp / "corpus.jsonl"
        lines = [json.dumps({"id": i, "body": u}) for i, u in enumerate(units)]
        path.write_text("\n".join([*lines[:5], "", *lines[5:]]) + "\n")
    return path, units


# --------------------------------------------------------------------------------------- small SQuAD files


def two_question_squad(path: Path) -> Path:
    """A SQuAD v1.1 file of one paragraph and two questions at ``path``."""
    context = "The town of Aldbury was founded in 1203 by Maria Holt. It lies on the river Colne."
    qas = [
        {
            "id": "q1",
            "question": "Who founded Aldbury?",
            "answers": [{"text": "Maria Holt", "answer_start": 43}],
        },
        {"id": "q2", "question": "On which river?", "answers": [{"text": "Colne", "answer_start": 76}]},
    ]
    assert context[43:53] == "Maria Holt" and context[76:81] == "Colne"
    data = {
        "version": "1.1",
        "data": [{"title": "Aldbury", "paragraphs": [{"context": context, "qas": qas}]}],
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -------------------------------------------------------------------------- pretrain and qa train commands


def small_pretrain_argv(model: Path, out: Path, data: Path, steps: int = 8, *extra: str) -> list[str]:
    """``pretrain`` flags for a tiny run on ``write_wikitext(data)``: 128 positions, window 32, evaluation and a
    checkpoint every 4 steps."""
    return [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128", "--attention_window", "32",
        "--train_file_path", str(data / "wiki.train.raw"), "--val_file_path", str(data / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--eval_strategy", "steps", "--eval_steps", "4", "--save_steps", "4",
        "--logging_steps", "2", "--max_steps", str(steps), "--per_device_train_batch_size", "2",
        "--per_device_eval_batch_size", "4", "--learning_rate", "1e-3", "--seed", "7", "--report_to", "none",
        "--max_eval_blocks", "8", "--data_cache_dir", str(out.parent / "cache"), "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip


def qa_train_argv(s: dict[str, Path], out: Path, *extra: str) -> list[str]:
    """``qa train`` on a ``tiny_qa_setup``: epoch-based (2 epochs), a checkpoint every 3 steps, a loss logged
    every 4."""
    return [
        "--model_name_or_path", str(s["model"]), "--do_train", "--do_eval", "--seed", "42",
        "--train_file", str(s["train"]), "--predict_file", str(s["dev"]), "--per_device_train_batch_size", "4",
        "--learning_rate", "5e-3", "--num_train_epochs", "2", "--max_seq_length", "64", "--doc_stride", "16",
        "--save_steps", "3", "--logging_steps", "4", "--report_to", "none", "--disable_tqdm", "true",
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


def run_squad_argv(s: dict[str, Path], out: Path, **extra: str) -> list[str]:
    """The thesis README's run_squad.py flags, verbatim, with tiny values."""
    argv = [
        "--model_type", "roberta",
        "--model_name_or_path", str(s["model"]),
        "--tokenizer_name", str(s["model"]),
        "--do_train",
        "--do_eval",
        "--fp16",
        "--seed", "42",
        "--do_lower_case",
        "--train_file", str(s["train"]),
        "--predict_file", str(s["dev"]),
        "--per_gpu_train_batch_size", "8",
        "--learning_rate", "5e-3",
        "--num_train_epochs", "4.0",
        "--max_seq_length", "64",
        "--doc_stride", "16",
        "--output_dir", str(out),
    ]  # fmt: skip
    for key, value in extra.items():
        argv += [f"--{key}", value]
    return argv


def every_command(model: Path, long: Path, out: Path) -> dict[str, list[str]]:
    """One small command line of each command that writes ``out``: ``model`` a short source, ``long`` a
    converted model (the ``long_model`` fixture)."""
    return {
        "convert": ["convert", str(model), str(out), *CONVERT],
        "export": ["export", str(long), str(out)],
        "pretrain": ["pretrain", "--model_name_or_path", str(long), "--output_dir", str(out),
                     "--train_file_path", str(WIKI), "--do_train", "--max_steps", "1", "--report_to", "none"],
        "qa train": ["qa", "train", "--model_name_or_path", str(long), "--output_dir", str(out),
                     "--train_file", str(SQUAD), "--do_train", "--max_steps", "1", "--doc_stride", "32",
                     "--report_to", "none"],
        "qa evaluate": ["qa", "evaluate", "--model_name_or_path", str(long), "--output_dir", str(out),
                        "--predict_file", str(SQUAD), "--doc_stride", "32", "--report_to", "none"],
    }  # fmt: skip


def long_squad(path: Path, n: int, seed: int) -> Path:
    """SQuAD questions over whole articles (a hundred tokens or more: several 64-token windows)."""
    rng = random.Random(seed)
    articles = []
    for i in range(n):
        town = make_town(rng)
        context = " ".join(article(town, rng, filler=4))
        qa = {"id": f"long{i}", "question": f"Who founded {town.name}?",
              "answers": [{"text": town.founder, "answer_start": context.index(f"by {town.founder}") + 3}]}  # fmt: skip
        articles.append({"title": town.name, "paragraphs": [{"context": context, "qas": [qa]}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}), encoding="utf-8")
    return path


def eval_argv(model: Path, predict_file: Path, out: Path, *more: str) -> list[str]:
    return ["--model_name_or_path", str(model), "--predict_file", str(predict_file), "--output_dir", str(out),
            *more]  # fmt: skip


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a refused command wrote to stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def small_convert_argv(src: Path, out: Path, *extra: str) -> list[str]:
    """`longify convert` of a tiny model to 128 positions, unverified."""
    return ["convert", str(src), str(out), "--max-pos", "128", "--attention-window", "32", "--no-verify",
            *extra]  # fmt: skip


def small_lock_pretrain_argv(src: Path, out: Path, wiki: Path, *extra: str) -> list[str]:
    """`longify pretrain` of one step at 128 positions, its data cache beside ``out``."""
    return [
        "pretrain", "--model_name_or_path", str(src), "--output_dir", str(out), "--max_pos", "128",
        "--attention_window", "32", "--train_file_path", str(wiki / "wiki.train.raw"), "--do_train",
        "--max_steps", "1", "--per_device_train_batch_size", "2", "--report_to", "none",
        "--data_cache_dir", str(out.parent / "cache"), "--disable_tqdm", "true", *extra,
    ]  # fmt: skip


def fake_cpu(monkeypatch: pytest.MonkeyPatch, kind: tuple[str, bool]) -> None:
    """This process takes the CPU for ``kind`` (capability, native bf16), and sees no CUDA device."""
    import torch

    import longify.cpu

    monkeypatch.setattr(longify.cpu, "probe", lambda: kind)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


# --- conversions of one family to every target the registry allows (tests/unit/test_family_*.py) -------
TARGET_OPTIONS = {  # the window covers the source length, BigBird runs full attention up to (5 + 2) * 4 = 28
    "longformer": {"attention_window": 2 * SOURCE_LEN},
    "full": {},
    "bigbird": {"block_size": 4, "num_random_blocks": 1},
}
FAMILY_MAX_POS = 2 * SOURCE_LEN
COMPARED_UP_TO = {"longformer": SOURCE_LEN, "full": SOURCE_LEN, "bigbird": 28}


def allowed_targets(src: Path) -> list[str]:
    """The targets the registry lets ``src`` (a saved model folder) convert to."""
    from transformers import AutoConfig

    from longify.errors import LongifyError

    config = AutoConfig.from_pretrained(src)
    family = REGISTRY[config.model_type]
    allowed = []
    for target in TARGET_OPTIONS:
        try:
            family.check_target(target, config)
        except LongifyError:
            continue
        allowed.append(target)
    return allowed


def convert_to_allowed(src: Path, root: Path) -> dict[str, Path]:
    """``src`` converted (verified) to each target the registry allows, ``FAMILY_MAX_POS`` positions."""
    from longify.convert import convert

    out = {}
    for target in allowed_targets(src):
        out[target] = root / f"{src.name}-{target}"
        convert(str(src), out[target], max_pos=FAMILY_MAX_POS, target=target, **TARGET_OPTIONS[target])
    return out


def short_family_batches(tok: Any, vocab_size: int, length: int) -> list[dict[str, Any]]:
    """Unpadded and right-padded rows of ordinary ids, and padded text, all at most ``length`` tokens."""
    import torch

    gen = torch.Generator().manual_seed(7)
    special = set(tok.all_special_ids)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special])
    ids = ordinary[torch.randint(len(ordinary), (3, length), generator=gen)]
    mask = torch.ones_like(ids)
    ids[2, length // 2 :] = tok.pad_token_id
    mask[2, length // 2 :] = 0
    text = tok(
        ["A town on a river.", "Who?"], padding=True, truncation=True, max_length=length, return_tensors="pt"
    )
    return [
        {"input_ids": ids[:2], "attention_mask": mask[:2]},  # no padding
        {"input_ids": ids[2:], "attention_mask": mask[2:]},  # padded
        {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"]},
    ]


def assert_reproduces_source(src: Path, out: Path, target: str, logits: bool = True) -> None:
    """The converted model at ``out`` equals its source within 1e-5 on short inputs, with and without padding:
    last hidden states, and the MLM logits where the source has a head (``logits``)."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    source = AutoModelForMaskedLM.from_pretrained(src).eval()
    long = AutoModelForMaskedLM.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.model_max_length == FAMILY_MAX_POS
    for batch in short_family_batches(tok, source.config.vocab_size, COMPARED_UP_TO[target]):
        real = batch["attention_mask"].bool()
        with torch.no_grad():
            a = source(**batch, output_hidden_states=True)
            b = long(**batch, output_hidden_states=True)
        torch.testing.assert_close(b.hidden_states[-1][real], a.hidden_states[-1][real], atol=1e-5, rtol=0)
        if logits:
            torch.testing.assert_close(b.logits[real], a.logits[real], atol=1e-5, rtol=0)


def refused_by_cli(capsys: pytest.CaptureFixture[str], src: Path, out: Path, target: str) -> str:
    """``longify convert SRC OUT --target TARGET``: exit 2, one line, nothing written; the line."""
    from longify.cli import main

    flags = ["--block-size", "4", "--num-random-blocks", "1"] if target == "bigbird" else []
    argv = ["-q", "convert", str(src), str(out), "--max-pos", str(FAMILY_MAX_POS), "--target", target, *flags]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("longify: error: "), err
    assert not out.exists()
    return err


def killed_in_fork(run: Callable[[], object]) -> None:
    """Run ``run`` in a fork of this process (no interpreter start), which must end by SIGKILL (the caller
    arranges it); an exception there is printed and fails the test, so does a normal end. Run single-threaded
    (``torch.set_num_threads(1)`` in the parent too): OpenMP's thread pool is not usable in a fork."""
    import signal
    import traceback

    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            run()
        except BaseException:
            traceback.print_exc()
            code = 4
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"exit status {status}"
