"""The QA span loss counts real tokens only: a window's loss is the same alone or padded beside a longer one."""

from __future__ import annotations

import pytest
import torch


def test_span_loss_does_not_depend_on_padding(qa_setup) -> None:
    from longify.loading import load_tokenizer
    from longify.qa.features import collator_for
    from longify.qa.models import load_qa_model
    from longify.qa.train import QATrainer

    model = load_qa_model(str(qa_setup["model"]), "fast").eval()
    tokenizer = load_tokenizer(str(qa_setup["model"]))
    collate = collator_for(tokenizer, model.config)
    g = torch.Generator().manual_seed(0)
    windows = []
    for length, start, end in ((20, 3, 5), (50, 30, 33)):  # padded alone to 32 and 64
        ids = torch.randint(5, 100, (length,), generator=g).tolist()
        windows.append({"input_ids": ids, "attention_mask": [1] * length, "start_positions": start,
                        "global_attention_mask": [1] * 4 + [0] * (length - 4),
                        "end_positions": end})  # fmt: skip
    with torch.no_grad():
        alone = [float(QATrainer.compute_loss(None, model, collate([w]))) for w in windows]  # type: ignore[arg-type]
        both = float(QATrainer.compute_loss(None, model, collate(windows)))  # type: ignore[arg-type]
        # the oracle of one window: a softmax over its own tokens only
        out = model(**{k: v for k, v in collate(windows[:1]).items() if "positions" not in k})
        own = out.start_logits[0, :20].log_softmax(-1)[3], out.end_logits[0, :20].log_softmax(-1)[5]
    assert alone[0] == pytest.approx(-float(own[0] + own[1]) / 2, rel=1e-5)
    assert both == pytest.approx(sum(alone) / 2, rel=1e-5)
