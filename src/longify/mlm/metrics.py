"""Masked-LM evaluation with unambiguous names.

- ``loss``: mean cross-entropy in nats per *masked* token;
- ``perplexity``: exp(loss);
- ``bits_per_token``: loss / ln 2 (what allenai's notebook logs as "bpc");
- ``pseudo_bits_per_char``: an MLM *pseudo* bits per character: loss x the evaluation text's tokens / its
  characters / ln 2. It scales the masked-token loss (each masked token predicted from its unmasked
  neighbours, a pseudo-likelihood) to every token of the text; it is not the text's true code length and is
  only roughly comparable across tokenizers (they mask different units). Counting, as ``longify.mlm.data``
  does: ``text_tokens`` are all ids of the text without special tokens, ``<unk>`` included, but ``<unk>``
  (a special token) is never masked, so it is never scored: its share is estimated from the scored tokens;
  ``text_chars`` are the characters of the stripped, non-blank text units, so newlines and whitespace at
  line edges are not counted.

Masks are fixed per example (``longify.mlm.data.mask_for_eval``), so two runs or two models are scored
on the same masked positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class MLMSums:
    """Summed evaluation statistics (add them across batches and processes)."""

    nats: float = 0.0
    masked_tokens: int = 0

    def add(self, nats: float, masked: int) -> None:
        self.nats += nats
        self.masked_tokens += masked


def masked_nats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example summed cross-entropy (nats) over masked positions, and per-example masked counts."""
    ce = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100, reduction="none"
    ).view(labels.shape)
    return ce.sum(dim=1), (labels != -100).sum(dim=1)


def mlm_metrics(sums: MLMSums, text_tokens: int | None, text_chars: int | None) -> dict[str, float]:
    """The named metrics from summed statistics and the evaluation text's token and character counts."""
    loss = sums.nats / max(sums.masked_tokens, 1)
    out = {
        "loss": loss,
        "perplexity": math.exp(min(loss, 700.0)),
        "bits_per_token": loss / math.log(2),
        "masked_tokens": float(sums.masked_tokens),
    }
    if text_tokens and text_chars:
        out["pseudo_bits_per_char"] = loss * text_tokens / text_chars / math.log(2)
    return out
