"""The stages after `convert` see each model through its target: which target a saved model is, BigBird's
attention chosen per batch length (block-sparse again after a short batch), the QA batch each target needs,
and pretrain's `--target` flags and checks, each refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, GPT2Config, LongformerConfig, RobertaConfig
from transformers.models.big_bird.configuration_big_bird import BigBirdConfig

from helpers import write_squad
from longify.convert import convert
from longify.errors import LongifyError
from longify.loading import load_tokenizer
from longify.mlm.args import parse_pretrain_args
from longify.mlm.export import export_checkpoint
from longify.mlm.train import Pretrain, load_model, reusable_conversion, settle_source
from longify.qa.features import build_features, collator_for, uses_global_attention
from longify.qa.models import check_model_type, load_qa_model, model_max_length
from longify.qa.tasks import load_examples
from longify.targets import model_target, target_of
from longify.targets.bigbird import BlockSparseCalls
from longify.tiny import save_tiny

MAX_POS = 128
BIGBIRD = {"block_size": 8, "num_random_blocks": 1}  # full attention up to (5 + 2) * 8 = 56 tokens


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("targets-stages")
    source = save_tiny("roberta", root / "source", max_len=64)
    out = {"source": source}
    for target, extra in (("longformer", {"attention_window": 32}), ("full", {}), ("bigbird", BIGBIRD)):
        out[target] = root / target
        convert(str(source), out[target], max_pos=MAX_POS, target=target, verify=False, **extra)
    return out


def _args(tmp_path: Path, model: Path, *extra: str):
    text = tmp_path / "t.txt"
    text.write_text("some text\n", encoding="utf-8")
    return parse_pretrain_args(["--model_name_or_path", str(model), "--output_dir", str(tmp_path / "out"),
                                "--train_file_path", str(text), "--do_train", *extra])  # fmt: skip


# ------------------------------------------------------------------------------------- which target


@pytest.mark.parametrize(
    ("config", "name"),
    [
        (LongformerConfig(), "longformer"),
        (BigBirdConfig(), "bigbird"),
        (RobertaConfig(), "full"),
        (BertConfig(), "full"),
    ],
)
def test_target_of_names_the_target_of_a_checkpoint_class(config, name: str) -> None:
    assert target_of(config).name == name


def test_target_of_refuses_a_model_type_no_target_has() -> None:
    with pytest.raises(
        LongifyError, match=r"model_type 'gpt2' is no long target's; expected one of longformer"
    ):
        target_of(GPT2Config())


def test_a_family_class_is_full_only_with_a_longify_record(models: dict[str, Path], tmp_path: Path) -> None:
    """A converted `full` model (conversion.json), a checkpoint of a run that recorded `full`: long; the short
    source it came from (same class): not."""
    config = RobertaConfig.from_pretrained(models["full"])
    assert model_target(models["full"], config).name == "full"
    assert model_target(models["source"], RobertaConfig.from_pretrained(models["source"])) is None
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}), encoding="utf-8")
    (run / "longify_run.json").write_text(json.dumps({"target": "full"}), encoding="utf-8")
    assert model_target(run / "checkpoint-2", config).name == "full"
    assert model_target(models["bigbird"], BigBirdConfig.from_pretrained(models["bigbird"])).name == "bigbird"


# ------------------------------------------------------------------------------ BigBird's attention


def _sparse_calls(model: torch.nn.Module, length: int) -> int:
    ids = torch.randint(5, 200, (1, length))
    with BlockSparseCalls(model) as calls, torch.no_grad():
        model(input_ids=ids, token_type_ids=torch.zeros_like(ids))
    return calls.count


@pytest.mark.parametrize("stage", ["qa", "pretrain"])
def test_bigbird_runs_block_sparse_on_long_batches_after_a_short_one(
    models: dict[str, Path], stage: str
) -> None:
    """HF's BigBird switches itself to full attention for good on a short input; as the stages load it, every
    batch longer than its full-attention limit runs block-sparse attention again, in every layer."""
    path = str(models["bigbird"])
    model = (load_qa_model(path) if stage == "qa" else load_model(path, "fast")).eval()
    layers = model.config.num_hidden_layers
    assert _sparse_calls(model, MAX_POS) == layers
    assert _sparse_calls(model, 40) == 0  # 40 <= 56 tokens: full attention
    assert _sparse_calls(model, MAX_POS) == layers
    assert model.config.attention_type == "block_sparse"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_bigbird_trains_block_sparse_under_autocast(models: dict[str, Path], dtype: torch.dtype) -> None:
    """``--bf16`` / ``--fp16`` on a BigBird: HF's block-sparse attention (which fails under autocast as shipped)
    runs, in float32 inside, block-sparse in every layer, with a loss and gradients near fp32's."""
    model = load_model(str(models["bigbird"]), "fast")
    ids = torch.randint(5, 100, (2, MAX_POS), generator=torch.Generator().manual_seed(0))
    reference = model(input_ids=ids, labels=ids).loss
    with BlockSparseCalls(model) as calls, torch.autocast("cpu", dtype=dtype):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert calls.count == model.config.num_hidden_layers
    assert abs(loss.item() - reference.item()) < 0.05 * abs(reference.item())
    query = model.base_model.encoder.layer[0].attention.self.query.weight.grad
    assert query is not None and bool(query.abs().sum() > 0)  # the attention itself is trained
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------------- QA batches


def test_qa_batches_carry_what_each_target_needs(models: dict[str, Path], tmp_path: Path) -> None:
    """Longformer: a global attention mask, padded to its window; BigBird (from a RoBERTa, one token type):
    zero token types (its QA head would make its own, 1 on the context, out of range), padded to its block;
    full: neither. Each QA model runs on its batch."""
    examples = list(load_examples("squad", write_squad(tmp_path / "dev.json", 3, 2)))
    expected = {"longformer": (True, 32), "full": (False, 1), "bigbird": (False, 8)}
    for name, (global_mask, multiple) in expected.items():
        model = load_qa_model(str(models[name])).eval()
        tok = load_tokenizer(str(models[name]))
        assert uses_global_attention(model.config) is global_mask
        feats = build_features(examples, tok, max_seq_length=MAX_POS, doc_stride=32,
                               global_attention=global_mask, train=False)  # fmt: skip
        batch = collator_for(tok, model.config)(feats)
        assert batch["input_ids"].shape[1] % multiple == 0
        assert ("global_attention_mask" in batch) is global_mask
        if name == "bigbird":
            assert batch["token_type_ids"].abs().sum() == 0
        with torch.no_grad():
            out = model(**batch)
        assert out.start_logits.shape == batch["input_ids"].shape
        assert model_max_length(model.config, tok) == MAX_POS


def test_model_type_may_name_the_family_a_bigbird_came_from(models: dict[str, Path]) -> None:
    """The seed's `--model_type roberta` on a BigBird converted from a RoBERTa, as on a Longformer."""
    config = BigBirdConfig.from_pretrained(models["bigbird"])
    check_model_type("roberta", config, str(models["bigbird"]))
    with pytest.raises(LongifyError, match=r"--model_type bert: .* is a 'big_bird' model"):
        check_model_type("bert", config, str(models["bigbird"]))


# ----------------------------------------------------------------------------------- pretrain flags


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", "bigbirds"], "--target: expected one of longformer, full, bigbird, got 'bigbirds'"),
        (["--bigbird_block_size", "8"], "--bigbird_block_size: BigBird's; give --target bigbird with it"),
        (["--target", "bigbird", "--num_random_blocks", "0"], "--num_random_blocks: expected a positive integer, got 0"),
        (["--target", "full", "--attention_window", "32"], "--attention_window: Longformer's; --target full has no window"),
    ],
)  # fmt: skip
def test_pretrain_target_flags_are_refused_in_one_line(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    with pytest.raises(LongifyError) as err:
        _args(tmp_path, tmp_path, *extra)
    assert str(err.value) == message


def test_a_long_model_is_trained_as_the_target_it_is(models: dict[str, Path], tmp_path: Path) -> None:
    for name in ("longformer", "full", "bigbird"):
        args = _args(tmp_path, models[name])
        _, target = settle_source(args)
        assert target.name == name and args.model.max_pos == MAX_POS
    with pytest.raises(LongifyError, match=r"^--target full: .*bigbird is a bigbird model already"):
        settle_source(_args(tmp_path, models["bigbird"], "--target", "full"))
    with pytest.raises(
        LongifyError, match=r"^--max_pos 256: .*bigbird is a BigBird with 128 usable positions"
    ):
        settle_source(_args(tmp_path, models["bigbird"], "--max_pos", "256"))
    _, target = settle_source(_args(tmp_path, models["source"], "--target", "full"))
    assert target is None  # a short source: converted


def test_bigbird_blocks_that_never_run_sparse_are_refused_before_any_conversion(
    models: dict[str, Path], tmp_path: Path
) -> None:
    args = _args(tmp_path, models["source"], "--target", "bigbird", "--max_pos", "128")
    with pytest.raises(LongifyError, match=r"^--max_pos 128: BigBird with --bigbird_block_size 64 and "):
        Pretrain(args).check_inputs()
    assert not (tmp_path / "out").exists()


def test_an_earlier_conversion_into_another_target_is_refused(
    models: dict[str, Path], tmp_path: Path
) -> None:
    args = _args(tmp_path, models["source"], "--target", "full", "--max_pos", str(MAX_POS))
    converted = tmp_path / "out" / "converted"
    converted.mkdir(parents=True)
    record = {
        "source": str(models["source"]),
        "target": "longformer",
        "max_pos": MAX_POS,
        "attention_window": [32, 32],
    }
    (converted / "conversion.json").write_text(json.dumps(record), encoding="utf-8")
    with pytest.raises(
        LongifyError, match=r"^--target full: .* holds a conversion made with --target longformer"
    ):
        reusable_conversion(args, 2)


# ------------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize("name", ["full", "bigbird"])
def test_export_takes_a_long_model_of_any_target(models: dict[str, Path], tmp_path: Path, name: str) -> None:
    out = export_checkpoint(models[name], tmp_path / "clean")
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [{"full": "RobertaForMaskedLM", "bigbird": "BigBirdForMaskedLM"}[name]]
    card = (out / "README.md").read_text()
    assert "converted from a short encoder with longify convert" in card
    assert "global projections" not in card  # Longformer's only
    if name == "bigbird":
        assert config["attention_type"] == "block_sparse"
