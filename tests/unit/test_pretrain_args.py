"""`longify pretrain`'s arguments: a YAML config file gives the same run as its flags; an unknown flag, an
unknown key in a config file and a missing text file are each one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import small_pretrain_argv, write_wikitext
from longify.cli import main
from longify.mlm.args import parse_pretrain_args


@pytest.fixture(scope="module")
def wiki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wikitext(tmp_path_factory.mktemp("wikitext-103-raw"))


def test_yaml_config(tiny_sources, wiki, tmp_path) -> None:
    cmd = small_pretrain_argv(tiny_sources["roberta"], tmp_path / "run", wiki, 4)
    cfg = {}
    i = 0
    while i < len(cmd):
        key = cmd[i][2:]
        if i + 1 < len(cmd) and not cmd[i + 1].startswith("--"):
            cfg[key] = cmd[i + 1]
            i += 2
        else:
            cfg[key] = True
            i += 1
    path = tmp_path / "run.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg))
    args = parse_pretrain_args([str(path), "--max_steps", "2"])
    assert args.training.max_steps == 2 and args.model.max_pos == 128


def test_bad_flags_one_line(tiny_sources, wiki, tmp_path, capsys) -> None:
    cmd = small_pretrain_argv(tiny_sources["roberta"], tmp_path / "run", wiki)
    assert main(["pretrain", *cmd, "--no_such_flag", "1"]) == 2
    assert "unknown flag(s): --no_such_flag 1" in capsys.readouterr().err
    config = tmp_path / "cfg.json"  # an unknown key in a config file: the file is named
    config.write_text(json.dumps({"bogus": 1}))
    assert main(["pretrain", str(config), *cmd]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.endswith(f"{config}: unknown key(s) bogus (not a flag of this command)")
        and len(err.splitlines()) == 1
    )
    bad = [*cmd]
    bad[bad.index("--train_file_path") + 1] = str(tmp_path / "missing.raw")
    assert main(["pretrain", *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.raw" in err
