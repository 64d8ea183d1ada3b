"""``longify inspect MODEL``: what a saved model will actually do, read from its files (nothing is run).

The attention that runs and at which lengths, the positions usable, the family and target, the conversion's
provenance (conversion.json, pretraining records) and whether the config and the weights agree. A
full-attention class with a position table longer than its family's released checkpoints and no
conversion.json (the thesis's released XLM-R with 4098 positions) is said to be one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

from longify.errors import LongifyError, first_line
from longify.families import FAMILIES, usable_positions
from longify.loading import LOAD_ERRORS, check_model_source
from longify.targets.base import Target, full_attention_text
from longify.targets.registry import DEFAULT_TARGET, target_of

CONVERSION = "conversion.json"
PRETRAIN_RECORDS = ("longify_run.json", "pretrain_metrics.json", "results.json", "trainer_state.json")
RELEASED_POSITIONS = 512  # the positions of every family's released short checkpoints


@dataclass
class Inspection:
    """What ``longify inspect`` reports about one model folder."""

    model: str
    model_type: str
    architecture: str | None
    family: str | None
    target: str
    positions: int
    attention: str
    conversion: dict[str, Any] | None
    pretraining: list[str]
    weights: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"model: {self.model}",
            f"class: {self.architecture or '-'} (model_type {self.model_type}; family {self.family or '-'})",
            f"target: {self.target}",
            f"positions usable: {self.positions}",
            f"attention: {self.attention}",
            f"conversion: {_conversion_line(self.conversion)}",
            f"pretraining records: {', '.join(self.pretraining) or 'none'}",
            f"config and weights: {self.weights}",
        ]
        return out + [f"note: {n}" for n in self.notes]


def inspect_model(model: str | Path) -> Inspection:
    """Read ``model``'s folder; a folder with no model config is one line (LongifyError)."""
    path = Path(model)
    check_model_source(str(path), "MODEL")
    if not path.is_dir():
        raise LongifyError(f"{path}: not a model folder (expected a directory with config.json)")
    try:
        config = AutoConfig.from_pretrained(path)
    except LOAD_ERRORS as err:
        raise LongifyError(f"{path}: cannot read the model config: {first_line(err)}") from None
    conversion = _read_json(path / CONVERSION)
    model_type = str(config.model_type)
    family = model_type if model_type in FAMILIES else (conversion or {}).get("family")
    positions = _positions(config)
    notes: list[str] = []
    target = _target(config, conversion, positions, notes)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    return Inspection(
        model=str(path),
        model_type=model_type,
        architecture=architecture,
        family=family,
        target=target,
        positions=positions,
        attention=_attention(config),
        conversion=conversion,
        pretraining=[name for name in PRETRAIN_RECORDS if (path / name).is_file()],
        weights=_weights_agree(path, config),
        notes=notes,
    )


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{path}: not readable JSON: {err}") from None
    return value if isinstance(value, dict) else None


def _long_target(config: PretrainedConfig) -> Target | None:
    """The target whose checkpoint class ``config`` names (``full`` for a known family's), else None."""
    try:
        return target_of(config)
    except LongifyError:
        return None


def _positions(config: PretrainedConfig) -> int:
    target = _long_target(config)
    return target.usable_positions(config) if target else usable_positions(config, default_offset=0)


def _target(
    config: PretrainedConfig, conversion: dict[str, Any] | None, positions: int, notes: list[str]
) -> str:
    if conversion is not None:
        return str(conversion.get("target", DEFAULT_TARGET))  # records from before targets are Longformers
    target = _long_target(config)
    if target is None:
        return "short (a source model)"
    if target.model_type is not None:  # its own class: a long model whatever its records
        return f"{target.name} (no conversion.json)"
    if positions > RELEASED_POSITIONS:
        notes.append(
            f"a full-attention {config.model_type} with {positions} positions and no conversion.json: it loads "
            f"as plain full attention over all {positions} positions (not a Longformer, whatever its name says); "
            f"positions beyond {RELEASED_POSITIONS} are whatever training left there"
        )
        return f"{target.name} (long positions, no conversion record)"
    return "short (a source model)"


def _attention(config: PretrainedConfig) -> str:
    target = _long_target(config)
    return target.attention_text(config) if target else full_attention_text(config)


def _weights_agree(path: Path, config: PretrainedConfig) -> str:
    """The safetensors headers against the config's MaskedLM class: missing, unexpected, mis-shaped tensors."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return "not checked (no .safetensors file)"
    saved: dict[str, tuple[int, ...]] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                saved[key] = tuple(handle.get_slice(key).get_shape())
    cls = MODEL_FOR_MASKED_LM_MAPPING.get(type(config), None)
    if cls is None:
        return f"not checked (no masked-LM class for {config.model_type})"
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in cls(config).state_dict().items()}
    tied = set(getattr(cls, "_tied_weights_keys", None) or [])
    missing = sorted(k for k in expected if k not in saved and k not in tied)
    shaped = sorted(k for k in expected if k in saved and saved[k] != expected[k])
    unexpected = sorted(k for k in saved if k not in expected)
    if not (missing or shaped or unexpected):
        return f"agree ({len(saved)} tensors)"
    parts = []
    if shaped:
        k = shaped[0]
        parts.append(f"{len(shaped)} shaped unlike the config (e.g. {k}: {saved[k]} vs {expected[k]})")
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} not in {cls.__name__} (e.g. {unexpected[0]})")
    return "DISAGREE: " + "; ".join(parts)


def _conversion_line(record: dict[str, Any] | None) -> str:
    if record is None:
        return "none (no conversion.json)"
    v = record.get("verification") or {}
    check = "not verified"
    if v:
        check = (
            f"verified max |diff| hidden {v.get('max_abs_diff_hidden', 0):.1e} on {v.get('lengths')} tokens"
        )
    new = record.get("new_tensors") or []
    return (
        f"from {record.get('source')} ({record.get('family')}), {record.get('position_init')} positions, {check}"
        f"; {len(new)} new tensors"
    )
