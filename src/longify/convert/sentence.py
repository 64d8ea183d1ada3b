"""The sentence-transformers layout, kept through a conversion.

A sentence-transformers checkpoint (e.g. all-MiniLM-L6-v2) is a bare encoder (``BertModel``, no MLM head)
plus ``modules.json`` (the module pipeline: Transformer -> Pooling -> Normalize ...), one folder per module
after the first (``1_Pooling/config.json``), ``sentence_bert_config.json`` (the Transformer module's
``max_seq_length``, ``do_lower_case``) and ``config_sentence_transformers.json``. ``longify convert`` copies
them beside the Longformer, with ``max_seq_length`` raised to the long model's positions, so that
``SentenceTransformer(OUT)`` loads the long encoder with the source's pooling.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from longify.errors import LongifyError

logger = logging.getLogger(__name__)

MODULES = "modules.json"
TRANSFORMER_CONFIG = "sentence_bert_config.json"
ROOT_FILES = (MODULES, TRANSFORMER_CONFIG, "config_sentence_transformers.json")


def is_sentence_transformers(src: str | Path) -> bool:
    """A local folder in the sentence-transformers layout (``modules.json`` at its root)."""
    return (Path(src) / MODULES).is_file()


def module_folders(src: Path) -> list[str]:
    """The module folders ``modules.json`` names (the Transformer module's own path ``""`` excluded)."""
    try:
        modules = json.loads((src / MODULES).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise LongifyError(f"{src / MODULES}: cannot read the sentence-transformers modules: {err}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise LongifyError(f"{src / MODULES}: expected a list of modules ({{idx, name, path, type}})")
    paths = [str(m.get("path") or "") for m in modules]
    for path in paths:
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise LongifyError(f"{src / MODULES}: module path {path!r} leaves the model folder")
    return [p for p in paths if p]


def copy_sentence_transformers(src: str | Path, dest: Path, max_pos: int) -> dict[str, Any] | None:
    """Copy the sentence-transformers files of ``src`` into ``dest`` (``max_seq_length`` = ``max_pos``);
    what was kept, for conversion.json, or None when ``src`` is not in that layout."""
    src = Path(src)
    if not is_sentence_transformers(src):
        return None
    kept: list[str] = []
    for name in ROOT_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dest / name)
            kept.append(name)
    for folder in module_folders(src):
        if (src / folder).is_dir():  # modules without files (2_Normalize) may have no folder
            shutil.copytree(src / folder, dest / folder, dirs_exist_ok=True)
            kept.append(folder + "/")
    source_len = None
    config_path = dest / TRANSFORMER_CONFIG
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise LongifyError(f"{src / TRANSFORMER_CONFIG}: not valid JSON: {err}") from None
        source_len = config.get("max_seq_length")
    else:
        kept.append(TRANSFORMER_CONFIG)
    config["max_seq_length"] = max_pos
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "sentence-transformers layout kept (%s); max_seq_length %s -> %d",
        ", ".join(kept),
        source_len,
        max_pos,
    )
    return {"files": kept, "source_max_seq_length": source_len, "max_seq_length": max_pos}
