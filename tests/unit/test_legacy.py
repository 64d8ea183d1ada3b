"""Dropped transformers flags are translated, each with one log line, never silently ignored."""

from __future__ import annotations

import logging

from longify.legacy import config_to_argv, translate_legacy_args


def test_seed_flags_translated(caplog) -> None:
    argv = [
        "--output_dir", "o", "--logging_dir", "logs/x", "--evaluate_during_training", "--overwrite_output_dir",
        "--per_gpu_train_batch_size=12", "--per_gpu_eval_batch_size", "2", "--fp16", "--do_lower_case",
        "--model_type", "roberta", "--seed", "42",
    ]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="longify.legacy"):
        t = translate_legacy_args(argv, cuda_available=False)
    assert t.argv == [
        "--output_dir", "o", "--eval_strategy", "steps", "--per_device_train_batch_size", "12",
        "--per_device_eval_batch_size", "2", "--seed", "42",
    ]  # fmt: skip
    assert t.extras == {
        "logging_dir": "logs/x",
        "overwrite_output_dir": True,
        "do_lower_case": True,
        "model_type": "roberta",
    }
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 8  # one line per translated flag, --fp16 included
    assert any(m.startswith("--fp16: no CUDA") for m in messages)
    assert any("--logging_dir (dropped in transformers 5)" in m for m in messages)


def test_fp16_kept_with_cuda() -> None:
    assert translate_legacy_args(["--fp16"], cuda_available=True).argv == ["--fp16"]


def test_config_to_argv() -> None:
    cfg = {"do_train": True, "learning_rate": 3e-5, "overwrite_output_dir": False, "copy_global_projections": False,
           "report_to": ["tensorboard"], "tokenizer_name": None}  # fmt: skip
    assert config_to_argv(cfg) == [
        "--do_train", "--learning_rate", "3e-05", "--copy_global_projections", "false", "--report_to", "tensorboard",
    ]  # fmt: skip


def test_fp16_with_a_value_on_cpu() -> None:
    # a config file's `fp16: false` becomes `--fp16 false`: dropped whole, and without the note
    t = translate_legacy_args(["--fp16", "false", "--seed", "1"], cuda_available=False)
    assert t.argv == ["--seed", "1"] and t.notes == []
    t = translate_legacy_args(["--fp16=true", "--do_train"], cuda_available=False)
    assert t.argv == ["--do_train"] and len(t.notes) == 1
    t = translate_legacy_args(["--fp16", "true"], cuda_available=True)
    assert t.argv == ["--fp16", "true"]
