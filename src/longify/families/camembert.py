"""CamemBERT: RoBERTa's layout and numbering, a SentencePiece tokenizer."""

from __future__ import annotations

from dataclasses import replace

from transformers import CamembertTokenizer

from longify.families.base import Tiny
from longify.families.roberta import FAMILY as ROBERTA

FAMILY = replace(ROBERTA, model_type="camembert", tiny=Tiny(CamembertTokenizer, tokenizer_pieces="▁"))
