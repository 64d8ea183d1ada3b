"""Tiny models and tokenizers of each supported family, built offline from configs.

Used by the tests, the benchmarks and the demo. Everything family-specific comes from the family registry
(``longify.families``: each family's ``Tiny``): tokenizers are trained on the spot from a few KB of text
with the family's own tokenizer class (byte-level BPE for RoBERTa, Unigram/SentencePiece-style for XLM-R,
CamemBERT, ALBERT and DeBERTa-v2, WordPiece for BERT, DistilBERT and ELECTRA), so nothing is fetched from
the Hub; configs are written in canonical fields and translated into the family's own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longify.demo.corpus import sample_texts
from longify.families import FAMILIES

TOKENIZER_BASES: dict[str, Callable[[], PreTrainedTokenizerBase]] = {
    name: family.tiny.tokenizer for name, family in FAMILIES.items()
}


def train_tokenizer(
    family: str,
    texts: Iterable[str] | None = None,
    vocab_size: int = 400,
    model_max_length: int | None = None,
) -> PreTrainedTokenizerBase:
    """A fast tokenizer of ``family``'s class, trained on ``texts`` (default: the demo corpus)."""
    base = TOKENIZER_BASES[family]()
    corpus = list(texts) if texts is not None else sample_texts()
    tok = base.train_new_from_iterator(corpus, vocab_size=vocab_size)
    if model_max_length is not None:
        tok.model_max_length = model_max_length
        tok.init_kwargs["model_max_length"] = model_max_length
    return tok


def tiny_config(
    family: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_len: int = 64,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 64,
    **own: Any,
) -> PretrainedConfig:
    """The config of a tiny ``family`` model that accepts ``max_len`` tokens (``own``: the family's own
    fields, over its tiny defaults, e.g. ELECTRA's ``embedding_size``)."""
    fam = FAMILIES[family]
    offset = fam.position_offset(PretrainedConfig(pad_token_id=tokenizer.pad_token_id))
    canonical: dict[str, Any] = {
        "vocab_size": len(tokenizer),
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_len + offset,
        "type_vocab_size": 1,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "layer_norm_eps": 1e-5,
        "initializer_range": 0.05,
        **fam.tiny.canonical,
    }
    return AutoConfig.for_model(family, **fam.own_config(canonical), **{**fam.tiny.own(canonical), **own})


def tiny_model(
    family: str,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_len: int = 64,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
    intermediate: int = 64,
    seed: int = 0,
    perturb: float = 0.05,
    model_class: Any = AutoModelForMaskedLM,
    **own: Any,
) -> PreTrainedModel:
    """A randomly initialised ``<family>ForMaskedLM`` (or ``model_class``) that accepts ``max_len`` tokens.

    ``perturb`` adds noise to every parameter (LayerNorm weights, biases included) so that a wrong
    mapping between two checkpoints cannot hide behind identical default values.
    """
    config = tiny_config(
        family, tokenizer, max_len=max_len, hidden=hidden, layers=layers, heads=heads,
        intermediate=intermediate, **own,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class(config)
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb)
    return model.eval()


def save_tiny(family: str, path: str | Path, *, max_len: int = 64, seed: int = 0, **kwargs: Any) -> Path:
    """Write a tiny ``family`` model and its tokenizer to ``path`` (a source for ``longify convert``)."""
    path = Path(path)
    tok = train_tokenizer(family, model_max_length=max_len)
    model = tiny_model(family, tok, max_len=max_len, seed=seed, **kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
