"""YAML and JSON that refuse a key given twice in one mapping, which the plain loaders silently resolve to
the last value (a spec's ``seeds`` given twice ran 10 jobs instead of 6; a model defined twice lost its first
definition). YAML's merge key (``<<: *anchor``, then overriding keys) is not a duplicate."""

from __future__ import annotations

import json
from typing import Any

import yaml

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeys(ValueError):
    """Keys given twice: one line each (``path: given twice (lines A and B); ...``)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _key_path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _twice(first: int, again: int) -> str:
    lines = f"on line {first}" if first == again else f"(lines {first} and {again})"
    return f"given twice {lines}; each key may appear once"


def duplicate_keys(node: yaml.Node | None, where: str = "", seen: set[int] | None = None) -> list[str]:
    """One line per key that repeats an earlier key of the same mapping, naming its path and both lines."""
    seen = set() if seen is None else seen
    if node is None or id(node) in seen:  # an alias repeats a node already checked
        return []
    seen.add(id(node))
    problems: list[str] = []
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
            if name is not None and key.tag != _MERGE:
                line = key.start_mark.line + 1
                if (key.tag, name) in first:
                    problems.append(f"{_key_path(where, name)}: {_twice(first[key.tag, name], line)}")
                else:
                    first[key.tag, name] = line
            problems += duplicate_keys(value, _key_path(where, name or "?"), seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            problems += duplicate_keys(item, f"{where}[{i}]", seen)
    return problems


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that raises ``DuplicateKeys`` (every repeated key) before building anything."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        problems = duplicate_keys(node)
        if problems:
            raise DuplicateKeys(problems)
        return None if node is None else loader.construct_document(node)
    finally:
        loader.dispose()


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise DuplicateKeys([f"{key}: given twice; each key may appear once" for key in repeated])
    return dict(pairs)


def load_json(text: str) -> Any:
    """``json.loads`` that raises ``DuplicateKeys`` for a key given twice in one object."""
    return json.loads(text, object_pairs_hook=_unique_pairs)
