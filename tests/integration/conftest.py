"""Fixtures shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import long_squad, tiny_qa_setup
from longify.qa.commands import qa_train_main


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 256-position tiny Longformer, EASY SQuAD files, and that model fine-tuned for 2 steps in
    64-token windows with stride 16 and questions cut to 20 tokens (not the defaults 384 / 128 / 64)."""
    s = tiny_qa_setup(tmp_path_factory.mktemp("trial"), 16, 10)
    trained = s["root"] / "trained"
    argv = ["--model_name_or_path", str(s["model"]), "--do_train", "--train_file", str(s["train"]),
            "--max_steps", "2", "--per_device_train_batch_size", "4", "--learning_rate", "1e-2",
            "--max_seq_length", "64", "--doc_stride", "16", "--max_query_length", "20", "--seed", "3",
            "--save_strategy", "no", "--report_to", "none", "--output_dir", str(trained)]  # fmt: skip
    assert qa_train_main(argv) == 0
    return {**s, "trained": trained, "long": long_squad(s["root"] / "long.json", 10, seed=7)}
