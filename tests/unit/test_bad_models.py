"""A broken or missing model source is one line naming the file or folder, exit 2, for every command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import REPO
from longify.cli import main


def _broken(src: Path, tmp_path: Path, how: str) -> Path:
    bad = tmp_path / how
    shutil.copytree(src, bad)
    weights = bad / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\x00garbage" * 100)
    return bad


SQUAD = REPO / "tests" / "fixtures" / "qa" / "squad" / "dev-v1.1.json"
WIKI = REPO / "src" / "longify" / "demo" / "data" / "wiki.valid.raw"
SIX = ["convert", "pretrain", "export", "qa train", "qa evaluate", "qa predict"]


def _commands(model: Path, out: Path) -> dict[str, list[str]]:
    return {
        "convert": ["convert", str(model), str(out), "--max-pos", "128", "--attention-window", "32"],
        "qa predict": ["qa", "predict", "--model", str(model), "--question", "q", "--context", "c"],
        "qa train": ["qa", "train", "--model_name_or_path", str(model), "--output_dir", str(out),
                     "--train_file", str(SQUAD), "--do_train", "--report_to", "none"],
        "pretrain": ["pretrain", "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", "128",
                     "--attention_window", "32", "--train_file_path", str(WIKI), "--do_train", "--max_steps", "1",
                     "--report_to", "none"],
        "export": ["export", str(model), str(out)],
        "qa evaluate": ["qa", "evaluate", "--model_name_or_path", str(model), "--output_dir", str(out),
                        "--predict_file", str(SQUAD), "--report_to", "none"],
    }  # fmt: skip


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("command", SIX)
def test_corrupt_weights_are_named(command, how, tiny_sources, tmp_path, capsys) -> None:
    bad = _broken(tiny_sources["roberta"], tmp_path, how)
    out = tmp_path / "out"
    assert main(_commands(bad, out)[command]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{bad / 'model.safetensors'}: corrupt or truncated safetensors file" in err
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", SIX)
def test_missing_local_path_is_not_called_a_hub_id(command, tmp_path, capsys) -> None:
    missing = tmp_path / "models" / "nope"
    assert main(_commands(missing, tmp_path / "out")[command]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "hub" not in err, err
    assert ("no config.json" if command == "export" else f"{missing}: no such directory") in err


@pytest.mark.parametrize("family", ["roberta", "bert"])
def test_source_without_mlm_head_is_recorded_not_verified_silently(
    family, tiny_sources, tmp_path, capsys
) -> None:
    from transformers import AutoModel, AutoTokenizer

    bare = tmp_path / "bare"  # an encoder saved without its MLM head (sentence-transformers layout)
    AutoModel.from_pretrained(tiny_sources[family]).save_pretrained(bare)
    AutoTokenizer.from_pretrained(tiny_sources[family]).save_pretrained(bare)
    out = tmp_path / "long"
    assert main(["convert", str(bare), str(out), "--max-pos", "128", "--attention-window", "32"]) == 0
    assert "tensors start random (the source lacked them)" in capsys.readouterr().out
    record = json.loads((out / "conversion.json").read_text())
    head = {"roberta": "lm_head.", "bert": "cls.predictions."}[family]
    assert record["new_weights"] and all(k.startswith(head) for k in record["new_weights"])
    assert record["verification"]["max_abs_diff_logits"] is None  # a random head's logits prove nothing
    assert record["verification"]["max_abs_diff_hidden"] < 1e-4
    # the random head is drawn from --seed: a rerun converts to the same weights, another seed does not
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["convert", str(bare), str(again), "--max-pos", "128", "--attention-window", "32"]) == 0
    assert main(["convert", str(bare), str(other), "--max-pos", "128", "--attention-window", "32",
                 "--seed", "1"]) == 0  # fmt: skip
    weights = [load_file(d / "model.safetensors") for d in (out, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    changed = [k for k in weights[0] if not torch.equal(weights[0][k], weights[2][k])]
    assert changed and all(k.startswith("lm_head.") for k in changed), changed
    # a source with its head: nothing new
    assert main(["convert", str(tiny_sources[family]), str(tmp_path / "ok"), "--max-pos", "128",
                 "--attention-window", "32"]) == 0  # fmt: skip
    ok = json.loads((tmp_path / "ok" / "conversion.json").read_text())
    assert ok["new_weights"] == [] and ok["verification"]["max_abs_diff_logits"] is not None


def test_predict_refuses_a_model_without_qa_head(tiny_sources, tmp_path, capsys) -> None:
    argv = [
        "qa",
        "predict",
        "--model",
        str(tiny_sources["roberta"]),
        "--question",
        "Who?",
        "--context",
        "Ann.",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "has no question-answering head (no qa_outputs weights)" in err and "--allow-new-head" in err
    assert main([*argv, "--allow-new-head", "--doc-stride", "16"]) == 0  # 128 does not fit 64 tokens
    assert json.loads(capsys.readouterr().out)["answer"] is not None
