"""``longify pretrain``: long masked-LM pretraining of a long model of any target with the HF Trainer.

The seed's ``run_long_lm.py`` flow on transformers 5: check every input, tokenise and block the text
(cached), convert a short model with the ``convert`` stage into ``OUTPUT/converted`` (``--target``: a
Longformer by default; only then: a bad corpus, tokenizer or size leaves nothing behind), evaluate once
before training, train with evaluation every ``--eval_steps``, copy the local q/k/v into the global ones (a
Longformer's), and export a clean model into ``--output_dir``. A long model given (a Longformer, a BigBird or
a ``full`` conversion) is trained as the target it is (``longify.targets``: what it freezes, its attention).

The run goes through the training-run recipe (``longify.training_run``): it resumes automatically from the
last complete checkpoint in ``--output_dir`` (or ``--resume_from_checkpoint``), and a rerun of a finished run
changes nothing.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    PreTrainedModel,
    TrainerCallback,
)

from longify.artifacts import CONVERSION_FILE, PRETRAIN_METRICS_FILE
from longify.catalog.names import resolve_text_files
from longify.checkpoint_files import checkpoint_step
from longify.convert import ConvertOptions, convert
from longify.convert.plan import fit_windows
from longify.cpu import cpu_info
from longify.errors import LongifyError, first_line
from longify.families import get_family
from longify.hfargs import data_parallel_size, precision, route_tensorboard
from longify.loading import (
    LOAD_ERRORS,
    check_model_source,
    check_vocab,
    check_weight_files,
    load_failure,
    load_tokenizer,
)
from longify.mlm.args import DEFAULT_MAX_POS, DEFAULT_WINDOW, PretrainArgs
from longify.mlm.collator import EpochSetter, IndexedBlocks, SeededMLMCollator
from longify.mlm.data import load_blocks, mask_for_eval, resolve_sources
from longify.mlm.export import copy_global_projections, export_into
from longify.mlm.trainer import LongMLMTrainer, MetricsLog
from longify.runargs import defining_args
from longify.runinfo import git_hash, library_versions, now_iso
from longify.targets import DEFAULT_TARGET, Target, get_target, model_target, target_of
from longify.textfiles import read_failure
from longify.training_run import TrainingCommand, run_training

logger = logging.getLogger(__name__)
WINDOW_FLAGS = ("--attention_window", "--max_pos")  # how pretrain spells the flags fit_windows names


def settle_source(args: PretrainArgs) -> tuple[Any, Target | None]:
    """The source's config, and the long target it already is (trained as it is: a Longformer, a BigBird, a
    ``full`` conversion) or None for a short model to convert; settles ``args.model.max_pos`` (a long model's
    own usable positions, or ``DEFAULT_MAX_POS``)."""
    src = args.model.model_name_or_path
    check_model_source(src, "--model_name_or_path")
    check_weight_files(src)  # a broken weights file is named before the corpus is read
    try:
        config = AutoConfig.from_pretrained(src)
    except LOAD_ERRORS as err:
        raise LongifyError(f"--model_name_or_path {src}: cannot read its config: {first_line(err)}") from None
    long = model_target(src, config)
    if long is not None:
        check_long_model(args, config, long)
        return config, long
    get_family(config.model_type)  # a model no conversion knows: one line, before any data is read
    args.model.max_pos = args.model.max_pos or DEFAULT_MAX_POS
    return config, None


def check_long_model(args: PretrainArgs, config: Any, target: Target) -> None:
    """A long model is trained as the target it is, at most at its own positions (the default)."""
    src, given = args.model.model_name_or_path, args.model.target
    if given is not None and given != target.name:
        raise LongifyError(
            f"--target {given}: {src} is a {target.name} model already (trained as it is); drop --target, "
            "or give a short source to convert"
        )
    if args.model.bigbird_block_size is not None or args.model.num_random_blocks is not None:
        raise LongifyError(
            f"--bigbird_block_size/--num_random_blocks: options of a conversion; {src} is a {target.name} model "
            "already (trained as it is)"
        )
    usable = target.usable_positions(config)
    if args.model.max_pos is not None and args.model.max_pos > usable:
        raise LongifyError(
            f"--max_pos {args.model.max_pos}: {src} is a {target.label} with {usable} usable positions; "
            f"pass at most {usable} (or a short model to convert)"
        )
    args.model.max_pos = args.model.max_pos or usable


def resolve_long_model(args: PretrainArgs) -> str:
    """The long model to train: the given one, or the short model converted into ``OUTPUT/converted`` (an
    earlier conversion made for the same flags is reused; one made for other flags is refused, or converted
    again under --overwrite_output_dir). Settles ``args.model.max_pos``."""
    config, long = settle_source(args)
    if long is not None:
        return args.model.model_name_or_path
    found = reusable_conversion(args, config.num_hidden_layers)
    if found is not None:
        logger.info("using the earlier conversion in %s", found)
        return str(found)
    return convert_source(args, conversion_options(args, config.num_hidden_layers))


def reusable_conversion(args: PretrainArgs, layers: int) -> Path | None:
    """``OUTPUT/converted`` when it holds this very conversion (reused, under --overwrite_output_dir too: the
    same request converts to the same model); None when there is none, or (under --overwrite_output_dir) when
    it was made for other flags; otherwise refused in one line, before any data is read."""
    target = Path(args.training.output_dir) / "converted"
    if not (target / CONVERSION_FILE).is_file():
        return None
    try:
        check_conversion(target, args, layers)
    except LongifyError:
        if args.overwrite_output_dir and args.training.local_process_index == 0:
            return None  # converted again once every input was checked
        raise
    return target


def convert_source(args: PretrainArgs, options: ConvertOptions) -> str:
    """The short source converted into ``OUTPUT/converted`` by the ``convert`` stage (every input has been
    checked and the data tokenised by now). Under torchrun only the local main process converts (the others
    wait in ``main_process_first`` and find the finished folder)."""
    src = args.model.model_name_or_path
    target = Path(args.training.output_dir) / "converted"
    if args.training.local_process_index != 0:
        raise LongifyError(
            f"{target}: missing after the main process converted {src} (is it on a shared disk?)"
        )
    logger.info(
        "%s is a short model: converting it to %s with %d positions first",
        src,
        options.target,
        options.max_pos,
    )
    convert(src, target, overwrite=True, **{f.name: getattr(options, f.name) for f in fields(options)})
    return str(target)


# convert's spelling of a flag -> pretrain's (the target's checks name convert's flags)
_PRETRAIN_FLAGS = {
    "--max-pos": "--max_pos",
    "--attention-window": "--attention_window",
    "--block-size": "--bigbird_block_size",
    "--num-random-blocks": "--num_random_blocks",
}


def conversion_options(args: PretrainArgs, layers: int) -> ConvertOptions:
    """The conversion of a short source to ``--target`` (Longformer: ``conversion_windows``), checked by the
    target before anything loads (a BigBird whose blocks do not fit ``--max_pos``: one line)."""
    name = args.model.target or DEFAULT_TARGET
    windows = conversion_windows(args, layers) if "attention_window" in get_target(name).options else None
    try:
        return ConvertOptions(
            target=name,
            max_pos=args.model.max_pos or DEFAULT_MAX_POS,
            attention_window=windows,
            block_size=args.model.bigbird_block_size,
            num_random_blocks=args.model.num_random_blocks,
            tokenizer=args.model.tokenizer_name,
        )
    except LongifyError as err:
        text = str(err)
        for flag, ours in _PRETRAIN_FLAGS.items():
            text = text.replace(flag, ours)
        raise LongifyError(text) from None


def conversion_windows(args: PretrainArgs, layers: int) -> list[int]:
    """The per-layer windows a conversion to ``--max_pos`` gets: a given ``--attention_window`` wider than
    the positions is refused; the default is narrowed to them."""
    given = None if args.model.attention_window == DEFAULT_WINDOW else args.model.attention_window
    return fit_windows(given, args.model.max_pos or DEFAULT_MAX_POS, layers, WINDOW_FLAGS)


def check_conversion(target: Path, args: PretrainArgs, layers: int) -> None:
    """Refuse an ``OUTPUT/converted`` made from another model, into another target, or with other positions,
    windows or blocks."""
    try:
        record = json.loads((target / CONVERSION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{target / CONVERSION_FILE}: cannot read it: {first_line(err)}") from None
    options = conversion_options(args, layers)
    wanted: dict[str, Any] = {
        "--model_name_or_path": args.model.model_name_or_path,
        "--target": options.target,
        "--max_pos": args.model.max_pos,
        "--attention_window": options.attention_window,
    }
    found: dict[str, Any] = {
        "--model_name_or_path": record.get("source"),
        "--target": record.get("target", DEFAULT_TARGET),  # records from before targets are Longformers
        "--max_pos": record.get("max_pos"),
        "--attention_window": record.get("attention_window"),
    }
    for key, value in get_target(options.target).settled(options).items():  # BigBird: its blocks
        flag = _PRETRAIN_FLAGS["--" + key.replace("_", "-")]  # its convert flag, as pretrain spells it
        wanted[flag], found[flag] = value, record.get(key)
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
    """The long masked-LM model at ``path`` with its target's attention installed (``--attention``: the
    Longformer kernel) and what masked-LM pretraining cannot train frozen (``Target.frozen``)."""
    try:
        model = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    except LOAD_ERRORS as err:
        raise load_failure(path, err, "a masked-LM model") from None
    target = target_of(model.config)
    target.install_attention(model, attention)
    # Longformer: MLM has no global tokens, so the global q/k/v get no gradient. Frozen, DDP has no unused
    # parameters and the optimizer keeps no state for them; they are refreshed from the local ones at the end.
    for name, param in model.named_parameters():
        if target.frozen(name):
            param.requires_grad_(False)
    return model


def _files(spec: str | None) -> list[str]:
    return [f for f in (spec or "").split(",") if f]


def _resolve_names(args: PretrainArgs) -> None:
    """Registered corpus names where paths go (``--train_file_path wikitext-103``): their split's file in the
    data dir (``longify data download``); a missing one is one line with the command that downloads it."""
    dargs = args.data
    dargs.train_file_path = resolve_text_files(dargs.train_file_path, "train")
    dargs.val_file_path = resolve_text_files(dargs.val_file_path, "validation")


def _evaluates(args: PretrainArgs) -> bool:
    return bool(args.training.do_eval or args.training.eval_strategy != "no")


def _check_data_files(args: PretrainArgs) -> None:
    """Before anything in ``--output_dir`` changes (a conversion under --overwrite_output_dir): the data
    files exist, are files and can be opened, each refused in one line."""
    targs, dargs = args.training, args.data
    specs = [dargs.train_file_path] if targs.do_train else []
    if _evaluates(args):
        if not dargs.val_file_path and not dargs.dataset_name:
            raise LongifyError("--val_file_path: needed for --do_eval / --evaluate_during_training")
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
    if _evaluates(args):
        source = _files(dargs.val_file_path) or dargs.dataset_name
        blocks, stats = load_blocks(source, tokenizer, block, split="validation", **common)
        if dargs.max_eval_blocks:
            blocks = blocks.select(range(min(dargs.max_eval_blocks, len(blocks))))
        eval_ds = mask_for_eval(blocks, tokenizer, dargs.mlm_probability, seed=targs.seed)
        eval_stats = {"n_tokens": stats.n_tokens, "n_chars": stats.n_chars}
    return train_ds, eval_ds, eval_stats


class Pretrain(TrainingCommand):
    """``longify pretrain`` as the training-run recipe runs it (``longify.training_run``)."""

    name = "pretrain"
    also_cleared = (PRETRAIN_METRICS_FILE,)

    def __init__(self, args: PretrainArgs, callbacks: list[TrainerCallback] | None = None) -> None:
        super().__init__(args.training, args.overwrite_output_dir)
        self.args = args
        self.callbacks = list(callbacks or [])
        self.t0 = time.perf_counter()
        self.model_path: str | None = None

    def defining(self) -> dict[str, Any]:
        return defining_args([asdict(self.args.model), asdict(self.args.data)], self.training)  # as given

    def finished(self, resume: str) -> dict[str, Any] | None:
        return MetricsLog(self.output_dir, {}).finished_at(
            checkpoint_step(resume) or 0, _evaluates(self.args)
        )

    def check_inputs(self) -> None:
        """Data files, the source and its positions, windows, an earlier conversion, tokenizer, block size:
        all before anything is converted or tokenised."""
        args = self.args
        _resolve_names(args)
        _check_data_files(args)  # a typo in a path changes nothing
        self.source_config, long = settle_source(args)
        self.is_long = long is not None
        if not self.is_long:
            layers = self.source_config.num_hidden_layers
            conversion_options(
                args, layers
            )  # windows wider than the positions, blocks that do not fit: refused
            if not args.overwrite_output_dir:  # (with it, rank 0 converts again in prepare)
                reusable_conversion(args, layers)  # a conversion made for other flags: refused here
        name = args.model.tokenizer_name or args.model.model_name_or_path
        self.source_tokenizer = load_tokenizer(name)
        check_vocab(self.source_tokenizer, name, self.source_config, args.model.model_name_or_path)
        usable = args.model.max_pos  # settled: the long model's own, or the positions it is converted to
        block = args.data.block_size
        if block is not None and block > usable:
            raise LongifyError(
                f"--block_size {block}: the model {args.model.model_name_or_path} takes at most {usable} "
                f"tokens (--max_pos {usable}); pass --block_size {usable} or less"
            )
        self.block = block or usable

    def prepare(self, resume: str | None) -> LongMLMTrainer:
        args, targs = self.args, self.training
        with targs.main_process_first(desc="tokenisation and conversion"):  # rank 0 caches and converts, once
            # the corpus is read and tokenised (with the source's tokenizer: a conversion keeps it) before the
            # conversion: a text that is not UTF-8 leaves no OUTPUT/converted
            train_ds, eval_ds, eval_stats = _datasets(args, self.source_tokenizer, self.block)
            model_path = resolve_long_model(args)
            tokenizer = load_tokenizer(args.model.tokenizer_name or model_path)
            model = load_model(model_path, args.model.attention)
        self.model_path = model_path
        self.target = target_of(model.config)
        facts = {
            "output_dir": targs.output_dir,
            "world_size": data_parallel_size(targs),  # the process group DDP uses
            "model": args.model.model_name_or_path,
            "long_model": model_path,
            "block_size": self.block,
            "target": self.target.name,
            "attention": self.target.attention_of(model),
            "seed": targs.seed,
            "precision": precision(targs),
            "cpu": cpu_info().record(),  # the kind of CPU: its floating-point paths move the last digits
            "versions": library_versions(),
            "git": git_hash(),
        }
        self.facts = facts
        self.tokenizer = tokenizer
        collator = SeededMLMCollator(tokenizer, args.data.mlm_probability, seed=targs.seed)
        targs.remove_unused_columns = False  # the collator needs each item's row index
        self.metrics_log = MetricsLog(targs.output_dir, facts, resume_step=checkpoint_step(resume))
        trainer = LongMLMTrainer(
            model=model,
            args=targs,
            train_dataset=train_ds,
            eval_dataset=eval_ds,
            data_collator=collator,
            processing_class=tokenizer,
            callbacks=[EpochSetter(collator), *self.callbacks],
            text_stats=eval_stats,
            metrics_log=self.metrics_log,
        )
        route_tensorboard(trainer)  # events into this run's folder, never an earlier run's --logging_dir
        self.evaluates = eval_ds is not None
        return trainer

    @property
    def source(self) -> str | None:
        return self.model_path

    def run_record(self) -> dict[str, Any]:
        return _run_record(self.args, self.facts)

    def before_training(self, trainer: LongMLMTrainer) -> None:  # type: ignore[override]
        if self.evaluates and self.metrics_log.data["initial"] is None:
            trainer.evaluate()  # the anchor: metrics of the untrained long model

    def evaluate(self, trainer: LongMLMTrainer) -> dict[str, Any]:  # type: ignore[override]
        return trainer.evaluate() if self.evaluates else {}

    def save(self, trainer: LongMLMTrainer, final: dict[str, Any]) -> None:  # type: ignore[override]
        args = self.args
        info: dict[str, Any] = {
            "base": args.model.model_name_or_path,
            "steps": trainer.state.global_step,
            "block size": self.block,
        }
        if (
            self.target.global_projections
        ):  # Longformer's: untrained by masked-LM, refreshed from the local ones
            copied = copy_global_projections(trainer.model) if args.model.copy_global_projections else 0
            info["global projections copied from local"] = bool(copied)
        info.update({k: round(v, 4) for k, v in final.items()})
        export_into(self.output_dir, trainer.model, self.tokenizer, card=info)

    def results(  # type: ignore[override]
        self, trainer: LongMLMTrainer, trained: Any, final: dict[str, Any], cost: dict[str, Any] | None
    ) -> dict[str, Any]:
        if trainer.is_world_process_zero():
            self.metrics_log.write(
                final={k.removeprefix("eval_"): v for k, v in final.items()} or None,
                steps=trainer.state.global_step,
                train_loss=trained.training_loss if trained is not None else None,  # the whole run's
                **({"train_loss_note": trainer.loss_note} if trainer.loss_note else {}),
                cost=cost,  # the whole run's training: seconds per step, tokens per second, peak memory
                seconds=round(time.perf_counter() - self.t0, 1),
                finished=now_iso(),
            )
        return self.metrics_log.data


def pretrain(args: PretrainArgs, callbacks: list[TrainerCallback] | None = None) -> dict[str, Any]:
    """Run long MLM pretraining as ``args`` say, through the training-run recipe; return the metrics record."""
    return run_training(Pretrain(args, callbacks))


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
