"""``longify pretrain``: long masked-LM pretraining of a (converted) Longformer with the HF Trainer.

The seed's ``run_long_lm.py`` flow on transformers 5: convert a short model first if needed, tokenise
and block the text (cached), evaluate once before training, train with evaluation every ``--eval_steps``,
copy the local q/k/v into the global ones, and export a clean model into ``--output_dir``.
Resumes automatically from the last complete checkpoint in ``--output_dir`` (or ``--resume_from_checkpoint``);
a rerun of a finished run changes nothing (see ``longify.checkpoints``).
"""

from __future__ import annotations

import json
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
from longify.catalog.names import resolve_text_files
from longify.checkpoint_files import checkpoint_step
from longify.convert import convert
from longify.convert.families import position_offset, usable_positions
from longify.convert.plan import fit_windows
from longify.cpu import cpu_info
from longify.errors import LongifyError, first_line
from longify.fileio import write_json_atomic
from longify.hfargs import data_parallel_size, precision, route_tensorboard
from longify.loading import LOAD_ERRORS, check_model_source, check_tokenizer, check_vocab, load_failure
from longify.locks import locks_output
from longify.mlm.args import DEFAULT_MAX_POS, DEFAULT_WINDOW, PretrainArgs
from longify.mlm.collator import EpochSetter, IndexedBlocks, SeededMLMCollator
from longify.mlm.data import load_blocks, mask_for_eval, resolve_sources
from longify.mlm.export import copy_global_projections, export_into
from longify.mlm.trainer import METRICS_FILE, LongMLMTrainer, MetricsLog
from longify.runargs import KEY, check_same_run, defining_args, relocated
from longify.runinfo import git_hash, library_versions, now_iso
from longify.textfiles import read_failure
from longify.training_run import clear_previous_run, resume_checkpoint, training_done

logger = logging.getLogger(__name__)
WINDOW_FLAGS = ("--attention_window", "--max_pos")  # how pretrain spells the flags fit_windows names

RUN_FILE = "longify_run.json"


def resolve_long_model(args: PretrainArgs) -> str:
    """The Longformer to train: the given one, or the short model converted into ``OUTPUT/converted``.

    Settles ``args.model.max_pos`` (a Longformer's own positions, or ``DEFAULT_MAX_POS`` to convert). Under
    torchrun only the local main process converts (the others wait in ``main_process_first`` and load the
    finished folder); an earlier conversion made for other flags is refused, not reused under new ones.
    """
    src = args.model.model_name_or_path
    check_model_source(src, "--model_name_or_path")
    try:
        config = AutoConfig.from_pretrained(src)
    except LOAD_ERRORS as err:
        raise LongifyError(f"--model_name_or_path {src}: cannot read its config: {first_line(err)}") from None
    if config.model_type == "longformer":
        usable = usable_positions(config)
        if args.model.max_pos is not None and args.model.max_pos > usable:
            raise LongifyError(
                f"--max_pos {args.model.max_pos}: {src} is a Longformer with {usable} usable positions; "
                f"pass at most {usable} (or a short model to convert)"
            )
        args.model.max_pos = args.model.max_pos or usable
        return src
    args.model.max_pos = args.model.max_pos or DEFAULT_MAX_POS
    windows = conversion_windows(args, config.num_hidden_layers)  # before anything is converted or reused
    target = Path(args.training.output_dir) / "converted"
    main = args.training.local_process_index == 0
    if (target / "conversion.json").is_file():
        try:
            check_conversion(target, args, config.num_hidden_layers)
        except LongifyError:
            if not (args.overwrite_output_dir and main):
                raise
            # converted again below, once the data files were checked (pretrain calls _check_data_files)
        else:  # reused, under --overwrite_output_dir too: the same request converts to the same model
            logger.info("using the earlier conversion in %s", target)
            return str(target)
    if not main:
        raise LongifyError(
            f"{target}: missing after the main process converted {src} (is it on a shared disk?)"
        )
    logger.info(
        "%s is a short %s model: converting it to %d positions first",
        src,
        config.model_type,
        args.model.max_pos,
    )
    convert(
        src,
        target,
        max_pos=args.model.max_pos,
        attention_window=windows,
        tokenizer=args.model.tokenizer_name,
        overwrite=True,
    )
    return str(target)


def conversion_windows(args: PretrainArgs, layers: int) -> list[int]:
    """The per-layer windows a conversion to ``--max_pos`` gets: a given ``--attention_window`` wider than
    the positions is refused; the default is narrowed to them."""
    given = None if args.model.attention_window == DEFAULT_WINDOW else args.model.attention_window
    return fit_windows(given, args.model.max_pos or DEFAULT_MAX_POS, layers, WINDOW_FLAGS)


def check_conversion(target: Path, args: PretrainArgs, layers: int) -> None:
    """Refuse an ``OUTPUT/converted`` made from another model or with other positions or windows."""
    try:
        record = json.loads((target / "conversion.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{target}/conversion.json: cannot read it: {first_line(err)}") from None
    wanted = {
        "--model_name_or_path": args.model.model_name_or_path,
        "--max_pos": args.model.max_pos,
        "--attention_window": conversion_windows(args, layers),
    }
    found = {
        "--model_name_or_path": record.get("source"),
        "--max_pos": record.get("max_pos"),
        "--attention_window": record.get("attention_window"),
    }
    for flag, value in wanted.items():
        same = value == found[flag]
        if flag == "--model_name_or_path" and not same and found[flag]:
            same = Path(str(value)).resolve() == Path(str(found[flag])).resolve()
        if not same:
            raise LongifyError(
                f"{flag} {_flag_text(value)}: {target} holds a conversion made with {flag} "
                f"{_flag_text(found[flag])}; pass that, or --overwrite_output_dir to convert again"
            )


def _flag_text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def load_model(path: str, attention: str) -> PreTrainedModel:
    try:
        model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    except LOAD_ERRORS as err:
        raise load_failure(path, err, "a masked-LM model") from None
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
    """The complete checkpoint to resume from (none with --overwrite_output_dir, which deletes nothing here)."""
    return resume_checkpoint(
        args.training.output_dir,
        requested=args.training.resume_from_checkpoint,
        overwrite=args.overwrite_output_dir,
        world_size=args.training.world_size,
    )


def _finished_record(args: PretrainArgs, resume: str | None) -> dict[str, Any] | None:
    """The record of this very run when it already finished (last step checkpointed, exported, recorded)."""
    targs = args.training
    if not (targs.do_train and training_done(resume, targs.max_steps, targs.num_train_epochs)):
        return None
    evaluated = bool(targs.do_eval or targs.eval_strategy != "no")
    return MetricsLog(targs.output_dir, {}).finished_at(checkpoint_step(resume) or 0, evaluated)


def _files(spec: str | None) -> list[str]:
    return [f for f in (spec or "").split(",") if f]


def _resolve_names(args: PretrainArgs) -> None:
    """Registered corpus names where paths go (``--train_file_path wikitext-103``): their split's file in the
    data dir (``longify data download``); a missing one is one line with the command that downloads it."""
    dargs = args.data
    dargs.train_file_path = resolve_text_files(dargs.train_file_path, "train")
    dargs.val_file_path = resolve_text_files(dargs.val_file_path, "validation")


def _check_data_files(args: PretrainArgs) -> None:
    """Before anything in ``--output_dir`` changes (a conversion under --overwrite_output_dir): the data
    files exist, are files and can be opened, each refused in one line."""
    targs, dargs = args.training, args.data
    specs = [dargs.train_file_path] if targs.do_train else []
    if targs.do_eval or targs.eval_strategy != "no":
        specs.append(dargs.val_file_path)
    for spec in specs:
        if not _files(spec):
            continue
        for kind, path in resolve_sources(_files(spec)):
            if kind == "hub":
                continue
            try:
                with open(path, "rb"):
                    pass
            except OSError as err:
                raise read_failure(path, err) from None


def _defining(args: PretrainArgs) -> dict[str, Any]:
    return defining_args([asdict(args.model), asdict(args.data)], args.training)


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


@locks_output(lambda args, *_, **__: args.training.output_dir)
def pretrain(args: PretrainArgs, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Run long MLM pretraining as ``args`` say; return the metrics record."""
    t0 = time.perf_counter()
    targs, dargs = args.training, args.data
    resume = _resume_point(args)
    defining = _defining(args)  # as given (before --max_pos is settled)
    if resume is not None:
        check_same_run(targs.output_dir, defining)  # never continue a run made with other arguments
    done = _finished_record(args, resume)
    if done is not None:  # a rerun of a finished run changes nothing
        logger.info(
            "%s: finished at step %s already: nothing to do (pass --overwrite_output_dir to train again)",
            targs.output_dir,
            done["steps"],
        )
        return relocated(done, done.get("output_dir"), targs.output_dir)  # a copied folder names itself
    _resolve_names(args)
    _check_data_files(args)  # a typo in a path changes nothing (no conversion yet)
    with targs.main_process_first(desc="conversion and tokenisation"):  # rank 0 converts and caches, once
        model_path = resolve_long_model(args)
        tokenizer = AutoTokenizer.from_pretrained(args.model.tokenizer_name or model_path)
        check_tokenizer(tokenizer, args.model.tokenizer_name or model_path, "--tokenizer_name")
        model = load_model(model_path, args.model.attention)
        check_vocab(tokenizer, args.model.tokenizer_name or model_path, model.config, model_path)
        usable = model.config.max_position_embeddings - position_offset(model.config)
        if dargs.block_size is not None and dargs.block_size > usable:
            raise LongifyError(
                f"--block_size {dargs.block_size}: the model {model_path} takes at most {usable} tokens "
                f"(--max_pos {args.model.max_pos}); pass --block_size {usable} or less"
            )
        block = dargs.block_size or min(args.model.max_pos, usable)
        train_ds, eval_ds, eval_stats = _datasets(args, tokenizer, block)

    facts = {
        "output_dir": targs.output_dir,
        "world_size": data_parallel_size(targs),  # the process group DDP uses
        "model": args.model.model_name_or_path,
        "long_model": model_path,
        "block_size": block,
        "attention": type(model.longformer.encoder.layer[0].attention.self).__name__,
        "seed": targs.seed,
        "precision": precision(targs),
        "cpu": cpu_info().record(),  # the kind of CPU: its floating-point paths move the last digits
        "versions": library_versions(),
        "git": git_hash(),
    }
    collator = SeededMLMCollator(tokenizer, dargs.mlm_probability, seed=targs.seed)
    targs.remove_unused_columns = False  # the collator needs each item's row index
    metrics_log = MetricsLog(targs.output_dir, facts, resume_step=checkpoint_step(resume))
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
    route_tensorboard(trainer)  # events into this run's folder, never an earlier run's --logging_dir
    if args.overwrite_output_dir and trainer.is_world_process_zero():
        clear_previous_run(
            targs.output_dir, METRICS_FILE, source=model_path
        )  # every input has loaded: now the old run goes
    if trainer.is_world_process_zero():
        write_json_atomic(Path(targs.output_dir) / RUN_FILE, {**_run_record(args, facts), KEY: defining})
    if eval_ds is not None and metrics_log.data["initial"] is None:
        trainer.evaluate()  # the anchor: metrics of the untrained long model
    train_loss = None
    if targs.do_train:
        if resume and (checkpoint_step(resume) or 0) >= trainer.planned_steps():
            result = trainer.finish_from(resume)  # killed before its export: no step more
        else:
            result = trainer.train(resume_from_checkpoint=resume)
        train_loss = result.training_loss  # of the whole run, across resumes
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
            train_loss=train_loss,
            **({"train_loss_note": trainer.loss_note} if trainer.loss_note else {}),
            seconds=round(time.perf_counter() - t0, 1),
            finished=now_iso(),
        )
    return metrics_log.data


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
