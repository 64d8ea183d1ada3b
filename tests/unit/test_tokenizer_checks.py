"""A model folder without tokenizer files, or another model's tokenizer, is refused in one line.

transformers 5 builds an empty tokenizer (only its special tokens) for a folder that holds none: convert,
pretrain, qa evaluate, export and data stats refuse it in one line rather than run on it. Another family's
tokenizer is one line, never a traceback; a tokenizer larger than the embeddings is refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import write_squad, write_wikitext
from longify.cli import main
from longify.convert import convert
from longify.errors import LongifyError
from longify.loading import check_vocab

TOKENIZER_FILES = ("tokenizer*", "vocab*", "merges*", "special_tokens_map.json", "sentencepiece*")


def without_tokenizer(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    for pattern in TOKENIZER_FILES:
        for path in dest.glob(pattern):
            path.unlink()
    assert (dest / "config.json").is_file() and not list(dest.glob("tokenizer*"))
    return dest


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def long_model(tiny_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("long") / "long"
    convert(str(tiny_sources["roberta"]), out, max_pos=128, attention_window=32, verify=False)
    return out


def test_convert_refuses_a_source_without_tokenizer_files(tiny_sources, tmp_path, capsys) -> None:
    source = without_tokenizer(tiny_sources["roberta"], tmp_path / "bare")
    out = tmp_path / "long"
    assert main(["convert", str(source), str(out), "--max-pos", "128", "--attention-window", "32"]) == 2
    line = one_line(capsys)
    assert (
        line.startswith(f"longify: error: {source}: no tokenizer files there") and "--tokenizer DIR" in line
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare"]  # nothing written, no temporary left
    assert main(["convert", str(source), str(out), "--max-pos", "128", "--attention-window", "32",
                 "--tokenizer", str(tiny_sources["roberta"])]) == 0  # fmt: skip


def test_pretrain_from_a_source_without_tokenizer_files_converts_nothing(
    tiny_sources, tmp_path, capsys
) -> None:
    source = without_tokenizer(tiny_sources["roberta"], tmp_path / "bare")
    data = write_wikitext(tmp_path / "wiki")
    out = tmp_path / "run"
    argv = ["--model_name_or_path", str(source), "--output_dir", str(out), "--max_pos", "128",
            "--attention_window", "32", "--train_file_path", str(data / "wiki.train.raw"), "--do_train",
            "--max_steps", "2", "--report_to", "none", "--data_cache_dir", str(tmp_path / "cache")]  # fmt: skip
    assert main(["pretrain", *argv]) == 2
    assert "no tokenizer files there" in one_line(capsys)  # not "wiki.train.raw: 0 tokens"
    assert not out.exists() or not any(out.iterdir())  # no converted model left behind


def test_qa_evaluate_refuses_a_model_without_tokenizer_files(long_model, tmp_path, capsys) -> None:
    model = without_tokenizer(long_model, tmp_path / "bare")
    dev = write_squad(tmp_path / "dev.json", 3, seed=1)
    out = tmp_path / "eval"
    argv = ["qa", "evaluate", "--model_name_or_path", str(model), "--predict_file", str(dev), "--output_dir",
            str(out), "--max_seq_length", "64", "--doc_stride", "16", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 2
    line = one_line(capsys)
    assert f"{model}: no tokenizer files there" in line and "--tokenizer_name" in line
    assert not out.exists() or not any(out.iterdir())


def test_another_families_tokenizer_is_refused_not_a_traceback(
    long_model, tiny_sources, tmp_path, capsys
) -> None:
    dev = write_squad(tmp_path / "dev.json", 3, seed=1)
    argv = ["qa", "evaluate", "--model_name_or_path", str(long_model), "--predict_file", str(dev),
            "--output_dir", str(tmp_path / "eval"), "--max_seq_length", "64", "--doc_stride", "16",
            "--report_to", "none", "--tokenizer_name", str(tiny_sources["bert"])]  # fmt: skip
    assert main(argv) == 2  # was: IndexError: index out of range in self
    line = one_line(capsys)
    assert f"{tiny_sources['bert']}: a tokenizer that gives question/context pairs token type ids" in line
    assert "pass the model's own tokenizer" in line


def test_a_one_type_model_with_a_type_id_tokenizer_converts_on_type_0(tiny_sources, tmp_path, capsys) -> None:
    """A RoBERTa-type model (one token type) shipped with a BERT-style tokenizer (as some hub models are):
    conversion's pair check fed it type ids of 1 and died of an IndexError; single sequences are type 0."""
    out = tmp_path / "long"
    argv = ["convert", str(tiny_sources["roberta"]), str(out), "--max-pos", "128", "--attention-window", "32",
            "--tokenizer", str(tiny_sources["bert"])]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    assert json.loads((out / "conversion.json").read_text())["verification"]["passed"] is True


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tiny_sources) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sources["roberta"])
    check_vocab(tok, "tok", SimpleNamespace(vocab_size=len(tok), type_vocab_size=1), "model")  # its own: fine
    with pytest.raises(LongifyError, match=f"a tokenizer of {len(tok)} tokens, but the model model has 100 "):
        check_vocab(tok, "tok", SimpleNamespace(vocab_size=100, type_vocab_size=1), "model")


def test_export_and_stats_do_not_take_the_empty_tokenizer(long_model, tmp_path, capsys) -> None:
    """export wrote transformers' 5-token stand-in as the model's tokenizer; data stats counted with it."""
    model = without_tokenizer(long_model, tmp_path / "bare")
    assert main(["export", str(model), str(tmp_path / "clean")]) == 0
    assert not list((tmp_path / "clean").glob("tokenizer*"))  # the model only, as for a missing tokenizer
    dev = write_squad(tmp_path / "dev.json", 3, seed=1)
    argv = [
        "data",
        "stats",
        "squad",
        "--path",
        str(dev),
        "--tokenizer",
        str(model),
        "--out",
        str(tmp_path / "s"),
    ]
    capsys.readouterr()
    assert main(argv) == 2
    assert f"--tokenizer {model}: no tokenizer files there" in one_line(capsys)


def test_qa_predict_names_no_flag_it_lacks(long_model, tmp_path, capsys) -> None:
    """`qa predict` has no --tokenizer_name: its refusal said to pass one (an unknown flag there)."""
    model = without_tokenizer(long_model, tmp_path / "bare")
    argv = [
        "qa",
        "predict",
        "--model",
        str(model),
        "--question",
        "Who?",
        "--context",
        "Ann came.",
        "--allow-new-head",
    ]
    assert main(argv) == 2
    line = one_line(capsys)
    assert f"{model}: no tokenizer files there" in line and line.endswith(
        "copy the model's tokenizer files into it"
    )


def test_a_model_without_a_token_type_table_takes_a_type_id_tokenizer_for_pairs(tiny_sources) -> None:
    """DeBERTa-v2/mDeBERTa (type_vocab_size 0) ignore token type ids: QA's pair check refused them as one-type."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_sources["bert"])
    check_vocab(tok, "tok", SimpleNamespace(vocab_size=len(tok), type_vocab_size=0), "model", pairs=True)
    with pytest.raises(LongifyError, match="token type ids 0 and 1, but the model model has 1 token type"):
        check_vocab(tok, "tok", SimpleNamespace(vocab_size=len(tok), type_vocab_size=1), "model", pairs=True)
