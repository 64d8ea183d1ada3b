"""The ``longify`` command line: subcommand name -> function. Parsing only; the work is in the functions."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from longify.errors import LongifyError

logger = logging.getLogger("longify")

Handler = Callable[[argparse.Namespace], int | None]


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
    )
    v = record["verification"]
    check = (
        "not verified"
        if v is None
        else f"verified: max |diff| {max(v['max_abs_diff_hidden'], v['max_abs_diff_logits'] or 0):.2e}"
    )
    print(
        f"{record['output']}: longformer, {record['max_pos']} positions, {check}, {record['seconds']:.1f} s"
    )
    return 0


def _add_convert(sub: argparse._SubParsersAction) -> None:
    from longify.convert.convert import GLOBAL_INITS
    from longify.convert.positions import POSITION_INITS

    p = sub.add_parser(
        "convert", help="convert a short encoder into a Longformer (verified against its source)"
    )
    p.add_argument(
        "src", help="source model directory or hub id (roberta, xlm-roberta, camembert, bert, ...)"
    )
    p.add_argument("out", help="output directory (written atomically)")
    p.add_argument(
        "--max-pos", "--max_pos", type=int, default=4096, help="usable positions of the long model"
    )
    p.add_argument(
        "--attention-window",
        "--attention_window",
        default="512",
        help="even window size, or a comma-separated list with one value per layer (default 512)",
    )
    p.add_argument(
        "--position-init", choices=sorted(POSITION_INITS), default="copy", help="how new positions start"
    )
    p.add_argument(
        "--global-init", choices=GLOBAL_INITS, default="copy", help="global q/k/v: copy local or random"
    )
    p.add_argument("--no-verify", action="store_true", help="skip the comparison against the source model")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed by verification")
    p.add_argument("--tokenizer", default=None, help="tokenizer to use when SRC has none")
    p.add_argument("--seed", type=int, default=0, help="seed for random inits and verification inputs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_convert)


def _demo(args: argparse.Namespace) -> int:
    from longify.demo.run import run_demo

    run_demo(args.out, steps=args.steps, lm_steps=args.lm_steps, qa_epochs=args.qa_epochs, overwrite=True)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline offline on the embedded default data (CPU, minutes)"
    )
    p.add_argument("--out", default="demo-output", help="directory for the demo's models and results")
    p.add_argument("--steps", type=int, default=300, help="training steps of the tiny source model")
    p.add_argument("--lm-steps", type=int, default=40, help="long masked-LM pretraining steps")
    p.add_argument("--qa-epochs", type=float, default=3.0, help="QA fine-tuning epochs")
    p.set_defaults(func=_demo)


def _pretrain(argv: list[str]) -> int:
    from transformers import HfArgumentParser, TrainingArguments

    from longify.mlm.args import DataArguments, ModelArguments, parse_pretrain_args

    if not argv or argv[0] in ("-h", "--help"):
        HfArgumentParser((ModelArguments, DataArguments, TrainingArguments)).print_help()
        return 0 if argv else 2
    from longify.mlm.train import pretrain

    record = pretrain(parse_pretrain_args(argv))
    first, last = record.get("initial") or {}, record.get("final") or {}
    if first and last:
        print(
            f"{record['output_dir']}: eval loss {first['loss']:.3f} -> {last['loss']:.3f}, "
            f"bits/char {first.get('bits_per_char', float('nan')):.3f} -> {last.get('bits_per_char', float('nan')):.3f}"
        )
    return 0


def _add_passthrough(sub: argparse._SubParsersAction, name: str, help: str) -> None:
    """Listed in --help; its arguments go unparsed to its own HfArgumentParser (see PASSTHROUGH)."""
    sub.add_parser(name, add_help=False, help=help)


def _export(args: argparse.Namespace) -> int:
    from longify.mlm.export import export_checkpoint

    out = export_checkpoint(
        args.checkpoint, args.out, copy_global=not args.no_copy_global, overwrite=args.overwrite
    )
    print(f"{out}: clean model directory (no optimizer, scheduler or RNG state)")
    return 0


def _add_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="a clean, loadable model directory from a training checkpoint")
    p.add_argument("checkpoint", help="a checkpoint-N directory (or any saved model directory)")
    p.add_argument("out", help="output directory (written atomically)")
    p.add_argument("--no-copy-global", action="store_true", help="keep the global q/k/v as they are")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_export)


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "convert": _add_convert,
    "pretrain": lambda sub: _add_passthrough(
        sub,
        "pretrain",
        "long masked-LM pretraining (run_long_lm.py flags or a YAML/JSON config; -h lists them)",
    ),
    "export": _add_export,
    "qa": lambda sub: _add_passthrough(
        sub,
        "qa",
        "extractive QA: `qa train` (run_squad.py flags), `qa evaluate`, `qa predict`; -h lists flags",
    ),
    "demo": _add_demo,
}


# Commands whose flags are HF-style (HfArgumentParser + TrainingArguments): words -> main(argv).
def _qa(command: str) -> Callable[[list[str]], int]:
    def run(argv: list[str]) -> int:
        from longify.qa import commands

        return getattr(commands, f"qa_{command}_main")(argv)

    return run


PASSTHROUGH: dict[tuple[str, ...], Callable[[list[str]], int]] = {
    ("pretrain",): _pretrain,
    ("qa", "train"): _qa("train"),
    ("qa", "evaluate"): _qa("evaluate"),
    ("qa", "predict"): _qa("predict"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longify", description=__doc__, allow_abbrev=False)
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS.values():
        add(sub)
    return parser


def setup_logging(debug: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S", level=level
    )
    logging.getLogger("longify").setLevel(level)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning() if not debug else hf_logging.set_verbosity_info()
    hf_logging.disable_progress_bar()
    # longify pads to the attention window itself where it matters; HF's notice about it is noise
    logging.getLogger("transformers.models.longformer.modeling_longformer").addFilter(
        lambda record: "automatically padded" not in record.getMessage()
    )


def _split_passthrough(argv: list[str]) -> tuple[list[str], Callable[[list[str]], int], list[str]] | None:
    """(global flags, handler, its argv) when ``argv`` names a pass-through command, else None."""
    idx = next((i for i, a in enumerate(argv) if not a.startswith("-")), len(argv))
    for words, handler in PASSTHROUGH.items():
        if tuple(argv[idx : idx + len(words)]) == words:
            return argv[:idx], handler, argv[idx + len(words) :]
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = _split_passthrough(argv)
    if split is not None:
        flags, handler, rest = split
        unknown = [f for f in flags if f not in ("--debug", "-q", "--quiet")]
        if unknown:
            build_parser().error(f"unrecognized arguments: {' '.join(unknown)}")
        args = argparse.Namespace(debug="--debug" in flags, quiet=bool({"-q", "--quiet"} & set(flags)))
        run: Callable[[], int | None] = lambda: handler(rest)  # noqa: E731
    else:
        args = build_parser().parse_args(argv)
        run = lambda: args.func(args)  # noqa: E731
    setup_logging(args.debug, args.quiet)
    try:
        return int(run() or 0)
    except LongifyError as err:
        if args.debug:
            raise
        print(f"longify: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("longify: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
