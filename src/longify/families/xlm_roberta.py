"""XLM-RoBERTa (base and large): RoBERTa's layout and numbering, a SentencePiece tokenizer."""

from __future__ import annotations

from dataclasses import replace

from transformers import XLMRobertaTokenizer

from longify.families.base import Tiny
from longify.families.roberta import FAMILY as ROBERTA

FAMILY = replace(ROBERTA, model_type="xlm-roberta", tiny=Tiny(XLMRobertaTokenizer, tokenizer_pieces="▁"))
