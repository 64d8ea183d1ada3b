"""Each target's checkpoint is a standard one: ``AutoModelForMaskedLM`` loads the expected class in a
process that never imports longify, and reloading a BigBird runs its block-sparse attention there too; for
every family of the registry and every target it allows (tiny DistilBERT, ELECTRA generator and
discriminator, ALBERT, DeBERTa-v2, large-shaped XLM-R among them), in one subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

from transformers import AutoConfig, ElectraForPreTraining
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from helpers import FAMILIES, SOURCE_LEN, TARGET_OPTIONS, allowed_targets
from longify.convert import convert
from longify.families import FAMILIES as REGISTRY
from longify.tiny import save_tiny, tiny_model, train_tokenizer

EXTRA = ("electra-discriminator", "xlm-roberta-large")  # sources of a family's other shapes (more_sources)


def expected_class(model_type: str, target: str) -> str:
    """The masked-LM class of a target: Longformer's, BigBird's, or (``full``) the source family's own."""
    own = {"longformer": "LongformerForMaskedLM", "bigbird": "BigBirdForMaskedLM"}
    return own.get(target) or MODEL_FOR_MASKED_LM_MAPPING_NAMES[model_type]


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


def more_sources(root) -> dict:
    """Tiny sources of the registry's families beyond the prefix-renaming ones, and of EXTRA."""
    sources = {
        name: save_tiny(name, root / name, max_len=SOURCE_LEN) for name in REGISTRY if name not in FAMILIES
    }
    sources["xlm-roberta-large"] = save_tiny(
        "xlm-roberta",
        root / "xlm-roberta-large",
        max_len=SOURCE_LEN,
        hidden=128,
        heads=2,
        intermediate=512,
        layers=4,
    )
    tok = train_tokenizer("electra", model_max_length=SOURCE_LEN)
    disc = tiny_model(
        "electra", tok, max_len=SOURCE_LEN, model_class=ElectraForPreTraining, embedding_size=32
    )
    sources["electra-discriminator"] = root / "electra-discriminator"
    disc.save_pretrained(sources["electra-discriminator"])
    tok.save_pretrained(sources["electra-discriminator"])
    return sources


def test_auto_classes_load_every_target_without_longify(tiny_sources, tmp_path) -> None:
    sources = {**tiny_sources, **more_sources(tmp_path / "sources")}
    assert set(sources) == set(REGISTRY) | set(EXTRA)  # every family of the registry
    assert set(TARGET_OPTIONS) == set(OPTIONS)
    expected = {}
    for name, source in sources.items():  # every target the registry allows each source
        model_type = AutoConfig.from_pretrained(source).model_type
        expected.update({(name, t): expected_class(model_type, t) for t in allowed_targets(source)})
    assert len(expected) > 3 * len(FAMILIES)  # the refusals leave most pairs
    paths = {}
    layers = {}
    for (family, target), _ in expected.items():
        out = tmp_path / f"{family}-{target}"
        convert(str(sources[family]), out, max_pos=128, target=target, verify=False, **OPTIONS[target])
        paths[f"{family}/{target}"] = str(out)
        layers[family, target] = json.loads((out / "config.json").read_text()).get("num_hidden_layers")
    proc = subprocess.run(
        [sys.executable, "-c", LOADER, json.dumps(paths)], capture_output=True, text=True, timeout=300,
        cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    for (family, target), cls in expected.items():
        name, sparse_layers = found[f"{family}/{target}"]
        assert name == cls, (family, target)
        assert sparse_layers == (layers[family, target] if target == "bigbird" else 0), (family, target)
