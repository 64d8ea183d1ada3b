"""Tiny models and tokenizers of each supported family, built offline from configs.

Used by the tests, the benchmarks and the demo. Tokenizers are trained on the spot from a few KB of
text with the family's own tokenizer class (byte-level BPE for RoBERTa, Unigram/SentencePiece-style
for XLM-R and CamemBERT, WordPiece for BERT), so nothing is fetched from the Hub.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForMaskedLM,
    BertTokenizer,
    CamembertTokenizer,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    RobertaTokenizer,
    XLMRobertaTokenizer,
)

from longify.convert.families import FAMILIES
from longify.demo.corpus import sample_texts

_ROBERTA_SPECIALS = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}


def _roberta() -> PreTrainedTokenizerBase:
    return RobertaTokenizer(vocab=dict(_ROBERTA_SPECIALS), merges=[])


TOKENIZER_BASES: dict[str, Callable[[], PreTrainedTokenizerBase]] = {
    "roberta": _roberta,
    "data2vec-text": _roberta,
    "xlm-roberta": XLMRobertaTokenizer,
    "camembert": CamembertTokenizer,
    "bert": BertTokenizer,
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
) -> PreTrainedModel:
    """A randomly initialised ``<family>ForMaskedLM`` that accepts ``max_len`` tokens.

    ``perturb`` adds noise to every parameter (LayerNorm weights, biases included) so that a wrong
    mapping between two checkpoints cannot hide behind identical default values.
    """
    offset = FAMILIES[family].position_offset(PretrainedConfig(pad_token_id=tokenizer.pad_token_id))
    config = AutoConfig.for_model(
        family,
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=max_len + offset,
        type_vocab_size=2 if family == "bert" else 1,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id if family != "bert" else None,
        eos_token_id=tokenizer.eos_token_id if family != "bert" else None,
        layer_norm_eps=1e-12 if family == "bert" else 1e-5,
        initializer_range=0.05,
    )
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_config(config)
    if perturb:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * perturb)
    return model.eval()


def save_tiny(family: str, path: str | Path, *, max_len: int = 64, seed: int = 0, **kwargs: int) -> Path:
    """Write a tiny ``family`` model and its tokenizer to ``path`` (a source for ``longify convert``)."""
    path = Path(path)
    tok = train_tokenizer(family, model_max_length=max_len)
    model = tiny_model(family, tok, max_len=max_len, seed=seed, **kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
