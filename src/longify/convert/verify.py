"""Check that a converted model is still its source model on inputs both can take.

Each target says which of its configs run on inputs of which length (``Target.checks``): with the source
rows of the position table kept, Longformer's sliding window covering the input, or BigBird's input short
enough for full attention, the two models are the same function and differ only by float rounding. Then
``Target.prove_long`` runs what must run at the full length (BigBird: its block-sparse path).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import torch
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from longify.convert.build import materialize
from longify.targets import DEFAULT_TARGET, Target, get_target
from longify.targets.longformer import covered_length  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

_SAMPLE_TEXTS = (
    "The Longformer extends the context of a pre-trained encoder to thousands of tokens.",
    "Short.",
    "Position embeddings are copied from the first 512 positions, and attention becomes a sliding window.",
)
COMPARED = ("last hidden states", "mean-pooled embeddings")  # always; "MLM logits" when the source has a head
_SAMPLE_PAIRS = ("What does the Longformer extend?", "Why?", "What is copied?")


@dataclass
class Verification:
    """What the comparison measured (max absolute differences over real, non-padding tokens)."""

    max_abs_diff_hidden: float
    max_abs_diff_logits: float | None
    tolerance: float
    lengths: list[int]
    tokens_compared: int
    passed: bool
    # mean over each row's real tokens of the last hidden states: a sentence-transformers embedding
    max_abs_diff_pooled: float | None = None
    compared: list[str] = field(default_factory=list)  # what was compared: hidden states, pooled, logits

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def verification_batches(
    tokenizer: PreTrainedTokenizerBase | None,
    vocab_size: int,
    length: int,
    seed: int = 0,
    *,
    full: bool = True,
    type_vocab_size: int = 2,
) -> list[dict[str, torch.Tensor]]:
    """A padded batch of real text (question/context pairs) and two rows of random ids at ``length``, the
    second padded. ``full=False``: one unpadded random row only (for the costly full-length check). A model
    of one token type gets no ``token_type_ids`` (type 0 for every token, as its own tokenizer would give)."""
    batches: list[dict[str, torch.Tensor]] = []
    special = set()
    keys = ("input_ids", "attention_mask", *(("token_type_ids",) if type_vocab_size >= 2 else ()))
    if tokenizer is not None and full:
        enc = tokenizer(
            list(_SAMPLE_PAIRS),
            list(_SAMPLE_TEXTS),
            padding=True,
            truncation=True,
            max_length=length,
            return_tensors="pt",
        )
        batches.append({k: v for k, v in enc.items() if k in keys})
    if tokenizer is not None:
        special = set(tokenizer.all_special_ids)
    gen = torch.Generator().manual_seed(seed)
    ordinary = torch.tensor([i for i in range(vocab_size) if i not in special])
    ids = ordinary[torch.randint(len(ordinary), (2, length), generator=gen)]
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, (2 * length) // 3 :] = 0  # the second row is padded: masked keys must not leak
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        ids[1, (2 * length) // 3 :] = tokenizer.pad_token_id
    rows = 2 if full else 1
    batches.append({"input_ids": ids[:rows], "attention_mask": mask[:rows]})
    return batches


@torch.no_grad()
def compare_models(
    source: PreTrainedModel,
    converted: PreTrainedModel,
    batches: list[dict[str, torch.Tensor]],
    tolerance: float,
    compare_logits: bool = True,
) -> Verification:
    """Run both MaskedLM models on ``batches`` and measure the largest differences on real tokens."""
    source.eval()
    converted.eval()
    d_hidden = 0.0
    d_pooled = 0.0
    d_logits = 0.0
    tokens = 0
    for batch in batches:
        real = batch["attention_mask"].bool()
        a = source(**batch, output_hidden_states=True)
        b = converted(**batch, output_hidden_states=True)
        d_hidden = max(d_hidden, (a.hidden_states[-1] - b.hidden_states[-1])[real].abs().max().item())
        pooled = mean_pooled(a.hidden_states[-1], real) - mean_pooled(b.hidden_states[-1], real)
        d_pooled = max(d_pooled, pooled.abs().max().item())
        if compare_logits:
            d_logits = max(d_logits, (a.logits - b.logits)[real].abs().max().item())
        tokens += int(real.sum())
    worst = max(d_hidden, d_pooled, d_logits)
    return Verification(
        max_abs_diff_hidden=d_hidden,
        max_abs_diff_logits=d_logits if compare_logits else None,
        tolerance=tolerance,
        lengths=[int(b["input_ids"].shape[1]) for b in batches],
        tokens_compared=tokens,
        passed=bool(worst <= tolerance),
        max_abs_diff_pooled=d_pooled,
        compared=[*COMPARED, *(["MLM logits"] if compare_logits else [])],
    )


def mean_pooled(hidden: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The mean of each row's hidden states over its real (non-padding) tokens: sentence-transformers'
    mean pooling, what an embedding model's users compare."""
    weights = real.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


def merge_verifications(checks: list[Verification]) -> Verification:
    """One record for several comparisons: worst differences, all lengths, all tokens."""
    logits = [c.max_abs_diff_logits for c in checks if c.max_abs_diff_logits is not None]
    pooled = [c.max_abs_diff_pooled for c in checks if c.max_abs_diff_pooled is not None]
    return Verification(
        max_abs_diff_hidden=max(c.max_abs_diff_hidden for c in checks),
        max_abs_diff_logits=max(logits) if logits else None,
        tolerance=checks[0].tolerance,
        lengths=[n for c in checks for n in c.lengths],
        tokens_compared=sum(c.tokens_compared for c in checks),
        passed=all(c.passed for c in checks),
        max_abs_diff_pooled=max(pooled) if pooled else None,
        compared=list(dict.fromkeys(k for c in checks for k in c.compared)),
    )


def verify_conversion(
    source: PreTrainedModel,
    state: dict[str, torch.Tensor],
    lconfig: PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    source_len: int,
    tolerance: float,
    seed: int,
    compare_logits: bool = True,
    target: Target | None = None,
) -> Verification:
    """Compare the converted weights with the source on each of the target's checks (Longformer: with the
    requested windows on inputs they cover, and with a window widened to the source length on inputs of the
    full source length). ``compare_logits`` off when the source had no MLM head (a random head's logits
    prove nothing)."""
    return verify_target(
        source, state, lconfig, tokenizer, source_len, tolerance, seed, compare_logits, target
    )[0]


def verify_target(
    source: PreTrainedModel,
    state: dict[str, torch.Tensor],
    config: PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    source_len: int,
    tolerance: float,
    seed: int,
    compare_logits: bool = True,
    target: Target | None = None,
) -> tuple[Verification, PreTrainedModel | None]:
    """``verify_conversion``, and the compared model whose config is the target's own (None when every check
    ran a variant), for ``Target.prove_long``."""
    target = target or get_target(DEFAULT_TARGET)
    checks = []
    own = None
    for check in target.checks(config, source_len):
        model = materialize(check.config, state, target)
        windows = target.windows(check.config)
        logger.info(
            "verifying against the source: %sinputs of up to %d tokens",
            f"windows {sorted(set(windows))}, " if windows else "",
            check.length,
        )
        batches = verification_batches(
            tokenizer,
            config.vocab_size,
            check.length,
            seed,
            full=check.full,
            type_vocab_size=getattr(config, "type_vocab_size", 1),  # DistilBERT's config has none
        )
        with target.comparing():
            checks.append(compare_models(source, model, batches, tolerance, compare_logits))
        if check.config is config:
            own = model
    return merge_verifications(checks), own
