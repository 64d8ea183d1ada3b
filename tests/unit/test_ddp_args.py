"""What a data-parallel run checks before it trains (no process started): a stale ``OUTPUT/converted`` and a
``--max_pos`` beyond a Longformer's positions are refused in one line; on CPU under torchrun the training arguments get
real DDP flags (``use_cpu``, gloo), and processes that would each train alone are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainingArguments

from helpers import ddp_files
from longify import hfargs
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import resolve_long_model


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return ddp_files(tmp_path_factory.mktemp("ddp"))


def _args(files: dict[str, Path], out: Path, *extra: str) -> Any:
    return parse_pretrain_args(
        ["--output_dir", str(out), "--val_file_path", str(files["root"] / "wiki.valid.raw"), *extra]
    )


def test_stale_conversion_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    """A rerun asking for other positions or windows than OUTPUT/converted holds: one line naming the flag
    and the folder (or a new conversion with --overwrite_output_dir), never the old model under a new label."""
    src = ["--model_name_or_path", str(files["source"])]
    first = _args(files, tmp_path, *src, "--max_pos", "128", "--attention_window", "32")
    converted = tmp_path / "converted"
    assert resolve_long_model(first) == str(converted)
    assert resolve_long_model(first) == str(converted)  # the same request reuses it
    for flag, value in (("--max_pos", "192"), ("--attention_window", "16")):
        other = {"--max_pos": "128", "--attention_window": "32", flag: value}
        args = _args(files, tmp_path, *src, *[x for kv in other.items() for x in kv])
        with pytest.raises(LongifyError) as err:
            resolve_long_model(args)
        message = str(err.value)
        assert "\n" not in message and flag in message and str(converted) in message
    redo = _args(
        files, tmp_path, *src, "--max_pos", "192", "--attention_window", "32", "--overwrite_output_dir"
    )
    resolve_long_model(redo)
    assert json.loads((converted / "conversion.json").read_text())["max_pos"] == 192
    assert json.loads((converted / "config.json").read_text())["max_position_embeddings"] == 192 + 2


def test_max_pos_beyond_a_longformer_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    """A Longformer is used as is: a --max_pos above its 128 usable positions is an error, not ignored;
    no --max_pos means its own positions (the 4096 default is for conversions)."""
    model = ["--model_name_or_path", str(files["long"])]
    with pytest.raises(LongifyError, match=r"--max_pos 256.*128"):
        resolve_long_model(_args(files, tmp_path, *model, "--max_pos", "256"))
    args = _args(files, tmp_path, *model)
    assert resolve_long_model(args) == str(files["long"]) and args.model.max_pos == 128
    args = _args(files, tmp_path, *model, "--max_pos", "64")
    assert resolve_long_model(args) == str(files["long"]) and args.model.max_pos == 64
    short = _args(files, tmp_path, "--model_name_or_path", str(files["source"]))
    assert short.model.max_pos is None  # resolved when converting


def test_cpu_torchrun_gets_real_ddp_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CPU under torchrun accelerate is data-parallel only with use_cpu (else DistributedType.NO)."""
    monkeypatch.setattr(hfargs.torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    extra = hfargs.machine_defaults(["--output_dir", "x"])
    assert extra[extra.index("--use_cpu") + 1] == "true" and extra[extra.index("--ddp_backend") + 1] == "gloo"
    assert "--use_cpu" not in hfargs.machine_defaults(["--use_cpu", "false"])  # the user's choice stands
    assert extra[extra.index("--ddp_find_unused_parameters") + 1] == "false"
    given = hfargs.machine_defaults(["--ddp_find_unused_parameters", "true"])
    assert "--ddp_find_unused_parameters" not in given  # the user's choice stands
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert "--use_cpu" not in hfargs.machine_defaults([])


def test_processes_that_would_train_alone_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """torchrun with N processes but no process group of N behind the training run: one line, no silent run."""
    targs = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(hfargs, "data_parallel_size", lambda t: 1)
    with pytest.raises(LongifyError, match="torchrun started 2 processes"):
        hfargs.check_data_parallel(targs)
    monkeypatch.setattr(hfargs, "data_parallel_size", lambda t: 2)
    hfargs.check_data_parallel(targs)
