"""``longify pretrain``: long masked-LM pretraining of a (converted) Longformer with the HF Trainer.

The seed's ``run_long_lm.py`` flow on transformers 5: convert a short model first if needed, tokenise
and block the text (cached), evaluate once before training, train with evaluation every ``--eval_steps``,
copy the local q/k/v into the global ones, and export a clean model into ``--output_dir``.
Resumes automatically from the last checkpoint in ``--output_dir`` (or ``--resume_from_checkpoint``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
    TrainerCallback,
)

from longify.attention import set_attention
from longify.convert import convert
from longify.errors import LongifyError, first_line
from longify.mlm.args import PretrainArgs
from longify.mlm.collator import EpochSetter, IndexedBlocks, SeededMLMCollator
from longify.mlm.data import load_blocks, mask_for_eval
from longify.mlm.export import copy_global_projections, export_into
from longify.mlm.trainer import METRICS_FILE, LongMLMTrainer, MetricsLog
from longify.outdir import resume_checkpoint
from longify.runinfo import git_hash, library_versions, now_iso, write_json_atomic

logger = logging.getLogger(__name__)

RUN_FILE = "longify_run.json"


def resolve_long_model(args: PretrainArgs) -> str:
    """The Longformer to train: the given one, or the short model converted into ``OUTPUT/converted``."""
    src = args.model.model_name_or_path
    try:
        model_type = AutoConfig.from_pretrained(src).model_type
    except (OSError, ValueError) as err:
        raise LongifyError(f"--model_name_or_path {src}: cannot read its config: {first_line(err)}") from None
    if model_type == "longformer":
        return src
    target = Path(args.training.output_dir) / "converted"
    if (target / "conversion.json").is_file() and not args.overwrite_output_dir:
        logger.info("using the earlier conversion in %s", target)
        return str(target)
    logger.info(
        "%s is a short %s model: converting it to %d positions first", src, model_type, args.model.max_pos
    )
    convert(
        src,
        target,
        max_pos=args.model.max_pos,
        attention_window=args.model.attention_window,
        tokenizer=args.model.tokenizer_name,
        overwrite=True,
    )
    return str(target)


def load_model(path: str, attention: str) -> PreTrainedModel:
    model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    if model.config.model_type != "longformer":
        raise LongifyError(f"{path}: expected a longformer model, got {model.config.model_type!r}")
    set_attention(model, attention)
    # MLM has no global tokens: the global q/k/v get no gradient. Frozen, DDP has no unused parameters
    # and the optimizer keeps no state for them; they are refreshed from the local ones at the end.
    for name, param in model.named_parameters():
        if "_global." in name:
            param.requires_grad_(False)
    return model


def _resume_point(args: PretrainArgs) -> str | None:
    main = args.training.process_index == 0
    last = resume_checkpoint(
        args.training.output_dir,
        requested=args.training.resume_from_checkpoint,
        overwrite=args.overwrite_output_dir,
        main_process=main,
    )
    if args.overwrite_output_dir and main:
        (Path(args.training.output_dir) / METRICS_FILE).unlink(missing_ok=True)
    return last


def _files(spec: str | None) -> list[str]:
    return [f for f in (spec or "").split(",") if f]


def _datasets(args: PretrainArgs, tokenizer: Any, block: int) -> tuple[Any, Any, dict[str, int]]:
    """Training blocks (indexed for seeded masking) and pre-masked evaluation blocks with text counts."""
    targs, dargs = args.training, args.data
    common = {
        "text_field": dargs.text_field,
        "cache_dir": dargs.data_cache_dir,
        "num_proc": dargs.preprocessing_num_workers,
        "dataset_config": dargs.dataset_config_name,
    }
    train_ds = eval_ds = None
    eval_stats: dict[str, int] = {}
    if targs.do_train:
        source = _files(dargs.train_file_path) or dargs.dataset_name
        blocks, _ = load_blocks(source, tokenizer, block, split="train", **common)
        train_ds = IndexedBlocks(blocks)
    if targs.do_eval or targs.eval_strategy != "no":
        if not dargs.val_file_path and not dargs.dataset_name:
            raise LongifyError("--val_file_path: needed for --do_eval / --evaluate_during_training")
        source = _files(dargs.val_file_path) or dargs.dataset_name
        blocks, stats = load_blocks(source, tokenizer, block, split="validation", **common)
        if dargs.max_eval_blocks:
            blocks = blocks.select(range(min(dargs.max_eval_blocks, len(blocks))))
        eval_ds = mask_for_eval(blocks, tokenizer, dargs.mlm_probability, seed=targs.seed)
        eval_stats = {"n_tokens": stats.n_tokens, "n_chars": stats.n_chars}
    return train_ds, eval_ds, eval_stats


def pretrain(args: PretrainArgs, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Run long MLM pretraining as ``args`` say; return the metrics record."""
    t0 = time.perf_counter()
    targs, dargs = args.training, args.data
    with targs.main_process_first(desc="conversion and tokenisation"):  # rank 0 converts and caches, once
        resume = _resume_point(args)
        model_path = resolve_long_model(args)
        tokenizer = AutoTokenizer.from_pretrained(args.model.tokenizer_name or model_path)
        model = load_model(model_path, args.model.attention)
        offset = model.config.pad_token_id + 1
        block = dargs.block_size or min(args.model.max_pos, model.config.max_position_embeddings - offset)
        train_ds, eval_ds, eval_stats = _datasets(args, tokenizer, block)

    facts = {
        "output_dir": targs.output_dir,
        "world_size": targs.world_size,
        "model": args.model.model_name_or_path,
        "long_model": model_path,
        "block_size": block,
        "attention": type(model.longformer.encoder.layer[0].attention.self).__name__,
        "seed": targs.seed,
        "versions": library_versions(),
        "git": git_hash(),
    }
    collator = SeededMLMCollator(tokenizer, dargs.mlm_probability, seed=targs.seed)
    targs.remove_unused_columns = False  # the collator needs each item's row index
    metrics_log = MetricsLog(targs.output_dir, facts, resume_step=_step_of(resume))
    trainer = LongMLMTrainer(
        model=model,
        args=targs,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[EpochSetter(collator), *(callbacks or [])],
        text_stats=eval_stats,
        metrics_log=metrics_log,
    )
    if trainer.is_world_process_zero():
        write_json_atomic(Path(targs.output_dir) / RUN_FILE, _run_record(args, facts))
    if eval_ds is not None and metrics_log.data["initial"] is None:
        trainer.evaluate()  # the anchor: metrics of the untrained long model
    if targs.do_train:
        trainer.train(resume_from_checkpoint=resume)
    final = trainer.evaluate() if eval_ds is not None else {}
    if targs.do_train and trainer.is_world_process_zero():
        copied = copy_global_projections(trainer.model) if args.model.copy_global_projections else 0
        info = {
            "base": args.model.model_name_or_path,
            "steps": trainer.state.global_step,
            "block size": block,
            "global projections copied from local": bool(copied),
            **{k: round(v, 4) for k, v in final.items()},
        }
        export_into(Path(targs.output_dir), trainer.model, tokenizer, card=info)
    if trainer.is_world_process_zero():
        metrics_log.write(
            final={k.removeprefix("eval_"): v for k, v in final.items()} or None,
            steps=trainer.state.global_step,
            seconds=round(time.perf_counter() - t0, 1),
            finished=now_iso(),
        )
    return metrics_log.data


def _step_of(checkpoint: str | None) -> int | None:
    if not checkpoint:
        return None
    try:
        return int(Path(checkpoint).name.rsplit("-", 1)[-1])
    except ValueError:
        return None


def _run_record(args: PretrainArgs, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "command": ["longify", "pretrain", *args.argv],
        "model_args": asdict(args.model),
        "data_args": asdict(args.data),
        "training_args": args.training.to_dict(),
        "translated_flags": args.notes,
        "created": now_iso(),
        **facts,
    }
