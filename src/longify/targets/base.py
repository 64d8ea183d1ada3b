"""The target seam: what one long target owns, behind one small interface.

A target turns a loaded short source (a ``*ForMaskedLM`` of a known family) into a long model:

- ``config``: the target's config from the source config and the options (``check_options`` first, before
  anything loads; ``check_source`` once the source config is read: a pair that cannot be exact is refused);
- ``weights``: the target's state dict from the source's (``source_key`` names where each tensor comes from;
  tensors with no source are new and named);
- ``checks``: its verification regime (which config runs, on inputs of which length), and ``prove_long``:
  what must be shown at the full length after the comparison (and the model left ready to save);
- ``card``: its model-card text; ``label``, ``describe``: what messages and exported models' cards call it;
- what is its own: ``model_type`` (of its checkpoints' class, if it has one), ``options`` (the conversion
  options no other target takes; ``settled``: the conversion.json entries they fix), ``windows`` (per layer);
- hooks for the later stages: ``qa_extras`` (global attention mask, padding multiple), ``frozen`` (what
  pretraining leaves untrained), ``install_attention`` (its attention kernels), ``attention_text`` (what
  ``longify inspect`` says it runs).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING

from longify.errors import LongifyError
from longify.families import Family
from longify.targets.positions import extend_positions


class Options(Protocol):
    """What a target reads of the conversion's options (``longify.convert.plan.ConvertOptions``)."""

    target: str
    max_pos: int
    attention_window: int | str | list[int] | None
    position_init: str
    global_init: str
    block_size: int | None
    num_random_blocks: int | None
    seed: int


@dataclass(frozen=True)
class Check:
    """One comparison of the converted weights with the source: ``config`` (the target's, or a variant of it
    with the same weights) on inputs of up to ``length`` tokens; ``full``: real text pairs and two random rows,
    the second padded; otherwise one unpadded random row (a costly full-length check)."""

    config: PretrainedConfig
    length: int
    full: bool = True


@dataclass(frozen=True)
class QAExtras:
    """What a QA batch needs for this target: a global attention mask (question + CLS), the multiple the
    sequence length is padded to (1: none), and whether it must carry ``token_type_ids`` (zeros where the
    tokenizer makes none: BigBird's QA head would otherwise make its own, 1 on the context)."""

    global_attention: bool
    pad_multiple: int
    token_type_ids: bool = False


@dataclass
class Weights:
    """A target state dict, the keys of the tensors that do not come from the source (random inits), and
    those the source family lacks whose zeros are exact (key -> why: DistilBERT's token types)."""

    state: dict[str, torch.Tensor]
    new: list[str]
    zeros: dict[str, str] = field(default_factory=dict)


class Target:
    """Base of every target: the shared weight mapping; subclasses say what differs."""

    name: str = ""
    model_class: type[PreTrainedModel] = PreTrainedModel  # fixed-class targets; see model_class_of
    summary: str = ""  # one line for --help and the card
    label: str = ""  # what a message calls a model of this target ("a {label} with N usable positions")
    # the config model_type of every checkpoint of this target; None: the source family's own (its config alone
    # cannot tell a long checkpoint from a short one)
    model_type: str | None = None
    options: tuple[str, ...] = ()  # the conversion options (ConvertOptions fields) no other target takes

    # --- options and config -------------------------------------------------------------------------
    def check_options(self, options: Options) -> None:
        """Refuse options this target cannot use, before anything loads (one line naming the flag)."""
        if options.block_size is not None or options.num_random_blocks is not None:
            raise LongifyError(
                f"--block-size/--num-random-blocks: BigBird's; not used by --target {self.name}"
            )

    def check_source(
        self, config: PretrainedConfig, family: Family, options: Options, head_is_new: bool
    ) -> None:
        """Refuse a source this target cannot reproduce exactly (one line saying why)."""

    def config(
        self, source: PretrainedConfig, family: Family, options: Options, tokenizer: PreTrainedTokenizerBase
    ) -> PretrainedConfig:
        raise NotImplementedError

    def position_offset(self, config: PretrainedConfig) -> int:
        """Rows of the target's position table before position 0."""
        raise NotImplementedError

    positions_key: str = ""  # the target's position table

    def positions_key_of(self, family: Family) -> str:
        """The state-dict key of the target's position table."""
        return self.positions_key

    def model_class_of(self, config: PretrainedConfig) -> type[PreTrainedModel]:
        """The HF class the target's checkpoint is saved as."""
        return self.model_class

    def windows(self, config: PretrainedConfig) -> list[int]:
        """The per-layer attention windows of a config of this target ([]: a target without windows)."""
        return []

    # --- weights --------------------------------------------------------------------------------------
    def source_key(self, family: Family, key: str) -> str | None:
        """The source checkpoint key whose values fill ``key``; None: a new tensor."""
        raise NotImplementedError

    def weights(
        self,
        source: PreTrainedModel,
        family: Family,
        config: PretrainedConfig,
        options: Options,
        position_init: str,
        extend: Callable[..., torch.Tensor] = extend_positions,
    ) -> Weights:
        """Every target tensor from the source (positions extended by ``extend`` with ``position_init``), new
        ones drawn from ``options.seed``; a source tensor that fills nothing is an error (a mapping that lost
        weights)."""
        src_sd = source.state_dict()
        gen = torch.Generator().manual_seed(options.seed)
        std = float(getattr(config, "initializer_range", 0.02))
        out: dict[str, torch.Tensor] = {}
        new: list[str] = []
        zeros: dict[str, str] = {}
        used: set[str] = set()
        for key, shape in target_shapes(self.model_class_of(config), config).items():
            src_key = self.source_key(family, key)
            if src_key is None and family.zero_reason(key) is not None:
                out[key] = torch.zeros(shape)
                zeros[key] = str(family.zero_reason(key))
                continue
            if src_key is None:
                out[key] = new_tensor(key, shape, std, gen)
                new.append(key)
                continue
            if src_key not in src_sd:
                raise LongifyError(
                    f"source checkpoint: missing {src_key!r} (needed for {key}); is it a {family.model_type}?"
                )
            used.add(src_key)
            value = src_sd[src_key].detach().clone().float()
            if key == self.positions_key_of(family):
                value = extend(
                    value,
                    src_offset=family.position_offset(source.config),
                    dst_offset=self.position_offset(config),
                    new_len=options.max_pos,
                    method=position_init,
                    init_std=std,
                    seed=options.seed,
                )
            if value.shape != shape:
                raise LongifyError(
                    f"source checkpoint: {src_key} has shape {tuple(value.shape)}, expected {tuple(shape)}"
                )
            out[key] = value
        leftover = sorted(k for k in src_sd if k not in used and not k.startswith(family.dropped_prefixes))
        if leftover:
            raise LongifyError(
                f"source checkpoint: parameters with no {self.model_class_of(config).__name__} counterpart: {', '.join(leftover[:5])}"
            )
        return Weights(out, new, zeros)

    # --- verification ---------------------------------------------------------------------------------
    def checks(self, config: PretrainedConfig, source_len: int) -> list[Check]:
        """The comparisons with the source: by default the target's own config on inputs of the source's
        length (text pairs and random rows, one padded)."""
        return [Check(config, source_len, True)]

    def comparing(self) -> AbstractContextManager[object]:
        """Held while the checks run (BigBird: HF's warning that short inputs run full attention, expected
        there, silenced)."""
        return nullcontext()

    def prove_long(self, model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> dict[str, Any] | None:
        """After the comparison, on the model it ran: what must run on ``batch`` (one row of ``max_pos``
        tokens), recorded in conversion.json (None: nothing beyond the comparison). Leaves ``model`` as it is
        to be saved."""
        return None

    def check_saved(self, config: dict[str, Any], where: str) -> None:
        """Refuse a written config.json that does not say what the conversion meant (e.g. BigBird left full)."""

    def record(self, config: PretrainedConfig, options: Options) -> dict[str, Any]:
        """The target's own entries of conversion.json."""
        return {}

    def settled(self, options: Options) -> dict[str, Any]:
        """The conversion.json entries that this target's own ``options`` settle, from the options alone (a
        conversion recorded with other values was made with other options)."""
        return {}

    # --- model card and later stages ------------------------------------------------------------------
    def card(self, record: dict[str, Any]) -> str:
        raise NotImplementedError

    def describe(self, config: PretrainedConfig) -> str:
        """What the card of an exported model calls a model of ``config`` ("A Longformer")."""
        raise NotImplementedError

    def attention_text(self, config: PretrainedConfig) -> str:
        """The attention a saved model of ``config`` runs, and at which lengths (``longify inspect``)."""
        return full_attention_text(config)

    global_projections: bool = False  # global q/k/v that pretraining copies from the local ones at its end

    def usable_positions(self, config: PretrainedConfig) -> int:
        """Tokens a saved model of this target takes (its position table less the rows before position 0)."""
        return int(config.max_position_embeddings) - self.position_offset(config)

    def qa_extras(self, config: PretrainedConfig) -> QAExtras:
        return QAExtras(global_attention=False, pad_multiple=1)

    def frozen(self, parameter_name: str) -> bool:
        """Parameters pretraining leaves untrained (they get no gradient from masked-LM)."""
        return False

    def install_attention(self, model: PreTrainedModel, impl: str) -> PreTrainedModel:
        """Put this target's attention kernels into a loaded model (default: HF's own; ``impl`` is the
        ``--attention`` flag, Longformer's kernel choice)."""
        return model

    def attention_of(self, model: PreTrainedModel) -> str:
        """The attention a loaded model runs, for run records: the class of the first attention module that holds
        no other (its first layer's self-attention, whatever the family calls its layers)."""
        modules = [m for m in model.base_model.modules() if "Attention" in type(m).__name__]
        inner = next(m for m in modules if not any("Attention" in type(c).__name__ for c in m.children()))
        return type(inner).__name__


def full_attention_text(config: PretrainedConfig) -> str:
    """``longify inspect``'s attention line of a full-attention model: SDPA where its masked-LM class
    supports it."""
    cls = MODEL_FOR_MASKED_LM_MAPPING.get(type(config), None)
    sdpa = bool(getattr(cls, "_supports_sdpa", False))
    return f"full attention at every length ({'SDPA by default' if sdpa else 'eager'})"


def target_shapes(model_class: type[PreTrainedModel], config: PretrainedConfig) -> dict[str, torch.Size]:
    """The state-dict keys and shapes of ``model_class(config)``, without allocating it."""
    with torch.device("meta"):
        return {k: v.shape for k, v in model_class(config).state_dict().items()}


def new_tensor(key: str, shape: torch.Size, std: float, gen: torch.Generator) -> torch.Tensor:
    """HF's init for a tensor the source lacks: matrices N(0, std), LayerNorm weights 1, biases 0."""
    if len(shape) > 1:
        return torch.randn(shape, generator=gen) * std
    if "LayerNorm.weight" in key or "layer_norm.weight" in key:
        return torch.ones(shape)
    return torch.zeros(shape)


def materialize(
    model_class: type[PreTrainedModel], config: PretrainedConfig, state: dict[str, torch.Tensor]
) -> PreTrainedModel:
    """A ``model_class`` holding exactly ``state``: built on the meta device (no time spent on a random init)
    when the class has no buffers outside the state dict, else on the CPU (its position-id and token-type
    buffers are built from the config) and loaded."""
    with torch.device("meta"):
        model = model_class(config)
    if any(True for _ in model.buffers()):
        with torch.random.fork_rng(devices=[]):  # the init is overwritten; the caller's RNG is untouched
            model = model_class(config)
        model.load_state_dict(state, strict=True)
    else:
        model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()
    return model.eval()
