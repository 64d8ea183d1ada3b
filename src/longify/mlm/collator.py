"""Training masks that are a function of (seed, epoch, row), not of the global RNG.

HF's Trainer fetches the first batch of a resumed epoch before it restores the RNG state of the
checkpoint, so with DataCollatorForLanguageModeling a resumed run masks that batch differently from an
uninterrupted one. Seeding each row's mask from (seed, epoch, row index) makes resume exact, and makes
the masks independent of batch size, process count and data-loader workers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase, TrainerCallback, default_data_collator

from longify.mlm.masking import mask_row, row_seed


class IndexedBlocks(Dataset):
    """A blocks dataset whose items also carry their row index (``row``) for seeded masking."""

    def __init__(self, blocks: Any) -> None:
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.blocks[i]["input_ids"], "row": i}


class SeededMLMCollator:
    """MLM masking (80/10/10, as DataCollatorForLanguageModeling) seeded per (seed, epoch, row).

    Pre-masked evaluation rows (with ``labels``) pass through unchanged.
    """

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase, mlm_probability: float = 0.15, seed: int = 0
    ) -> None:
        self.p = mlm_probability
        self.seed = seed
        self.epoch = 0
        self.mask_id = tokenizer.mask_token_id
        self.vocab_size = len(tokenizer)
        self.special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "labels" in features[0]:
            return default_data_collator([{k: f[k] for k in ("input_ids", "labels")} for f in features])
        inputs, labels = [], []
        for f in features:
            gen = torch.Generator().manual_seed(row_seed(self.seed * 1_000_003 + self.epoch, int(f["row"])))
            out, lab = mask_row(
                torch.as_tensor(f["input_ids"], dtype=torch.long),
                gen,
                self.special,
                self.mask_id,
                self.vocab_size,
                self.p,
            )
            inputs.append(out)
            labels.append(lab)
        ids = torch.stack(inputs)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.stack(labels)}


class EpochSetter(TrainerCallback):
    """Tells the collator which epoch is starting (also right after a resume)."""

    def __init__(self, collator: SeededMLMCollator) -> None:
        self.collator = collator

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.collator.epoch = int(state.epoch + 1e-6) if state.epoch else 0
