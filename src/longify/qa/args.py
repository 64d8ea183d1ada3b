"""Arguments of ``longify qa train`` / ``longify qa evaluate``: model and data dataclasses beside
transformers' TrainingArguments.

Field names follow the seed's ``run_squad.py`` (``--train_file``, ``--predict_file``, ``--max_seq_length``,
``--doc_stride``) so its command line parses unchanged; flags transformers 5 dropped (``--model_type``,
``--do_lower_case``, ``--per_gpu_train_batch_size``, ``--fp16`` without CUDA, ...) are translated by
``longify.legacy`` with one log line each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers import HfArgumentParser, TrainingArguments

from longify.attention import check_attention_flag
from longify.cpu import BF16_ON_EMULATED_CPU_HELP
from longify.errors import LongifyError
from longify.hfargs import parse_hf_args


@dataclass
class QAModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Model directory or hub id (a long model of any target from `longify convert` / `pretrain`, "
            "or any encoder)."
        },
    )
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer, if not the model's own."})
    attention: str = field(
        default="fast",
        metadata={"help": "Longformer attention kernel: 'fast' (longify's exact kernel) or 'hf'."},
    )
    bf16_on_emulated_cpu: bool = field(default=False, metadata={"help": BF16_ON_EMULATED_CPU_HELP})

    def __post_init__(self) -> None:
        check_attention_flag(self.attention)


@dataclass
class QADataArguments:
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "Task name: squad, xquad, mlqa, mlqa-gxlt (all 49 MLQA pairs), tydiqa, triviaqa (domain "
            "from the file's Domain field), triviaqa-wikipedia, triviaqa-web, json; default: inferred from the files."
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "Training file or folder of the task."})
    predict_file: str | None = field(
        default=None,
        metadata={"help": "Evaluation file or folder of the task.", "aliases": ["--validation_file"]},
    )
    predictions: str | None = field(
        default=None,
        metadata={"help": "`qa evaluate` only: score this predictions JSON (id -> text), no model."},
    )
    languages: list[str] | None = field(
        default=None, metadata={"help": "Languages to load (multilingual tasks)."}
    )
    train_split: str = field(
        default="train", metadata={"help": "Split of --train_file for folder-style tasks."}
    )
    eval_split: str | None = field(
        default=None, metadata={"help": "Split of --predict_file (default: the task's)."}
    )
    max_seq_length: int = field(
        default=384, metadata={"help": "Tokens per window (capped at the model's maximum, e.g. 4096)."}
    )
    doc_stride: int = field(
        default=128, metadata={"help": "Tokens shared by consecutive windows of a context."}
    )
    max_query_length: int = field(
        default=64, metadata={"help": "Question tokens kept (longer ones are cut)."}
    )
    n_best_size: int = field(default=20, metadata={"help": "Candidate starts/ends per window in decoding."})
    max_answer_length: int = field(default=30, metadata={"help": "Longest answer in tokens."})
    concat_contexts: int = field(
        default=0,
        metadata={"help": "Join each paragraph with K-1 others (long-context variant; 0 = off)."},
    )
    concat_seed: int = field(default=0, metadata={"help": "Seed for the paragraphs --concat_contexts draws."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use at most this many training questions."}
    )
    max_eval_samples: int | None = field(
        default=None,
        metadata={"help": "Use at most this many evaluation questions per language (per pair for MLQA)."},
    )
    metric: str | None = field(
        default=None, metadata={"help": "squad, mlqa or triviaqa (default: the task's)."}
    )
    lang: str | None = field(default=None, metadata={"help": "Force the metric's language (--metric mlqa)."})
    mlqa_pairs: str | None = field(
        default=None,
        metadata={
            "help": "MLQA (context, question) language pairs: 'same' (the 7 MLQA tasks, --dataset mlqa's default), "
            "'all' (G-XLT, 49 pairs, --dataset mlqa-gxlt's default) or a list like 'en-de,de-en'."
        },
    )
    triviaqa_word_budget: int | None = field(
        default=None,
        metadata={"help": "TriviaQA: whitespace words kept per evidence document (default 4096; 0 = all)."},
    )
    bucket_width: int = field(default=512, metadata={"help": "Token width of the analysis buckets."})
    preprocessing_num_workers: int | None = field(
        default=None,
        metadata={
            "help": "Accepted for run_squad.py / run_qa.py command lines and ignored (one log line says so): "
            "QA tokenisation runs batched on the fast tokenizer's own threads."
        },
    )

    def __post_init__(self) -> None:
        for name in (
            "max_seq_length",
            "max_query_length",
            "n_best_size",
            "max_answer_length",
            "bucket_width",
        ):
            if getattr(self, name) <= 0:
                raise LongifyError(f"--{name}: expected a positive integer, got {getattr(self, name)}")
        if self.doc_stride < 0:
            raise LongifyError(f"--doc_stride: expected a non-negative integer, got {self.doc_stride}")
        if self.triviaqa_word_budget is not None and self.triviaqa_word_budget < 0:
            raise LongifyError(
                f"--triviaqa_word_budget: expected a positive number of words or 0 (whole documents), "
                f"got {self.triviaqa_word_budget}"
            )
        if self.concat_contexts < 0:
            raise LongifyError(
                f"--concat_contexts: expected 0 (off) or a positive K, got {self.concat_contexts}"
            )


@dataclass
class QAArgs:
    """Everything one ``longify qa`` run needs, after legacy flags were translated."""

    model: QAModelArguments
    data: QADataArguments
    training: TrainingArguments
    overwrite_output_dir: bool = False
    do_lower_case: bool = False
    model_type: str | None = None
    notes: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)


def qa_parser() -> HfArgumentParser:
    """The parser behind ``longify qa train`` / ``evaluate`` (``-h`` prints its help; no abbreviated flags)."""
    return HfArgumentParser((QAModelArguments, QADataArguments, TrainingArguments), allow_abbrev=False)


def parse_qa_args(argv: Sequence[str], *, default_output_dir: str | None = None) -> QAArgs:
    """Parse a seed-style ``run_squad.py`` command line, or a YAML/JSON config (flags after it override it)."""
    defaults = ["--output_dir", default_output_dir] if default_output_dir else []
    (model, data, training), translated = parse_hf_args(argv, qa_parser(), defaults)
    return QAArgs(
        model=model,
        data=data,
        training=training,
        overwrite_output_dir=bool(translated.extras.get("overwrite_output_dir")),
        do_lower_case=bool(translated.extras.get("do_lower_case")),
        model_type=translated.extras.get("model_type"),
        notes=translated.notes,
        argv=list(argv),
    )
