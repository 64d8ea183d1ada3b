"""Masked-LM metrics against an oracle written out by hand: -log softmax per masked position, summed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longify.mlm.metrics import MLMSums, masked_nats, mlm_metrics


def _hand_nats(logits: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    total, count = 0.0, 0
    for row in range(labels.shape[0]):
        for pos in range(labels.shape[1]):
            if labels[row, pos] == -100:
                continue
            z = logits[row, pos].astype(np.float64)
            total += math.log(sum(math.exp(v - z.max()) for v in z)) + z.max() - z[labels[row, pos]]
            count += 1
    return total, count


def test_masked_nats_and_named_metrics_by_hand() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    labels = np.full((2, 5), -100)
    labels[0, 1], labels[0, 4], labels[1, 0] = 3, 6, 0  # three masked positions
    nats, counts = masked_nats(torch.from_numpy(logits), torch.from_numpy(labels))
    want, n = _hand_nats(logits, labels)
    assert int(counts.sum()) == n == 3
    assert float(nats.sum()) == pytest.approx(want, rel=1e-6)
    # a text of 40 tokens and 90 characters: bits per token and pseudo bits per char from the hand total
    metrics = mlm_metrics(MLMSums(float(nats.sum()), int(counts.sum())), 40, 90)
    assert metrics["loss"] == pytest.approx(want / 3, rel=1e-6)
    assert metrics["bits_per_token"] == pytest.approx(want / 3 / math.log(2), rel=1e-6)
    assert metrics["perplexity"] == pytest.approx(math.exp(want / 3), rel=1e-6)
    assert metrics["pseudo_bits_per_char"] == pytest.approx(want / 3 * 40 / 90 / math.log(2), rel=1e-6)
