"""Knowing the CPU: ``longify.cpu`` names its capability, native bf16 and threads; ``--bf16`` on a CPU without
native bf16 is refused in one line unless ``--bf16_on_emulated_cpu``; ``--fp16``'s hint suggests bf16 only
where the CPU has it; run records and benchmarks name the CPU. Forced bf16 runs:
tests/integration/test_cpu_kind_runs.py.

The CPU is faked through ``longify.cpu.probe`` (never by timing), so each branch runs on any machine.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path
from types import ModuleType

import pytest
import torch

import longify.cpu
from helpers import REPO, fake_cpu
from longify.cli import main
from longify.cpu import FORCE_FLAG, CpuInfo, cpu_info
from longify.errors import LongifyError
from longify.hfargs import precision
from longify.mlm.args import parse_pretrain_args, pretrain_parser
from longify.qa.args import parse_qa_args, qa_parser
from longify.qa.pipeline import run_record
from longify.runargs import defining_args

AVX2 = ("AVX2", False)
AVX512_BF16 = ("AVX512", True)
PRETRAIN = ["pretrain", "--model_name_or_path", "m", "--output_dir", "o", "--train_file_path", "t.raw",
            "--do_train", "--report_to", "none"]  # fmt: skip
QA = ["qa", "train", "--model_name_or_path", "m", "--output_dir", "o", "--train_file", "t.json", "--do_train",
      "--report_to", "none"]  # fmt: skip


def test_cpu_info_is_what_torch_says() -> None:
    info = cpu_info()
    assert info.capability == torch.backends.cpu.get_cpu_capability()
    assert info.native_bf16 is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert info.threads == torch.get_num_threads()
    assert info.record() == {
        "capability": info.capability,
        "native_bf16": info.native_bf16,
        "threads": info.threads,
    }
    assert info.capability in info.describe()


@pytest.mark.parametrize("command", [PRETRAIN, QA], ids=["pretrain", "qa-train"])
@pytest.mark.parametrize("bf16", [["--bf16"], ["--bf16", "true"], ["--bf16=1"]])
def test_bf16_on_an_emulating_cpu_is_one_line_exit_2(
    command: list[str], bf16: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cpu(monkeypatch, AVX2)
    assert main([*command, *bf16]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("longify: error: --bf16: this CPU (AVX2) has no native bf16"), err
    assert "7-9x slower than fp32" in err[0] and "measured on an AVX2" in err[0] and FORCE_FLAG in err[0]


def test_bf16_in_a_config_file_is_refused_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_cpu(monkeypatch, AVX2)
    config = tmp_path / "run.yaml"
    config.write_text("model_name_or_path: m\noutput_dir: o\ntrain_file_path: t.raw\nbf16: true\n")
    assert main(["pretrain", str(config)]) == 2
    assert "--bf16: this CPU (AVX2) has no native bf16" in capsys.readouterr().err


def test_the_forcing_flag_parses_and_is_not_a_defining_argument(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cpu(monkeypatch, AVX2)
    pre = parse_pretrain_args(
        ["--model_name_or_path", "m", "--train_file_path", "t", "--output_dir", str(tmp_path), "--bf16", FORCE_FLAG]
    )  # fmt: skip
    assert pre.training.bf16 and pre.model.bf16_on_emulated_cpu and precision(pre.training) == "bf16-autocast"
    defining = defining_args([asdict(pre.model), asdict(pre.data)], pre.training)
    assert "--bf16" in defining and FORCE_FLAG not in defining  # rerunning without it is the same run
    qa = parse_qa_args(
        ["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--bf16", FORCE_FLAG, "true"]
    )
    assert qa.training.bf16 and qa.model.bf16_on_emulated_cpu


def test_bf16_on_a_native_cpu_parses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_cpu(monkeypatch, AVX512_BF16)
    pre = parse_pretrain_args(
        ["--model_name_or_path", "m", "--train_file_path", "t", "--output_dir", str(tmp_path), "--bf16"]
    )
    assert pre.training.bf16 and pre.training.use_cpu and not pre.model.bf16_on_emulated_cpu
    qa = parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--bf16"])
    assert precision(qa.training) == "bf16-autocast"


def test_bf16_on_cuda_is_not_checked_unless_use_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from longify.hfargs import check_cpu_bf16

    monkeypatch.setattr(longify.cpu, "probe", lambda: AVX2)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    check_cpu_bf16(["--bf16"])  # the GPU runs it
    check_cpu_bf16(["--bf16", "--use_cpu", "false"])
    with pytest.raises(LongifyError, match="--bf16: this CPU"):
        check_cpu_bf16(["--bf16", "--use_cpu", "true"])
    check_cpu_bf16(["--bf16", "false"])  # no bf16 asked


@pytest.mark.parametrize(
    ("kind", "suggests_bf16"), [(AVX2, False), (AVX512_BF16, True)], ids=["avx2", "avx512-bf16"]
)
def test_the_fp16_hint_suggests_bf16_only_where_native(
    kind: tuple[str, bool], suggests_bf16: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cpu(monkeypatch, kind)
    qa = parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--fp16"])
    (note,) = [n for n in qa.notes if n.startswith("--fp16: no CUDA device here; running in fp32")]
    assert ("--bf16 runs bf16 autocast on the CPU" in note) is suggests_bf16, note
    if not suggests_bf16:
        assert "AVX2" in note and "no native bf16" in note and "--bf16" not in note


@pytest.mark.parametrize("stage", ["pretrain", "train", "evaluate"])
def test_study_blocks_take_the_forcing_flag(stage: str) -> None:
    from longify.study.flags import bool_argv, flag_problems

    assert flag_problems({"bf16": True, "bf16_on_emulated_cpu": True}, stage, "x") == []
    assert flag_problems({"bf16_on_emulated_cpu": "maybe"}, stage, "x") == [
        "x.bf16_on_emulated_cpu: expected true or false, got 'maybe'"
    ]
    argv = bool_argv(stage, "bf16_on_emulated_cpu", True)
    assert argv == [FORCE_FLAG, "true"]
    parser = pretrain_parser() if stage == "pretrain" else qa_parser()
    base = ["--model_name_or_path", "m", "--train_file_path", "t"] if stage == "pretrain" else []
    model, *_ = parser.parse_args_into_dataclasses([*base, *argv], look_for_args_file=False)
    assert model.bf16_on_emulated_cpu is True


def test_qa_run_record_names_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, one_thread) -> None:
    fake_cpu(monkeypatch, AVX2)
    record = run_record(parse_qa_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path)]))
    assert record["cpu"] == {"capability": "AVX2", "native_bf16": False, "threads": 1}
    assert list(record).index("cpu") == list(record).index("precision") + 1


def test_conversion_record_names_the_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_sources: dict[str, Path], one_thread
) -> None:
    from longify.convert import convert

    monkeypatch.setattr(longify.cpu, "probe", lambda: AVX512_BF16)
    convert(str(tiny_sources["roberta"]), tmp_path / "long", max_pos=128, attention_window=32)
    record = json.loads((tmp_path / "long" / "conversion.json").read_text())
    assert record["cpu"] == {"capability": "AVX512", "native_bf16": True, "threads": 1}


def _bench(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A benchmark script as a module (registered for the test: its dataclasses look themselves up)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def test_bench_bf16_cases_skip_only_on_an_emulating_cpu() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from cpu_kind import bf16_skipped
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    avx2, native = CpuInfo("AVX2", False, 2), CpuInfo("AVX512", True, 2)
    line = bf16_skipped(avx2)
    assert line is not None and "AVX2" in line and "--bf16-on-emulated-cpu" in line
    assert bf16_skipped(native) is None
    assert bf16_skipped(avx2, small=True) is None and bf16_skipped(avx2, forced=True) is None


def test_bench_attention_names_the_cpu_and_skips_bf16_there(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """On an AVX2 CPU ``--bf16`` prints the CPU and a skip line, and times nothing (emulated bf16 would take many minutes)."""
    bench = _bench("bench_attention", monkeypatch)
    monkeypatch.setattr(longify.cpu, "probe", lambda: AVX2)
    asked: list[bool] = []
    monkeypatch.setattr(
        bench, "rates", lambda bf16=True: asked.append(bf16) or {"fp32": 100.0, "bf16": math.nan}
    )

    def no_timing(*args: object, **kwargs: object) -> None:
        raise AssertionError("a bf16 case was timed")

    monkeypatch.setattr(bench, "time_all", no_timing)
    monkeypatch.setattr(sys, "argv", ["bench_attention.py", "--bf16", "--hidden", "768", "--no-memory"])
    bench.main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("# CPU AVX2, no native bf16"), out
    assert any(line.startswith("# bf16 cases skipped: this CPU (AVX2)") for line in out), out
    assert asked == [False]  # nor its matmul rate (minutes where bf16 is emulated)


def test_bench_qa_eval_names_the_cpu_in_its_header_and_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _bench("bench_qa_eval", monkeypatch)
    monkeypatch.setattr(longify.cpu, "probe", lambda: AVX2)
    args = bench.parse(["--precisions", "fp32,bf16"])
    assert args.precisions == ["fp32"] and "bf16 cases skipped" in args.skipped
    with pytest.raises(SystemExit):
        bench.parse(["--precisions", "bf16"])
    assert bench.parse(["--precisions", "bf16", "--bf16-on-emulated-cpu"]).precisions == ["bf16"]
    capsys.readouterr()
    threads = torch.get_num_threads()
    try:
        out = bench.main(["--quick", "--threads", "1", "--impls", "fast"])
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("# CPU AVX2, no native bf16")
    assert out["cpu"] == {"capability": "AVX2", "native_bf16": False, "threads": 1}
    assert json.loads(printed[-1])["cpu"] == out["cpu"]
    assert {r["precision"] for r in out["results"]} == {"fp32", "bf16"}  # --quick: tiny bf16 runs anywhere


def test_bench_targets_times_every_target_against_the_short_model_and_plots(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``bench_targets.py --quick``: a row per target and length, the cost per token against the short model of
    the same run, the attention that ran, the CPU in the header and the JSON, no bf16 where it is emulated,
    and a PNG."""
    bench = _bench("bench_targets", monkeypatch)
    monkeypatch.setattr(longify.cpu, "probe", lambda: AVX2)
    rows = bench.main(["--quick", "--lengths", "512,1024", "--json", str(tmp_path / "b.json"),
                       "--plot", str(tmp_path / "b.png")])  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("# CPU AVX2, no native bf16") and "bf16 cases skipped" in printed[1]
    assert [(r.target, r.length) for r in rows] == [("short", 512)] + [
        (t, n) for t in ("longformer", "full", "bigbird") for n in (512, 1024)
    ]
    assert {r.dtype for r in rows} == {"fp32"} and rows[0].per_token_vs_short == 1.0
    for r in rows:
        assert r.seconds > 0 and r.per_token_vs_short == pytest.approx(r.ms_per_token / rows[0].ms_per_token)
    assert {r.attention for r in rows if r.target == "bigbird"} == {"block_sparse"}  # quick blocks: 16
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved["cpu"]["capability"] == "AVX2" and len(saved["rows"]) == len(rows)
    assert (tmp_path / "b.png").read_bytes()[:4] == b"\x89PNG"
