"""Evaluation masks are the same with ``datasets`` worker processes (``num_proc``) as in one process."""

from __future__ import annotations

import pytest

from helpers import write_corpus
from longify.mlm.data import load_blocks, mask_for_eval
from longify.tiny import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer("roberta")


@pytest.fixture(scope="module")
def blocks(tmp_path_factory, tokenizer):
    tmp = tmp_path_factory.mktemp("eval")
    path, _ = write_corpus(tmp, "raw", n_articles=60)
    return load_blocks(str(path), tokenizer, 64, cache_dir=str(tmp / "c"))[0]


def test_eval_masks_are_the_same_with_worker_processes(blocks, tokenizer):
    one = mask_for_eval(blocks, tokenizer, seed=3)
    parallel = mask_for_eval(blocks, tokenizer, seed=3, num_proc=2)
    assert parallel["input_ids"] == one["input_ids"] and parallel["labels"] == one["labels"]
