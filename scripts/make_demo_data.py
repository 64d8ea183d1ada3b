"""Regenerate the demo corpus shipped in src/longify/demo/data (deterministic; a test checks it matches)."""

from __future__ import annotations

import sys
from pathlib import Path

from longify.demo.corpus import wikitext

FILES = {"wiki.train.raw": (160, 1), "wiki.valid.raw": (20, 2)}


def render() -> dict[str, str]:
    return {name: wikitext(n, seed=seed) for name, (n, seed) in FILES.items()}


def main(out: str = "src/longify/demo/data") -> int:
    for name, text in render().items():
        Path(out, name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
