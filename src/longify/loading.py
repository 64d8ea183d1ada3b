"""What every command checks before it loads a model: the source exists as what it claims to be, and a
broken weights file is one line naming it, not a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

from longify.errors import LongifyError, first_line

# what from_pretrained raises for a missing, unreadable or corrupt (truncated, garbage) model or tokenizer
LOAD_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    RuntimeError,
    TypeError,
    SafetensorError,
    EOFError,
)


def looks_like_path(source: str) -> bool:
    """A local path rather than a hub id (``org/name`` or ``name``)."""
    return source.startswith(("/", ".", "~")) or source.count("/") > 1 or "\\" in source


def check_model_source(source: str, flag: str) -> None:
    """Refuse, in one line, a local model source that is missing, a file, or a folder without config.json."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_like_path(source):
            raise LongifyError(f"{flag} {source}: no such directory")
        return  # a hub id: from_pretrained says whether it can be reached
    if not path.is_dir():
        raise LongifyError(f"{flag} {source}: must be a model directory (with config.json), not a file")
    if not (path / "config.json").is_file():
        raise LongifyError(f"{flag} {source}: no config.json in this directory")


def check_weight_files(source: str) -> None:
    """Refuse, in one line naming it, a safetensors file of a local model folder whose header is corrupt or
    that is shorter than its header says (read from the headers only: cheap, before any long work)."""
    for weights in sorted(Path(source).glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except SafetensorError as bad:
            raise LongifyError(
                f"{weights}: corrupt or truncated safetensors file ({first_line(bad)})"
            ) from None


def load_failure(source: str, err: BaseException, what: str) -> LongifyError:
    """The one-line error for a failed ``from_pretrained``: a broken safetensors file is named itself."""
    if isinstance(err, SafetensorError):
        try:
            check_weight_files(source)
        except LongifyError as named:
            return named
    return LongifyError(f"{source}: cannot load {what}: {first_line(err)}")


def saved_weight_names(model_dir: str) -> set[str] | None:
    """The tensor names stored in a local safetensors checkpoint (one file or an index), read from the
    headers only; None when unknown (a hub id, another format)."""
    path = Path(model_dir)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
        except (OSError, ValueError, KeyError):
            return None
    weights = path / "model.safetensors"
    if not weights.is_file():
        return None
    try:
        with safe_open(str(weights), framework="pt") as f:
            return set(f.keys())
    except (OSError, SafetensorError):
        return None


def has_qa_head(model_dir: str) -> bool | None:
    """Whether a saved checkpoint holds a trained span head (``qa_outputs``); None when unknown."""
    names = saved_weight_names(model_dir)
    return None if names is None else any(n.split(".")[-2:-1] == ["qa_outputs"] for n in names)


def check_tokenizer(tokenizer: Any, name: str, flag: str | None) -> None:
    """Refuse a tokenizer that is only its special tokens: what transformers builds from a model folder that
    holds no tokenizer files (every text would become unknown tokens and score 0, silently). ``flag``: the
    command's flag that names another tokenizer (None: it has none)."""
    vocab = len(tokenizer.get_vocab())
    if vocab <= len(tokenizer.all_special_tokens):
        raise LongifyError(
            f"{name}: no tokenizer files there (transformers made an empty tokenizer of {vocab} special tokens); "
            + (
                f"pass {flag} with the model's tokenizer"
                if flag
                else "copy the model's tokenizer files into it"
            )
        )


def check_vocab(
    tokenizer: Any, tokenizer_name: str, config: Any, model_name: str, *, pairs: bool = False
) -> None:
    """Refuse another model's tokenizer where it shows: more tokens than the model has embeddings, or, for
    text pairs (``pairs``: QA's question/context), token type ids for a model with one token type (either
    indexes past an embedding table). Single sequences get type 0 only: no type check for them. A model with
    no token-type table (``type_vocab_size`` 0: DeBERTa-v2/mDeBERTa) ignores the ids: no check either."""
    size = getattr(config, "vocab_size", None)
    if isinstance(size, int) and len(tokenizer) > size:
        raise LongifyError(
            f"{tokenizer_name}: a tokenizer of {len(tokenizer)} tokens, but the model {model_name} has "
            f"{size} token embeddings: not its tokenizer"
        )
    types = getattr(config, "type_vocab_size", None)
    if pairs and types == 1 and "token_type_ids" in tokenizer.model_input_names:
        raise LongifyError(
            f"{tokenizer_name}: a tokenizer that gives question/context pairs token type ids 0 and 1, but the "
            f"model {model_name} has {types} token type embedding: pass the model's own tokenizer"
        )


def load_tokenizer(name: str, flag: str | None = "--tokenizer_name") -> Any:
    """The fast tokenizer at ``name`` (``pretrain``, the QA commands); ``flag``: the command's flag naming another one (None: it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
    except LOAD_ERRORS as err:
        hint = f"pass {flag}" if flag else "the model folder needs its tokenizer files"
        raise LongifyError(f"{name}: cannot load a tokenizer ({first_line(err)}); {hint}") from None
    if not getattr(tokenizer, "is_fast", False):
        raise LongifyError(
            f"{name}: a fast tokenizer (with offsets) is required, got {type(tokenizer).__name__}"
        )
    check_tokenizer(tokenizer, name, flag)
    return tokenizer
