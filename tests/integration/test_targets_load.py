"""Each target's checkpoint is a standard one: ``AutoModelForMaskedLM`` loads the expected class in a
process that never imports longify, and reloading a BigBird runs its block-sparse attention there too."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import FAMILIES
from longify.convert import convert

EXPECTED = {
    ("roberta", "full"): "RobertaForMaskedLM",
    ("xlm-roberta", "full"): "XLMRobertaForMaskedLM",
    ("camembert", "full"): "CamembertForMaskedLM",
    ("bert", "full"): "BertForMaskedLM",
    ("data2vec-text", "full"): "Data2VecTextForMaskedLM",
    **{(family, "bigbird"): "BigBirdForMaskedLM" for family in FAMILIES},
    **{(family, "longformer"): "LongformerForMaskedLM" for family in FAMILIES},
}
OPTIONS = {
    "longformer": {"attention_window": 32},
    "full": {},
    "bigbird": {"block_size": 4, "num_random_blocks": 1},
}

LOADER = """
import json, sys
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer
from transformers.models.big_bird.modeling_big_bird import BigBirdBlockSparseAttention
found = {}
for name, path in json.loads(sys.argv[1]).items():
    model = AutoModelForMaskedLM.from_pretrained(path).eval()
    AutoTokenizer.from_pretrained(path)
    calls = []
    for m in model.modules():
        if isinstance(m, BigBirdBlockSparseAttention):
            m.register_forward_hook(lambda *a: calls.append(1))
    ids = torch.randint(5, model.config.vocab_size, (1, 128))
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    found[name] = [type(model).__name__, len(calls)]
assert "longify" not in sys.modules, "the loader imported longify"
print(json.dumps(found))
"""


def test_auto_classes_load_every_target_without_longify(tiny_sources, tmp_path) -> None:
    paths = {}
    for (family, target), _ in EXPECTED.items():
        out = tmp_path / f"{family}-{target}"
        convert(str(tiny_sources[family]), out, max_pos=128, target=target, verify=False, **OPTIONS[target])
        paths[f"{family}/{target}"] = str(out)
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(paths)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    for (family, target), cls in EXPECTED.items():
        name, sparse_layers = found[f"{family}/{target}"]
        assert name == cls, (family, target)
        assert sparse_layers == (2 if target == "bigbird" else 0), (family, target)
