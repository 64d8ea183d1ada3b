"""On a transformers without ``create_bidirectional_mask``: ``import longify`` works and fast attention installs
without patching anything (a fresh interpreter: the function is deleted before longify is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_import_and_install_without_the_mask_function():
    """On a transformers without ``create_bidirectional_mask``, ``import longify`` works and nothing is patched."""
    import subprocess
    import sys

    code = """
import transformers.models.longformer.modeling_longformer as ml
del ml.create_bidirectional_mask
import longify, longify.attention
from longify.attention import use_fast_attention, use_hf_attention, uses_fast_attention
from transformers import LongformerConfig, LongformerModel
config = LongformerConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=32, attention_window=4, max_position_embeddings=64)
model = use_fast_attention(LongformerModel(config))
assert uses_fast_attention(model)
assert not hasattr(ml, "create_bidirectional_mask")
use_hf_attention(model)
assert not hasattr(ml, "create_bidirectional_mask")
print("ok")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
