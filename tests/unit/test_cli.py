"""The command table: help at every level, global flags anywhere, one-line errors for bad flag values."""

from __future__ import annotations

import pytest

import longify
from longify.cli import main, split_global_flags
from longify.errors import LongifyError


@pytest.mark.parametrize(
    ("argv", "code", "shows"),
    [
        ([], 2, "convert"),
        (["-h"], 0, "pretrain"),
        (["qa"], 2, "evaluate"),
        (["qa", "-h"], 0, "predict"),
        (["qa", "--help"], 0, "train"),
    ],
)
def test_groups_print_their_commands(argv, code, shows, capsys) -> None:
    assert main(argv) == code
    out = capsys.readouterr()
    assert shows in (out.out if code == 0 else out.err)


def test_unknown_command_is_one_error(capsys) -> None:
    assert main(["qa", "tarin"]) == 2
    assert "unknown command 'tarin'; choose from train, evaluate, predict" in capsys.readouterr().err


@pytest.mark.parametrize("words", [["pretrain"], ["qa", "train"], ["qa", "evaluate"]])
def test_hf_style_short_help_and_help_all(words, capsys) -> None:
    assert main([*words, "-h"]) == 0
    short = capsys.readouterr().out
    prog = " ".join(["longify", *words])
    assert short.startswith(f"usage: {prog} ") and f"{prog} --help-all" in short
    assert "--learning_rate LEARNING_RATE" not in short and len(short.splitlines()) < 120
    assert main([*words, "--help-all"]) == 0
    full = capsys.readouterr().out
    assert "--learning_rate LEARNING_RATE" in full and len(full.splitlines()) > 300


def test_argparse_commands_have_help(capsys) -> None:
    for words in (["convert"], ["export"], ["qa", "predict"], ["demo"]):
        assert main([*words, "-h"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: {' '.join(['longify', *words])}")


def test_version(capsys) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"longify {longify.__version__}"


def test_bad_flag_value_is_one_line(capsys) -> None:
    assert main(["pretrain", "--max_steps", "abc", "--output_dir", "x"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "longify: error: argument --max_steps/--max-steps: invalid int value: 'abc'"


def test_debug_anywhere(tmp_path, capsys) -> None:
    missing = tmp_path / "no-such-model"
    assert main(["convert", str(missing), str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    for argv in (["--debug", "convert", str(missing), "o"], ["convert", str(missing), "o", "--debug"]):
        with pytest.raises(LongifyError):
            main(argv)


def test_trainingarguments_debug_value_stays_with_the_command() -> None:
    flags, rest = split_global_flags(["pretrain", "--debug", "underflow_overflow", "-q"])
    assert rest == ["pretrain", "--debug", "underflow_overflow"] and flags.quiet and not flags.debug
    flags, rest = split_global_flags(["pretrain", "--output_dir", "o", "--debug"])
    assert rest == ["pretrain", "--output_dir", "o"] and flags.debug


def test_setup_logging_adds_its_filter_once() -> None:
    import logging

    from longify.cli import setup_logging

    log = logging.getLogger("transformers.models.longformer.modeling_longformer")
    for _ in range(3):
        setup_logging()
    assert len(log.filters) == 1
