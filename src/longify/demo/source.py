"""Make the demo's small *pre-trained* short encoder: a tiny RoBERTa trained briefly on the shipped text.

The real study starts from roberta-base, which cannot be fetched here; the demo stands in a model that
has really learned something (its masked-LM loss drops) so that conversion and the later stages have
meaningful weights to carry over.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForLanguageModeling, PreTrainedModel, PreTrainedTokenizerBase

from longify.console import is_quiet

logger = logging.getLogger(__name__)


@dataclass
class SourceTraining:
    """What the short pre-training did: eval MLM loss before and after, steps, block length."""

    steps: int
    block: int
    eval_loss_before: float
    eval_loss_after: float


def blocks(tokenizer: PreTrainedTokenizerBase, text: str, block: int) -> torch.Tensor:
    """Token ids of ``text`` cut into rows of ``block`` tokens, each wrapped in <s> ... </s>."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    body = block - 2
    n = len(ids) // body
    rows = torch.tensor(ids[: n * body]).view(n, body)
    bos = torch.full((n, 1), tokenizer.cls_token_id)
    eos = torch.full((n, 1), tokenizer.sep_token_id)
    return torch.cat([bos, rows, eos], dim=1)


@torch.no_grad()
def mlm_eval_loss(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, data: torch.Tensor, seed: int = 0
) -> float:
    """Masked-LM loss on ``data`` with masks drawn from a fixed seed (same positions every call)."""
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=seed)
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(data), 32):
        batch = collator([{"input_ids": r} for r in data[start : start + 32]])
        n = int((batch["labels"] != -100).sum())
        total += model(**batch).loss.item() * n
        count += n
    return total / max(count, 1)


def pretrain_source(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    train_text: str,
    valid_text: str,
    *,
    steps: int = 300,
    block: int = 128,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
) -> SourceTraining:
    """Train ``model`` in place with masked LM for ``steps`` steps (AdamW, linear decay)."""
    torch.manual_seed(seed)
    train = blocks(tokenizer, train_text, block)
    valid = blocks(tokenizer, valid_text, block)
    before = mlm_eval_loss(model, tokenizer, valid, seed)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.0, 1 - s / steps))
    model.train()
    bar = tqdm(range(steps), desc="pre-training the short source model", unit="step", disable=is_quiet())
    for step in bar:
        idx = torch.randint(len(train), (batch_size,))
        loss = model(**collator([{"input_ids": r} for r in train[idx]])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    after = mlm_eval_loss(model, tokenizer, valid, seed)
    logger.info(
        "source MLM eval loss %.3f -> %.3f (ppl %.1f -> %.1f)",
        before,
        after,
        math.exp(before),
        math.exp(after),
    )
    return SourceTraining(steps=steps, block=block, eval_loss_before=before, eval_loss_after=after)
