"""Every shipped config parses with its command's parser (litgpt's test_config_hub idea)."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import REPO
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.qa.args import parse_qa_args

CONFIGS = sorted(  # study specs (# longify study ...) are planned in test_study_plan.py
    p for p in (REPO / "configs").glob("*.yaml") if not p.read_text().startswith("# longify study")
)
PARSERS = {"pretrain": parse_pretrain_args, "qa": parse_qa_args}
ENV = ("MODEL_DIR", "DATA_DIR", "LOG_DIR", "LONG_MODEL", "SQUAD_DIR", "OUT_DIR", "QA_MODEL", "XQUAD_DIR")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_names_its_command(path: Path, monkeypatch, tmp_path) -> None:
    for name in ENV:
        monkeypatch.setenv(name, str(tmp_path / name.lower()))
    command = path.read_text().splitlines()[0]
    kind = path.name.split("-")[0]
    assert command.startswith(f"# longify {kind} ") and command.endswith(f"configs/{path.name}")
    args = PARSERS[kind]([str(path)])
    assert str(tmp_path) in args.training.output_dir  # ${VAR} expanded
    assert args.training.seed == 42


def test_thesis_configs_carry_the_seed_flags(monkeypatch, tmp_path) -> None:
    for name in ENV:
        monkeypatch.setenv(name, str(tmp_path))
    args = parse_pretrain_args(
        [str(REPO / "configs" / "pretrain-xlm-roberta-base-4096.yaml"), "--seed", "1337"]
    )
    t = args.training
    assert args.model.model_name_or_path == "xlm-roberta-base" and args.model.max_pos == 4096
    assert (t.max_steps, t.gradient_accumulation_steps, t.learning_rate, t.seed) == (6000, 64, 3e-5, 1337)
    assert t.eval_strategy == "steps" and args.overwrite_output_dir is False


def test_unset_variable_is_one_clear_error(monkeypatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LongifyError, match=r"field model_name_or_path uses \$LONG_MODEL, which is not set"):
        parse_qa_args([str(REPO / "configs" / "qa-squad-long.yaml")])
