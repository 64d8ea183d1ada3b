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

    run_demo(args.out, steps=args.steps, overwrite=True)
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline offline on the embedded default data (CPU, minutes)"
    )
    p.add_argument("--out", default="demo-output", help="directory for the demo's models and results")
    p.add_argument("--steps", type=int, default=300, help="training steps of the tiny source model")
    p.set_defaults(func=_demo)


COMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "convert": _add_convert,
    "demo": _add_demo,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="longify", description=__doc__)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.debug, args.quiet)
    try:
        return int(args.func(args) or 0)
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
