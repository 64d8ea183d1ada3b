"""`longify convert --target full|bigbird`: each tiny family converted to each target reproduces its source
on short inputs, every target tensor comes from the source except those conversion.json names as new, and
BigBird's block-sparse attention runs at the full length, after verification and after reloading; what each
target knows of its models (label, card name, windows, model type, options) is asked of the target."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import (
    AutoModelForMaskedLM,
    AutoTokenizer,
    BigBirdConfig,
    BigBirdForMaskedLM,
    LongformerConfig,
    RobertaConfig,
)
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention

from helpers import FAMILIES, SOURCE_LEN, short_family_batches
from longify.cli import main
from longify.convert import convert
from longify.errors import LongifyError
from longify.mlm.args import parse_pretrain_args
from longify.mlm.export import model_kind
from longify.mlm.train import reusable_conversion
from longify.study.flags import TARGET_OPTIONS
from longify.study.model_targets import CONFIG_TARGETS
from longify.targets import TARGET_NAMES, get_target, target_of
from longify.targets import TARGETS as REGISTRY
from longify.targets import bigbird as bigbird_module

MAX_POS = 128
BIGBIRD = {"block_size": 4, "num_random_blocks": 1}  # full attention up to (5 + 2) * 4 = 28 tokens
FULL_UP_TO = 28
CLASSES = {
    "roberta": "RobertaForMaskedLM",
    "xlm-roberta": "XLMRobertaForMaskedLM",
    "camembert": "CamembertForMaskedLM",
    "bert": "BertForMaskedLM",
    "data2vec-text": "Data2VecTextForMaskedLM",
}
TARGETS = ("full", "bigbird")


@pytest.fixture(scope="module")
def converted(
    tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    root = tmp_path_factory.mktemp("targets")
    out = {}
    for family in FAMILIES:
        for target in TARGETS:
            path = root / f"{family}-{target}"
            convert(str(tiny_sources[family]), path, max_pos=MAX_POS, target=target,
                    **(BIGBIRD if target == "bigbird" else {}))  # fmt: skip
            out[family, target] = path
    return out


@functools.cache
def _source_model(path: Path) -> torch.nn.Module:
    return AutoModelForMaskedLM.from_pretrained(path).eval()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_target_reproduces_source_on_short_inputs(family: str, target: str, tiny_sources, converted) -> None:
    source = _source_model(tiny_sources[family])
    long = AutoModelForMaskedLM.from_pretrained(converted[family, target]).eval()
    expected = "BigBirdForMaskedLM" if target == "bigbird" else CLASSES[family]
    assert type(long).__name__ == expected
    tok = AutoTokenizer.from_pretrained(converted[family, target])
    assert tok.model_max_length == MAX_POS
    length = FULL_UP_TO if target == "bigbird" else SOURCE_LEN
    for batch in short_family_batches(tok, source.config.vocab_size, length):
        real = batch["attention_mask"].bool()
        with torch.no_grad():
            a = source(**batch, output_hidden_states=True)
            b = long(**batch, output_hidden_states=True)
        torch.testing.assert_close(b.hidden_states[-1][real], a.hidden_states[-1][real], atol=1e-5, rtol=0)
        torch.testing.assert_close(b.logits[real], a.logits[real], atol=1e-5, rtol=0)


def _source_offset(family: str, config) -> int:
    return 0 if family == "bert" else config.pad_token_id + 1  # BERT numbers from 0, RoBERTa from pad + 1


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_target_tensor_comes_from_the_source_or_is_named_new(
    family: str, target: str, tiny_sources, converted
) -> None:
    src_dir, out = tiny_sources[family], converted[family, target]
    source = load_file(src_dir / "model.safetensors")
    long = load_file(out / "model.safetensors")
    record = json.loads((out / "conversion.json").read_text())
    assert record["target"] == target
    new = set(record["new_tensors"])
    assert new == ({"bert.pooler.weight", "bert.pooler.bias"} if target == "bigbird" else set())
    config = json.loads((src_dir / "config.json").read_text())
    src_off = config["pad_token_id"] + 1 if family != "bert" else 0
    dst_off = 0 if target == "bigbird" else src_off  # BigBird has no padding offset
    for key, value in long.items():
        if key in new:
            continue
        if key.endswith("position_embeddings.weight"):
            (table,) = [v for k, v in source.items() if k.endswith("position_embeddings.weight")]
            rows = table[src_off:]
            assert value.shape[0] == dst_off + MAX_POS, key
            assert torch.equal(value[dst_off : dst_off + len(rows)], rows), key
            continue
        assert any(v.shape == value.shape and torch.equal(v, value) for v in source.values()), key


def test_bigbird_config_says_block_sparse(converted) -> None:
    for family in FAMILIES:
        config = json.loads((converted[family, "bigbird"] / "config.json").read_text())
        assert config["attention_type"] == "block_sparse"
        assert (config["block_size"], config["num_random_blocks"]) == (4, 1)
        assert config["max_position_embeddings"] == MAX_POS


class Calls:
    """Counts forwards of block-sparse attention modules (a hook on each, installed after any switch)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.count = 0
        self.handles = [
            m.register_forward_hook(self.hook)
            for m in model.modules()
            if isinstance(m, BigBirdBlockSparseAttention)
        ]

    def hook(self, *args: object) -> None:
        self.count += 1


def ordinary_row(model, n: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(5, model.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(3))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_reloaded_bigbird_runs_block_sparse_at_full_length(converted) -> None:
    model = AutoModelForMaskedLM.from_pretrained(converted["roberta", "bigbird"]).eval()
    calls = Calls(model)
    with torch.no_grad():
        model(**ordinary_row(model, MAX_POS))
    assert calls.count == model.config.num_hidden_layers
    record = json.loads((converted["roberta", "bigbird"] / "conversion.json").read_text())
    assert record["long_run"]["attention"] == "block_sparse" and record["long_run"]["length"] == MAX_POS
    assert record["long_run"]["block_sparse_layers"] == model.config.num_hidden_layers


def test_bigbird_verification_leaves_the_model_block_sparse(converted) -> None:
    """A short input switches HF's BigBird to full attention for good; the target's run after the
    comparison switches it back and observes block-sparse attention in every layer at the full length."""
    model = BigBirdForMaskedLM.from_pretrained(converted["bert", "bigbird"]).eval()
    with torch.no_grad():
        model(**ordinary_row(model, 8))
    assert not bigbird_module.is_block_sparse(model)  # HF's behaviour this guards against
    run = get_target("bigbird").prove_long(model, ordinary_row(model, MAX_POS))
    assert (
        bigbird_module.is_block_sparse(model) and run["block_sparse_layers"] == model.config.num_hidden_layers
    )
    calls = Calls(model)
    with torch.no_grad():
        model(**ordinary_row(model, MAX_POS))
    assert calls.count == model.config.num_hidden_layers


def test_a_bigbird_left_on_full_attention_fails_the_conversion(tiny_sources, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bigbird_module, "reset_block_sparse", lambda model: None)
    out = tmp_path / "out"
    with pytest.raises(LongifyError, match="stayed on full attention"):
        convert(str(tiny_sources["roberta"]), out, max_pos=MAX_POS, target="bigbird", **BIGBIRD)
    assert not out.exists()


def test_a_saved_config_without_block_sparse_is_refused() -> None:
    with pytest.raises(LongifyError, match="attention_type is 'original_full', expected 'block_sparse'"):
        get_target("bigbird").check_saved({"attention_type": "original_full"}, "OUT/config.json")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["-q", *argv])
    return code, capsys.readouterr().err.strip()


def _relu_roberta(src: Path, tmp: Path) -> Path:
    """A RoBERTa whose encoder runs relu: its MLM head's hard-wired gelu has no BigBird counterpart."""
    out = tmp / "relu-roberta"
    out.mkdir()
    for f in src.iterdir():
        (out / f.name).write_bytes(f.read_bytes())
    config = json.loads((out / "config.json").read_text())
    config["hidden_act"] = "relu"
    (out / "config.json").write_text(json.dumps(config))
    return out


BAD = {
    "unknown target": (["--target", "lsg"], "--target: expected one of longformer, full, bigbird, got 'lsg'"),
    "zero block size": (
        ["--target", "bigbird", "--block-size", "0"],
        "--block-size: expected a positive integer",
    ),
    "zero random blocks": (
        ["--target", "bigbird", "--num-random-blocks", "0"],
        "--num-random-blocks: expected",
    ),
    "positions not whole blocks": (
        ["--target", "bigbird", "--block-size", "5"],
        "not a multiple of --block-size 5",
    ),
    "never block-sparse": (
        ["--target", "bigbird", "--block-size", "16"],
        "block-sparse attention would never run",
    ),
    "window for full": (["--target", "full", "--attention-window", "16"], "--attention-window: Longformer's"),
    "global init for bigbird": (
        ["--target", "bigbird", "--global-init", "random"],
        "--global-init: Longformer's",
    ),
    "blocks for longformer": (["--block-size", "4"], "not used by --target longformer"),
    "inexact pair": (["--target", "bigbird", "--block-size", "4"], "cannot be exact for this roberta"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_target_input_one_line_exit_2_nothing_written(case: str, tiny_sources, tmp_path, capsys) -> None:
    extra, expected = BAD[case]
    src = (
        _relu_roberta(tiny_sources["roberta"], tmp_path)
        if case == "inexact pair"
        else tiny_sources["roberta"]
    )
    out = tmp_path / "out"
    code, err = _run(capsys, "convert", str(src), str(out), "--max-pos", str(MAX_POS), *extra)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("longify: error: "), err
    assert expected in err
    assert not out.exists()


def test_cli_prints_the_target(tiny_sources, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    code = main(["convert", str(tiny_sources["bert"]), str(out), "--max-pos", "96", "--target", "full"])
    assert code == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{out}: full, 96 positions, verified"), line
    assert json.loads((out / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]


# ---------------------------------------------------------------- what each target knows of its models


LONGFORMER_CONFIG = LongformerConfig(attention_window=[8, 16], pad_token_id=1, max_position_embeddings=130)
BIGBIRD_CONFIG = BigBirdConfig(max_position_embeddings=128, block_size=4, num_random_blocks=1)
FULL_CONFIG = RobertaConfig(pad_token_id=1, max_position_embeddings=130)


@pytest.mark.parametrize(
    ("config", "name", "label", "card"),
    [
        (LONGFORMER_CONFIG, "longformer", "Longformer", "A Longformer"),
        (BIGBIRD_CONFIG, "bigbird", "BigBird", "A BigBird (block-sparse attention)"),
        (FULL_CONFIG, "full", "full-attention model", "A roberta with 128 positions (full attention)"),
    ],
)
def test_a_saved_models_target_says_what_messages_and_cards_call_it(
    config, name: str, label: str, card: str
) -> None:
    target = target_of(config)
    assert (target.name, target.label, target.describe(config)) == (name, label, card)
    assert model_kind(config) == (card, config.model_type)  # the exported card's sentence and tag


def test_only_a_longformer_has_windows() -> None:
    assert target_of(LONGFORMER_CONFIG).windows(LONGFORMER_CONFIG) == [8, 16]
    assert get_target("longformer").windows(LongformerConfig(attention_window=32)) == [32]
    assert target_of(BIGBIRD_CONFIG).windows(BIGBIRD_CONFIG) == []
    assert target_of(FULL_CONFIG).windows(FULL_CONFIG) == []


def test_a_targets_own_class_and_options_are_its_own() -> None:
    """The model type of a target's checkpoints names it (a family's own class: ``full``), and each option
    only one target takes is that target's; the study's torch-free copies of both agree."""
    assert {t: REGISTRY[t].model_type for t in TARGET_NAMES} == {
        "longformer": "longformer", "full": None, "bigbird": "big_bird",
    }  # fmt: skip
    assert {t: REGISTRY[t].options for t in TARGET_NAMES} == {
        "longformer": ("attention_window", "global_init"), "full": (), "bigbird": ("block_size", "num_random_blocks"),
    }  # fmt: skip
    assert {t.model_type: t.name for t in REGISTRY.values() if t.model_type} == CONFIG_TARGETS
    assert {option: t.name for t in REGISTRY.values() for option in t.options} == TARGET_OPTIONS


@pytest.mark.parametrize(
    ("target", "extra", "recorded"),
    [
        ("longformer", {"attention_window": 32}, ([32, 32], "copy")),
        ("full", {}, (None, None)),
        ("bigbird", BIGBIRD, (None, None)),
    ],
)
def test_conversion_records_windows_and_global_init_only_for_a_target_that_has_them(
    target: str, extra: dict[str, int], recorded: tuple[object, object], tiny_sources, tmp_path
) -> None:
    out = tmp_path / target
    convert(str(tiny_sources["roberta"]), out, max_pos=MAX_POS, target=target, verify=False, **extra)
    record = json.loads((out / "conversion.json").read_text())
    assert (record["attention_window"], record["global_init"]) == recorded


def _pretrain_args(tmp_path: Path, model: Path, *extra: str):
    text = tmp_path / "t.txt"
    text.write_text("some text\n", encoding="utf-8")
    return parse_pretrain_args(["--model_name_or_path", str(model), "--output_dir", str(tmp_path / "out"),
                                "--train_file_path", str(text), "--do_train", *extra])  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "blocks", "refusal"),
    [
        (["--bigbird_block_size", "8", "--num_random_blocks", "1"], (8, 1), None),
        (["--bigbird_block_size", "8", "--num_random_blocks", "1"], (16, 1),
         "--bigbird_block_size 8: {out} holds a conversion made with --bigbird_block_size 16"),
        (["--bigbird_block_size", "8", "--num_random_blocks", "1"], (8, 2),
         "--num_random_blocks 1: {out} holds a conversion made with --num_random_blocks 2"),
        ([], (64, 3), None),  # BigBird's defaults
    ],
)  # fmt: skip
def test_pretrain_reuses_a_bigbird_conversion_only_with_the_same_blocks(
    flags: list[str], blocks: tuple[int, int], refusal: str | None, tiny_sources, tmp_path
) -> None:
    source = tiny_sources["roberta"]
    args = _pretrain_args(tmp_path, source, "--target", "bigbird", "--max_pos", "768", *flags)
    converted = tmp_path / "out" / "converted"
    converted.mkdir(parents=True)
    record = {"source": str(source), "target": "bigbird", "max_pos": 768, "attention_window": None,
              "block_size": blocks[0], "num_random_blocks": blocks[1]}  # fmt: skip
    (converted / "conversion.json").write_text(json.dumps(record), encoding="utf-8")
    if refusal is None:
        assert reusable_conversion(args, 2) == converted
    else:
        with pytest.raises(LongifyError) as err:
            reusable_conversion(args, 2)
        assert str(err.value).startswith(refusal.format(out=converted))
