"""Convert a short pre-trained encoder into a standard HF ``LongformerForMaskedLM`` checkpoint.

The procedure is allenai's ``convert_model_to_long.ipynb`` done on the state dict, so the result is a
plain ``longformer`` checkpoint that loads with the Auto classes and no custom code, in four steps:
plan (options checked, source loaded, target config: plan.py) -> build (positions extended to ``max_pos`` by
copy / interpolate / random, local q/k/v copied, global q/k/v copies or random: build.py) -> verify against
the source (verify.py) -> write, atomically, with conversion.json and a model card (here).
"""

from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import torch

from longify.convert.build import build, final_positions, materialize
from longify.convert.plan import ConvertOptions, Plan, make_plan
from longify.convert.sentence import copy_sentence_transformers
from longify.convert.verify import Verification, verify_conversion
from longify.cpu import cpu_info
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import output_lock
from longify.outdir import atomic_output_dir, check_output_dir, clean_leftovers
from longify.runinfo import git_hash, library_versions, now_iso

logger = logging.getLogger(__name__)


def convert(
    src: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Convert ``src`` (directory or hub id) into a Longformer at ``out``; return the conversion record.
    ``options`` are :class:`ConvertOptions` (max_pos, attention_window, position_init, global_init, verify,
    tolerance, tokenizer, seed), all checked before anything loads."""
    start = time.perf_counter()
    opts = ConvertOptions(**options)
    with output_lock(out):  # before any long work: a second convert into OUT is refused, not raced
        check_output_dir(out, overwrite)
        clean_leftovers(Path(out))  # a killed convert's temporary copy: a model's size
        plan = make_plan(src, opts)
        state = build(plan)
        verification = verify(plan, state)
        return write(plan, final_positions(plan, state), verification, Path(out), overwrite, start)


def verify(plan: Plan, state: dict[str, torch.Tensor]) -> Verification | None:
    """Step 3: the built weights against the source; a failure stops the conversion, nothing written."""
    if not plan.options.verify:
        return None
    tolerance = plan.options.tolerance
    verification = verify_conversion(
        plan.source, state, plan.long, plan.tokenizer, plan.source_len, tolerance, plan.options.seed,
        compare_logits=not plan.head_is_new,
    )  # fmt: skip
    if not verification.passed:
        raise LongifyError(
            f"verification failed: max |diff| hidden {verification.max_abs_diff_hidden:.3g}, logits "
            f"{verification.max_abs_diff_logits or 0:.3g} > --tolerance {tolerance:g}; nothing written"
        )
    return verification


def record_of(plan: Plan, out: Path, verification: Verification | None) -> dict[str, Any]:
    """conversion.json: what was converted, how, and how well it matched the source."""
    o = plan.options
    return {
        "source": plan.src,
        "output": str(out),
        "family": plan.family.model_type,
        "source_max_len": plan.source_len,
        "source_position_offset": plan.src_offset,
        "max_pos": o.max_pos,
        "max_position_embeddings": plan.long.max_position_embeddings,
        "attention_window": plan.windows,
        "position_init": o.position_init,
        "global_init": o.global_init,
        "seed": o.seed,
        "verification": verification.to_dict() if verification else None,
        "cpu": cpu_info().record(),  # the verification's differences depend on the CPU's floating-point paths
        "new_weights": plan.new_weights,
        # "new": the source had no MLM head (a bare encoder); the converted one is random, never verified
        "mlm_head": "new" if plan.head_is_new else "source",
        "sentence_transformers": None,
        "seconds": None,
        "peak_rss_mb": None,
        "versions": library_versions(),
        "git": git_hash(),
        "created": now_iso(),
    }


def write(
    plan: Plan,
    state: dict[str, torch.Tensor],
    verification: Verification | None,
    out: Path,
    overwrite: bool,
    start: float,
) -> dict[str, Any]:
    """Step 4: model, tokenizer (``model_max_length`` = max_pos), conversion.json and card, atomically."""
    model = materialize(plan.long, state)
    record = record_of(plan, out, verification)
    with atomic_output_dir(out, overwrite) as tmp:
        logger.info("writing %s", out)
        model.save_pretrained(tmp)
        save_tokenizer(plan.tokenizer, tmp, plan.options.max_pos)
        record["sentence_transformers"] = copy_sentence_transformers(plan.src, tmp, plan.options.max_pos)
        record["seconds"] = round(time.perf_counter() - start, 3)
        record["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        write_json_atomic(tmp / "conversion.json", record)
        (tmp / "README.md").write_text(_model_card(record), encoding="utf-8")
    logger.info("done in %.1f s", record["seconds"])
    return record


def save_tokenizer(tokenizer: Any, dest: Path, max_pos: int) -> None:
    """The source's tokenizer with ``model_max_length`` = ``max_pos``, saved without the truncation and padding
    state its backend was left in (the verification's last call, or a sentence-transformers export's
    fixed 128): ``tokenizer.json`` read by the tokenizers library alone would otherwise cut every text there."""
    tokenizer.model_max_length = max_pos
    tokenizer.init_kwargs["model_max_length"] = max_pos
    tokenizer.init_kwargs.pop("max_length", None)  # the backend's old truncation length, not the model's
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(dest)


def describe_check(record: dict[str, Any]) -> str:
    """What the verification compared and how closely, and whether the MLM head is new (console line)."""
    v = record.get("verification")
    new = len(record.get("new_weights") or [])
    head = f"; {new} tensors start random (the source lacked them)" if new else ""
    if record.get("mlm_head") == "new":
        head = f"; MLM head new: {new} tensors start random (the source lacked them), not verified"
    if v is None:
        return "not verified" + head
    lengths = v.get("lengths") or [0]
    parts = [f"last hidden states {v['max_abs_diff_hidden']:.1e}"]
    if v.get("max_abs_diff_pooled") is not None:
        parts.append(f"mean-pooled {v['max_abs_diff_pooled']:.1e}")
    if v.get("max_abs_diff_logits") is not None:
        parts.append(f"MLM logits {v['max_abs_diff_logits']:.1e}")
    verdict = "verified" if v.get("passed") else "verification FAILED"
    return (
        f"{verdict} on inputs of {min(lengths)}-{max(lengths)} tokens, max |diff|: {', '.join(parts)}"
        f" (tolerance {v['tolerance']:g}){head}"
    )


def _model_card(record: dict[str, Any]) -> str:
    base = record["source"]
    return f"""---
library_name: transformers
tags: [longformer, longify, fill-mask]
---
# {Path(record["output"]).name}

A Longformer ({record["max_pos"]} positions) converted by longify from `{base}` ({record["family"]}).

- position embeddings: `{record["position_init"]}` from the source's {record["source_max_len"]} positions
- attention window(s): {sorted(set(record["attention_window"]))}; global q/k/v: `{record["global_init"]}`
- verified against the source on inputs of {record["verification"]["lengths"] if record["verification"] else "-"} tokens:
  max |diff| hidden {_fmt(record, "max_abs_diff_hidden")}, mean-pooled {_fmt(record, "max_abs_diff_pooled")}, MLM logits {_fmt(record, "max_abs_diff_logits")}
- MLM head: {"new, random init (the source had none): train it (`longify pretrain`) before using the logits" if record["mlm_head"] == "new" else "the source's"}
{_st_card(record)}
Load it with `AutoModelForMaskedLM.from_pretrained(...)` or `AutoModelForQuestionAnswering` (new QA head).
It still needs long masked-LM pretraining (`longify pretrain`) before the new positions are useful.
Details: `conversion.json`.
"""


def _st_card(record: dict[str, Any]) -> str:
    st = record.get("sentence_transformers")
    if not st:
        return ""
    return (
        f"- sentence-transformers files kept ({', '.join(st['files'])}; max_seq_length {st['max_seq_length']}): "
        "`SentenceTransformer(path)` loads the long encoder with the source's pooling\n"
    )


def _fmt(record: dict[str, Any], field: str) -> str:
    v = (record.get("verification") or {}).get(field)
    return "-" if v is None else f"{v:.2e}"
