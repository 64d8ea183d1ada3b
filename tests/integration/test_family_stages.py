"""The stages after `convert` on the families only the `full` target takes or whose layout is not BERT's
(DistilBERT, ELECTRA, DeBERTa-v2, ALBERT): `pretrain` converts the tiny source and trains 3 steps, then `qa
train` and `qa evaluate` run on the result with the family's own QA class.

Before this test, DistilBERT's pretraining died writing its run record (its layers are not under
``encoder.layer``) and DeBERTa-v2's QA training was refused (no token-type table, which QA's tokenizer check
took for a one-type table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from helpers import read_json, write_squad, write_wikitext
from longify.cli import main
from longify.tiny import save_tiny

MAX_POS = 128
# family -> (masked-LM class, QA class, the attention its run record names)
FAMILIES = {
    "distilbert": ("DistilBertForMaskedLM", "DistilBertForQuestionAnswering", "DistilBertSelfAttention"),
    "electra": ("ElectraForMaskedLM", "ElectraForQuestionAnswering", "ElectraSelfAttention"),
    "deberta-v2": ("DebertaV2ForMaskedLM", "DebertaV2ForQuestionAnswering", "DisentangledSelfAttention"),
    "albert": ("AlbertForMaskedLM", "AlbertForQuestionAnswering", "AlbertAttention"),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("family-stages")
    return {
        "root": root,
        "wiki": write_wikitext(root / "wiki"),
        "train": write_squad(root / "train.json", 8, 1),
        "dev": write_squad(root / "dev.json", 4, 2),
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pretrain_then_qa_train_and_evaluate(family: str, data: dict[str, Path]) -> None:
    mlm_class, qa_class, attention = FAMILIES[family]
    root = data["root"] / family
    source = save_tiny(family, root / "source", max_len=64)
    pretrained, qa, evaluated = root / "pretrained", root / "qa", root / "evaluated"
    wiki = data["wiki"]
    assert main([
        "pretrain", "--model_name_or_path", str(source), "--output_dir", str(pretrained), "--target", "full",
        "--max_pos", str(MAX_POS), "--train_file_path", str(wiki / "wiki.train.raw"), "--val_file_path",
        str(wiki / "wiki.valid.raw"), "--do_train", "--do_eval", "--max_steps", "3", "--learning_rate", "1e-3",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--max_eval_blocks", "2",
        "--data_cache_dir", str(root / "cache"), "--report_to", "none", "--disable_tqdm", "true",
    ]) == 0  # fmt: skip
    config = read_json(pretrained / "config.json")
    assert config["architectures"] == [mlm_class] and config["max_position_embeddings"] >= MAX_POS
    run: dict[str, Any] = read_json(pretrained / "longify_run.json")
    assert run["target"] == "full" and run["attention"].startswith(attention)
    metrics = read_json(pretrained / "pretrain_metrics.json")
    assert metrics["steps"] == 3

    assert main([
        "qa", "train", "--model_name_or_path", str(pretrained), "--do_train", "--do_eval", "--train_file",
        str(data["train"]), "--predict_file", str(data["dev"]), "--per_device_train_batch_size", "4",
        "--learning_rate", "5e-3", "--num_train_epochs", "1", "--max_seq_length", str(MAX_POS), "--doc_stride",
        "32", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(qa),
    ]) == 0  # fmt: skip
    assert read_json(qa / "config.json")["architectures"] == [qa_class]
    assert main([
        "qa", "evaluate", "--model_name_or_path", str(qa), "--predict_file", str(data["dev"]),
        "--max_seq_length", str(MAX_POS), "--output_dir", str(evaluated),
    ]) == 0  # fmt: skip
    results = read_json(evaluated / "results.json")
    assert 0.0 <= results["average"]["f1"] <= 100.0
    assert results["average"] == read_json(qa / "results.json")["average"]  # the same model, the same set
