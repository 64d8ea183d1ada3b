"""`longify convert` on the command line: bad input gets one clear line, exit code 2, and no OUT."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from longify.cli import main

# the package re-exports the function `convert`, which shadows the module of the same name
build_module = importlib.import_module("longify.convert.build")  # where the position table is built
convert_module = importlib.import_module("longify.convert.convert")


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_convert_ok_prints_one_summary_line(tiny_sources, tmp_path, capsys) -> None:
    out = tmp_path / "long"
    code = main(
        [
            "-q",
            "convert",
            str(tiny_sources["roberta"]),
            str(out),
            "--max-pos",
            "130",
            "--attention-window",
            "16",
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "verified" in lines[0] and str(out) in lines[0]
    assert (out / "model.safetensors").is_file()


def test_seed_style_underscore_flags(tiny_sources, tmp_path) -> None:
    out = tmp_path / "long"
    assert (
        main(
            [
                "-q",
                "convert",
                str(tiny_sources["bert"]),
                str(out),
                "--max_pos",
                "100",
                "--attention_window",
                "8",
            ]
        )
        == 0
    )


def _bad_cases(tiny_sources: dict[str, Path], tmp: Path) -> dict[str, tuple[list[str], str]]:
    gpt = tmp / "gpt2"
    gpt.mkdir()
    (gpt / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    broken = tmp / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    empty = tmp / "empty"
    empty.mkdir()
    afile = tmp / "afile.txt"
    afile.write_text("x")
    rob = str(tiny_sources["roberta"])
    return {
        "unknown model_type": (
            [str(gpt)],
            "model_type 'gpt2' is not supported; supported: albert, bert, camembert",
        ),
        "max_pos not larger": ([rob, "--max-pos", "64"], "--max-pos: must be larger than the source's 64"),
        "odd window": ([rob, "--max-pos", "128", "--attention-window", "7"], "--attention-window"),
        "zero window": ([rob, "--max-pos", "128", "--attention-window", "0"], "positive even"),
        "bad window list": (
            [rob, "--max-pos", "128", "--attention-window", "8,8,8"],
            "3 per-layer values but the model has 2",
        ),
        "missing SRC": ([str(tmp / "nope")], "nope"),
        "unreadable config": ([str(broken)], "broken"),
        "no config.json": ([str(empty)], "no config.json"),
        "SRC is a file": ([str(afile)], "must be a model directory"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "unknown model_type",
        "max_pos not larger",
        "odd window",
        "zero window",
        "bad window list",
        "missing SRC",
        "unreadable config",
        "no config.json",
        "SRC is a file",
    ],
)
def test_bad_input_one_line_exit_2_no_output(case: str, tiny_sources, tmp_path, capsys) -> None:
    argv, expected = _bad_cases(tiny_sources, tmp_path)[case]
    out = tmp_path / "out"
    code, err = _run(capsys, "-q", "convert", argv[0], str(out), *argv[1:])
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("longify: error: "), err
    assert expected in err
    assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_existing_output_refused_then_overwritten(tiny_sources, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    code, err = _run(
        capsys, "convert", str(tiny_sources["bert"]), str(out), "--max-pos", "100", "--attention-window", "8"
    )
    assert code == 2 and "--overwrite" in err and len(err.splitlines()) == 1
    assert (out / "keep.txt").read_text() == "precious"
    argv = [
        "-q",
        "convert",
        str(tiny_sources["bert"]),
        str(out),
        "--max-pos",
        "100",
        "--attention-window",
        "8",
    ]
    assert main([*argv, "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "conversion.json").is_file()
    assert _leftovers(tmp_path) == []


def test_failed_verification_leaves_nothing(tiny_sources, tmp_path, capsys, monkeypatch) -> None:
    real = build_module.extend_positions

    def shifted(table, **kw):  # an off-by-one position table: the classic conversion bug
        out = real(table, **kw)
        return out.roll(1, dims=0)

    monkeypatch.setattr(build_module, "extend_positions", shifted)
    out = tmp_path / "out"
    code, err = _run(
        capsys,
        "convert",
        str(tiny_sources["roberta"]),
        str(out),
        "--max-pos",
        "128",
        "--attention-window",
        "16",
    )
    assert code == 2 and "verification failed" in err and "--tolerance" in err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_interrupted_write_leaves_nothing(tiny_sources, tmp_path, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_module, "write_json_atomic", boom)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        convert_module.convert(str(tiny_sources["roberta"]), out, max_pos=128, attention_window=16)
    assert not out.exists() and _leftovers(tmp_path) == []
