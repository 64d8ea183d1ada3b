"""The family registry (``longify.families``) is the one list of families: the tests' lists and the tiny
builder come from it, each family's literal key map covers its checkpoint and, where it converts to
Longformer/BigBird, the canonical encoder; the README's family x target table is the registry's."""

from __future__ import annotations

import pytest

from helpers import ALL_FAMILIES, FAMILIES, REPO
from longify.families import CANONICAL
from longify.families import FAMILIES as REGISTRY
from longify.families.table import markdown
from longify.tiny import TOKENIZER_BASES, tiny_model, train_tokenizer

FIRST_RELEASE = {"bert", "camembert", "data2vec-text", "roberta", "xlm-roberta"}  # the prefix renames


@pytest.fixture(scope="module")
def tiny_state_dicts() -> dict[str, dict]:
    return {name: tiny_model(name, train_tokenizer(name), perturb=0).state_dict() for name in REGISTRY}


def test_test_lists_and_tiny_builder_come_from_the_registry() -> None:
    assert tuple(REGISTRY) == ALL_FAMILIES and set(TOKENIZER_BASES) == set(REGISTRY)
    assert set(FAMILIES) == FIRST_RELEASE == {n for n, f in REGISTRY.items() if f.is_prefix_rename}
    assert {"distilbert", "electra", "albert", "deberta-v2"} <= set(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_key_map_covers_the_checkpoint_one_to_one(name: str, tiny_state_dicts) -> None:
    family = REGISTRY[name]
    canonical = [family.canonical_key(k) for k in tiny_state_dicts[name]]
    assert None not in canonical and len(set(canonical)) == len(canonical)
    assert len(set(family.weights.values())) == len(family.weights)  # the map inverts
    for key in tiny_state_dicts[name]:
        assert family.native_key(family.canonical_key(key)) == key


@pytest.mark.parametrize("name", [n for n, f in REGISTRY.items() if "longformer" not in f.refusals])
def test_families_converting_to_longformer_fill_the_canonical_encoder(name: str, tiny_state_dicts) -> None:
    family = REGISTRY[name]
    layer0 = {k.replace("{}", "0") for k in CANONICAL}
    for key in layer0 - set(family.absent):
        native = family.native_key(key)
        assert native in tiny_state_dicts[name], (name, key, native)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_tiny_tokenizer_writes_its_family_pieces(name: str) -> None:
    tok = train_tokenizer(name)
    assert tok.is_fast
    pieces = tok.tokenize("The economy of Kalora has long depended on glassmaking.")
    assert any(REGISTRY[name].tiny.tokenizer_pieces in p for p in pieces), pieces


def test_readme_family_table_is_the_registry() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert markdown() in readme, (
        "README.md's family x target table differs from longify.families.table.markdown()"
    )
