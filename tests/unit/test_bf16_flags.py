"""``--bf16`` and ``--fp16`` on a CPU, as parsed: ``--bf16`` is true and brings ``use_cpu`` (which transformers 5
needs to accept bf16 without a GPU) for ``pretrain`` and ``qa train``; ``--fp16`` without CUDA stays fp32 and
says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import longify.cpu
from longify.hfargs import flag_is_true, machine_defaults, precision
from longify.mlm.args import parse_pretrain_args
from longify.qa.args import parse_qa_args
from longify.qa.pipeline import autocast_for


@pytest.fixture(autouse=True)
def native_bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bf16 path itself is tested here, as on a CPU with native bf16: without it (AVX2 only) ``--bf16`` is
    refused unless forced (``test_cpu_kind.py``)."""
    monkeypatch.setattr(longify.cpu, "probe", lambda: ("AVX512", True))


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--bf16"], True),
        (["--bf16", "true", "--seed", "1"], True),
        (["--bf16=1"], True),
        (["--bf16", "--seed", "1"], True),
        (["--bf16", "false"], False),
        (["--bf16=no"], False),
        (["--bf16", "--bf16", "false"], False),  # the last one counts, as in argparse
        (["--bf16_full_eval"], False),
        ([], False),
    ],
)
def test_flag_is_true(argv: list[str], expected: bool) -> None:
    assert flag_is_true(argv, "--bf16") is expected


def test_bf16_on_cpu_adds_use_cpu(no_cuda: None) -> None:
    assert machine_defaults(["--bf16"])[-2:] == ["--use_cpu", "true"]
    assert "--use_cpu" not in machine_defaults(["--bf16", "false"])
    assert "--use_cpu" not in machine_defaults(["--bf16", "--use_cpu", "false"])  # the user's own value


def test_pretrain_and_qa_parse_bf16_on_cpu(no_cuda: None, tmp_path: Path) -> None:
    """``--bf16`` on a CPU parses for ``pretrain`` and ``qa train``: longify adds ``use_cpu``, without which
    transformers 5 refuses bf16 without a GPU."""
    pre = parse_pretrain_args(
        ["--model_name_or_path", "m", "--train_file_path", "t", "--output_dir", str(tmp_path), "--bf16"]
    )
    assert pre.training.bf16 and pre.training.use_cpu and precision(pre.training) == "bf16-autocast"
    qa = parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--bf16"])
    assert precision(qa.training) == "bf16-autocast"
    assert autocast_for(qa) is torch.bfloat16  # before: None without CUDA


def test_fp16_on_cpu_stays_fp32(no_cuda: None, tmp_path: Path) -> None:
    qa = parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--fp16"])
    assert not qa.training.fp16 and precision(qa.training) == "fp32" and autocast_for(qa) is None
    assert any(n.startswith("--fp16: no CUDA device here; running in fp32") for n in qa.notes)
    plain = parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path)])
    assert precision(plain.training) == "fp32" and autocast_for(plain) is None
