"""Every stage after `convert` on every long target (longformer, full, bigbird), from a tiny RoBERTa (and a tiny
BERT for `full`): `pretrain` for 3 steps, killed after its checkpoint of step 2 and resumed, ends with the
weights, loss and metrics of an uninterrupted run; `export` gives the target's own class; `qa train`, `qa
evaluate` and `qa predict` run on the pretrained model with the target's QA class; a BigBird's saved configs
say block_sparse after pretraining and after QA training.

Each killed run is a fork of this process, single-threaded like the reference run, so that the weights can
be compared bit for bit (as in test_training_recipe.py)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import TrainerCallback

from helpers import killed_in_fork, read_json, same_weights, write_squad, write_wikitext
from longify.cli import main
from longify.convert import convert
from longify.mlm.args import parse_pretrain_args
from longify.mlm.train import pretrain
from longify.qa.predict import predict
from longify.tiny import save_tiny

MAX_POS = 128
BIGBIRD = [
    "--target",
    "bigbird",
    "--bigbird_block_size",
    "8",
    "--num_random_blocks",
    "1",
]  # full up to 56 tokens
# case -> (family, pretrain flags, convert first with these options (the model is then used as it is) or None)
CASES: dict[str, tuple[str, list[str], dict[str, Any] | None]] = {
    "longformer": ("roberta", ["--attention_window", "32"], None),
    "full-roberta": ("roberta", [], {"target": "full"}),
    "full-bert": ("bert", ["--target", "full"], None),
    "bigbird": ("roberta", BIGBIRD, None),
}
CLASSES = {
    "longformer": ("LongformerForMaskedLM", "LongformerForQuestionAnswering"),
    "full-roberta": ("RobertaForMaskedLM", "RobertaForQuestionAnswering"),
    "full-bert": ("BertForMaskedLM", "BertForQuestionAnswering"),
    "bigbird": ("BigBirdForMaskedLM", "BigBirdForQuestionAnswering"),
}


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread, here and in the forks, for every run (bit-for-bit comparisons)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("targets-stages")
    return {
        "root": root,
        "wiki": write_wikitext(root / "wiki"),
        "roberta": save_tiny("roberta", root / "roberta", max_len=64),
        "bert": save_tiny("bert", root / "bert", max_len=64),
        "train": write_squad(root / "train.json", 8, 1),
        "dev": write_squad(root / "dev.json", 4, 2),
    }


def pretrain_argv(model: Path, out: Path, wiki: Path, cache: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path", str(model), "--output_dir", str(out), "--max_pos", str(MAX_POS), *extra,
        "--train_file_path", str(wiki / "wiki.train.raw"), "--val_file_path", str(wiki / "wiki.valid.raw"),
        "--do_train", "--do_eval", "--save_steps", "2", "--logging_steps", "1", "--max_steps", "3",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "2", "--learning_rate", "1e-3",
        "--seed", "7", "--report_to", "none", "--max_eval_blocks", "2", "--data_cache_dir", str(cache),
        "--disable_tqdm", "true",
    ]  # fmt: skip


class KillAfterSave(TrainerCallback):
    """SIGKILLs the process once the checkpoint of ``step`` is complete."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module", params=list(CASES))
def pretrained(request: pytest.FixtureRequest, data: dict[str, Path]) -> dict[str, Any]:
    """One case pretrained twice: uninterrupted, and killed after checkpoint-2 then resumed."""
    case = request.param
    family, flags, convert_first = CASES[case]
    root = data["root"] / case
    model = data[family]
    if convert_first is not None:
        model = root / "converted-first"
        convert(str(data[family]), model, max_pos=MAX_POS, **convert_first)

    def argv(out: Path) -> list[str]:
        return pretrain_argv(model, out, data["wiki"], root / "cache", *flags)

    reference = pretrain(parse_pretrain_args(argv(root / "reference")))
    killed_in_fork(
        lambda: pretrain(parse_pretrain_args(argv(root / "resumed")), callbacks=[KillAfterSave(2)])
    )
    assert (root / "resumed" / "checkpoint-2").is_dir() and not (root / "resumed" / "config.json").exists()
    resumed = pretrain(parse_pretrain_args(argv(root / "resumed")))
    return {"case": case, "root": root, "reference": reference, "resumed": resumed}


def test_pretrain_killed_and_resumed_ends_as_an_uninterrupted_run(pretrained: dict[str, Any]) -> None:
    root, ref, res = pretrained["root"], pretrained["reference"], pretrained["resumed"]
    same_weights(root / "reference", root / "resumed")
    assert res["train_loss"] == ref["train_loss"] and res["final"] == ref["final"] and res["steps"] == 3
    config = read_json(root / "resumed" / "config.json")
    assert config["architectures"] == [CLASSES[pretrained["case"]][0]]
    run = read_json(root / "resumed" / "longify_run.json")
    assert run["target"] == pretrained["case"].split("-")[0]
    if pretrained["case"] == "bigbird":
        assert config["attention_type"] == "block_sparse"
        assert run["attention"] == "BigBirdBlockSparseAttention"  # blocks of 128 tokens: sparse


def test_export_gives_the_targets_own_class(pretrained: dict[str, Any]) -> None:
    """A checkpoint of each target exports as its own masked-LM class, with the target named on its card."""
    root = pretrained["root"]
    out = root / "exported"
    assert main(["export", str(root / "resumed" / "checkpoint-2"), str(out)]) == 0
    config = read_json(out / "config.json")
    assert config["architectures"] == [CLASSES[pretrained["case"]][0]]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"tags: [{config['model_type']}, longify, fill-mask]" in card
    if pretrained["case"] == "bigbird":
        assert config["attention_type"] == "block_sparse"


def test_qa_train_evaluate_and_predict_on_the_pretrained_model(
    pretrained: dict[str, Any], data: dict[str, Path]
) -> None:
    """The target's QA class is trained and scored (Longformer with its global mask, BigBird on windows that
    run full attention and ones that run block-sparse), and answers one question."""
    root, case = pretrained["root"], pretrained["case"]
    model, qa = root / "resumed", root / "qa"
    argv = [
        "--model_name_or_path", str(model), "--do_train", "--do_eval", "--seed", "42", "--train_file",
        str(data["train"]), "--predict_file", str(data["dev"]), "--per_device_train_batch_size", "4",
        "--learning_rate", "5e-3", "--num_train_epochs", "1", "--max_seq_length", str(MAX_POS), "--doc_stride",
        "32", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(qa),
    ]  # fmt: skip
    assert main(["qa", "train", *argv]) == 0
    config = read_json(qa / "config.json")
    assert config["architectures"] == [CLASSES[case][1]]
    assert read_json(qa / "results.json")["target"] == case.split("-")[0]
    if case == "bigbird":
        assert config["attention_type"] == "block_sparse"
    evaluated = root / "qa-eval"
    assert main(["qa", "evaluate", "--model_name_or_path", str(qa), "--predict_file", str(data["dev"]),
                 "--max_seq_length", str(MAX_POS), "--output_dir", str(evaluated)]) == 0  # fmt: skip
    results = read_json(evaluated / "results.json")
    assert 0.0 <= results["average"]["f1"] <= 100.0
    answer = predict(str(qa), "Who founded it?", "The town was founded in 1203 by Maria Holt. " * 12)
    assert answer["windows"] >= 1 and isinstance(answer["answer"], str)
    assert json.loads((qa / "config.json").read_text())["architectures"] == [CLASSES[case][1]]
