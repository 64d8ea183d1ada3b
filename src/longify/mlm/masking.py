"""Deterministic masked-LM masking for evaluation sets.

Row ``i`` is masked with a ``torch.Generator`` seeded from ``(seed, i)`` alone, so two runs, two models,
any batch order and any number of processes see the same masked positions. The recipe is
DataCollatorForLanguageModeling's: each non-special position is chosen with ``mlm_probability``; of the
chosen, 80% become the mask token, 10% a random token (any id of the vocabulary, as the collator does),
10% stay unchanged; labels are the original ids there and -100 elsewhere.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import datasets
import torch

from longify.errors import LongifyError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

MASK_REPLACE_PROB = 0.8
RANDOM_REPLACE_PROB = 0.1  # of all chosen positions; the rest keep their token
_FEATURES = datasets.Features(
    {"input_ids": datasets.List(datasets.Value("int32")), "labels": datasets.List(datasets.Value("int32"))}
)


def row_seed(seed: int, index: int) -> int:
    """A 64-bit seed that depends on (seed, index) only; distinct pairs do not collide in practice."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest(), "little")


def mask_row(
    ids: torch.Tensor,
    generator: torch.Generator,
    special: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    p: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked input ids, labels) of one row of int64 ids; ``special`` ids are never chosen."""
    prob = torch.full(ids.shape, p)
    prob[torch.isin(ids, special)] = 0.0
    chosen = torch.bernoulli(prob, generator=generator).bool()
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    out = ids.clone()
    to_mask = torch.bernoulli(torch.full(ids.shape, MASK_REPLACE_PROB), generator=generator).bool() & chosen
    out[to_mask] = mask_id
    p_random = RANDOM_REPLACE_PROB / (1.0 - MASK_REPLACE_PROB)
    to_random = (
        torch.bernoulli(torch.full(ids.shape, p_random), generator=generator).bool() & chosen & ~to_mask
    )
    random_ids = torch.randint(vocab_size, ids.shape, generator=generator)
    out[to_random] = random_ids[to_random]
    return out, labels


def _mask_batch(
    batch: dict[str, list[list[int]]], indices: list[int], *, seed: int, special: list[int], mask_id: int,
    vocab_size: int, p: float,
) -> dict[str, list[list[int]]]:  # fmt: skip
    special_t = torch.tensor(special, dtype=torch.long)
    inputs, labels = [], []
    for row, index in zip(batch["input_ids"], indices, strict=True):
        g = torch.Generator().manual_seed(row_seed(seed, index))
        out, lab = mask_row(torch.tensor(row, dtype=torch.long), g, special_t, mask_id, vocab_size, p)
        inputs.append(out.tolist())
        labels.append(lab.tolist())
    return {"input_ids": inputs, "labels": labels}


def mask_for_eval(
    ds: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    mlm_probability: float = 0.15,
    seed: int = 0,
    *,
    num_proc: int | None = None,
) -> datasets.Dataset:
    """Rows ``{"input_ids", "labels"}``: ``ds``'s blocks masked deterministically (see module docstring)."""
    if not 0.0 < mlm_probability < 1.0:
        raise LongifyError(f"mlm_probability {mlm_probability}: must be between 0 and 1")
    if tokenizer.mask_token_id is None:
        raise LongifyError(f"{type(tokenizer).__name__}: tokenizer has no mask token, needed for masked LM")
    if "input_ids" not in ds.column_names:
        raise LongifyError(
            f"evaluation dataset: no 'input_ids' column (columns: {', '.join(ds.column_names)})"
        )
    kwargs = {
        "seed": int(seed),
        "special": sorted({int(i) for i in tokenizer.all_special_ids}),
        "mask_id": int(tokenizer.mask_token_id),
        "vocab_size": len(tokenizer),
        "p": float(mlm_probability),
    }
    fingerprint = hashlib.sha256(f"{ds._fingerprint}:{sorted(kwargs.items())}".encode()).hexdigest()[:32]
    return ds.map(
        _mask_batch,
        batched=True,
        with_indices=True,
        fn_kwargs=kwargs,
        remove_columns=ds.column_names,
        features=_FEATURES,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        keep_in_memory=True,
        new_fingerprint=f"eval-mask-{fingerprint}",
        desc="Masking (eval)",
    )
