"""Convert a short pre-trained encoder into a long one: a standard HF checkpoint of the chosen target
(``longformer``: allenai's ``convert_model_to_long.ipynb`` done on the state dict; ``full``: the source's own
class with more positions; ``bigbird``: BigBird's block-sparse attention; see ``longify.targets``) that loads
with the Auto classes and no custom code, in four steps: plan (options checked, source loaded, target config:
plan.py) -> build (the target's weights from the source's, positions extended to ``max_pos`` by copy /
interpolate / random: build.py) -> verify against the source, then what must run at ``max_pos`` (verify.py)
-> write, atomically, with conversion.json and the target's model card (here).
"""

from __future__ import annotations

import json
import logging
import resource
import time
from pathlib import Path
from typing import Any

import torch

from longify.convert.build import build_weights, final_positions, materialize
from longify.convert.plan import ConvertOptions, Plan, make_plan
from longify.convert.sentence import copy_sentence_transformers
from longify.convert.verify import Verification, verification_batches, verify_target
from longify.cpu import cpu_info
from longify.errors import LongifyError
from longify.fileio import write_json_atomic
from longify.locks import output_lock
from longify.outdir import atomic_output_dir, check_output_dir, clean_leftovers
from longify.runinfo import git_hash, library_versions, now_iso
from longify.targets import get_target

logger = logging.getLogger(__name__)


def convert(
    src: str,
    out: str | Path,
    *,
    overwrite: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Convert ``src`` (directory or hub id) into a long model at ``out``; return the conversion record.
    ``options`` are :class:`ConvertOptions` (target, max_pos, attention_window, position_init, global_init,
    block_size, num_random_blocks, verify, tolerance, tokenizer, seed), all checked before anything loads."""
    start = time.perf_counter()
    opts = ConvertOptions(**options)
    with output_lock(out):  # before any long work: a second convert into OUT is refused, not raced
        check_output_dir(out, overwrite)
        clean_leftovers(Path(out))  # a killed convert's temporary copy: a model's size
        plan = make_plan(src, opts)
        weights = build_weights(plan)
        verification, long_run = verify(plan, weights.state)
        state = final_positions(plan, weights.state)
        return write(
            plan, state, verification, Path(out), overwrite, start, weights.new, long_run, weights.zeros
        )


def verify(plan: Plan, state: dict[str, torch.Tensor]) -> tuple[Verification | None, dict[str, Any] | None]:
    """Step 3: the built weights against the source, then what the target must show at ``max_pos`` tokens on
    the compared model (``Target.prove_long``); a failure stops the conversion, nothing written."""
    if not plan.options.verify:
        return None, None
    tolerance = plan.options.tolerance
    verification, model = verify_target(
        plan.source, state, plan.long, plan.tokenizer, plan.source_len, tolerance, plan.options.seed,
        compare_logits=not plan.head_is_new, target=plan.target,
    )  # fmt: skip
    if not verification.passed:
        raise LongifyError(
            f"verification failed: max |diff| hidden {verification.max_abs_diff_hidden:.3g}, logits "
            f"{verification.max_abs_diff_logits or 0:.3g} > --tolerance {tolerance:g}; nothing written"
        )
    return verification, prove_long(plan, model)


def prove_long(plan: Plan, model: Any) -> dict[str, Any] | None:
    """The target's run at ``max_pos`` tokens on the compared model (one row of random ordinary tokens)."""
    if model is None:
        return None
    (batch,) = verification_batches(
        plan.tokenizer, plan.long.vocab_size, plan.options.max_pos, plan.options.seed, full=False,
        type_vocab_size=getattr(plan.long, "type_vocab_size", 1),
    )  # fmt: skip
    logger.info("running the %s model at %d tokens", plan.target.name, plan.options.max_pos)
    return plan.target.prove_long(model, batch)


def record_of(
    plan: Plan,
    out: Path,
    verification: Verification | None,
    new_tensors: list[str] | None = None,
    long_run: dict[str, Any] | None = None,
    zero_tensors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """conversion.json: what was converted, into which target, how, and how well it matched the source;
    ``new_tensors``: every target tensor that does not come from the source (random inits);
    ``zero_tensors``: target tensors the source family lacks, zeros (key -> why that is exact)."""
    o = plan.options
    new = sorted(set(new_tensors or []) | set(new_target_keys(plan)))
    return {
        "source": plan.src,
        "output": str(out),
        "target": plan.target.name,
        "target_class": plan.target.model_class_of(plan.long).__name__,
        "family": plan.family.model_type,
        "source_max_len": plan.source_len,
        "source_position_offset": plan.src_offset,
        "max_pos": o.max_pos,
        "max_position_embeddings": plan.long.max_position_embeddings,
        "attention_window": plan.windows or None,
        "position_init": o.position_init,
        "global_init": o.global_init if "global_init" in plan.target.options else None,
        **plan.target.record(plan.long, o),
        "seed": o.seed,
        "verification": verification.to_dict() if verification else None,
        "long_run": long_run,
        "cpu": cpu_info().record(),  # the verification's differences depend on the CPU's floating-point paths
        "new_weights": plan.new_weights,
        "new_tensors": new,
        "zero_tensors": dict(sorted((zero_tensors or {}).items())),
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
    new_tensors: list[str] | None = None,
    long_run: dict[str, Any] | None = None,
    zero_tensors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Step 4: model, tokenizer (``model_max_length`` = max_pos), conversion.json and card, atomically."""
    model = materialize(plan.long, state, plan.target)
    record = record_of(plan, out, verification, new_tensors, long_run, zero_tensors)
    with atomic_output_dir(out, overwrite) as tmp:
        logger.info("writing %s", out)
        model.save_pretrained(tmp)
        plan.target.check_saved(
            json.loads((tmp / "config.json").read_text(encoding="utf-8")), f"{out}/config.json"
        )
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
    run = record.get("long_run")
    ran = f"; ran {run['attention']} attention at {run['length']} tokens" if run else ""
    return (
        f"{verdict} on inputs of {min(lengths)}-{max(lengths)} tokens, max |diff|: {', '.join(parts)}"
        f" (tolerance {v['tolerance']:g}){ran}{head}"
    )


def _model_card(record: dict[str, Any]) -> str:
    """The model card of the record's target."""
    return get_target(record["target"]).card(record)


def new_target_keys(plan: Plan) -> list[str]:
    """Target tensors filled from source tensors that the source itself lacked (e.g. an encoder saved without
    its MLM head: ``plan.new_weights`` names them by their source keys)."""
    if not plan.new_weights:
        return []
    from longify.targets.base import target_shapes

    missing = set(plan.new_weights)
    keys = target_shapes(plan.target.model_class_of(plan.long), plan.long)
    return [k for k in keys if plan.target.source_key(plan.family, k) in missing]
