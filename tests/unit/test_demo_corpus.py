"""The demo's shipped corpus is what scripts/make_demo_data.py renders, byte for byte."""

from __future__ import annotations

import importlib.util

from helpers import REPO
from longify.demo.files import DATA_FILES, shipped_data_dir


def test_shipped_corpus_is_regenerated_exactly() -> None:
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert set(rendered) == set(DATA_FILES)
    for name, text in rendered.items():
        assert (shipped_data_dir() / name).read_text(encoding="utf-8") == text
    train = rendered["wiki.train.raw"]
    assert train.startswith(" \n = ") and "\n = = History = = \n" in train
