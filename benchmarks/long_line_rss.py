"""Peak RSS of tokenizing a corpus held on one line vs the same bytes in lines (``load_blocks``).

    .venv/bin/python benchmarks/long_line_rss.py [--mb 20] [--family roberta]

Each case runs in a fresh process (ru_maxrss is a high-water mark); the tokenizer is the tiny one of
``longify.tiny`` (many tokens per character: a harder case than a real vocabulary). Set PYTHONPATH to an
older ``src`` to measure the code before a change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import resource, sys, time
from transformers import AutoTokenizer
from longify.mlm.data import load_blocks
tok = AutoTokenizer.from_pretrained(sys.argv[1])
t0 = time.time()
_, stats = load_blocks(sys.argv[2], tok, 512, cache_dir=sys.argv[3], num_proc=1)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, stats.n_tokens, round(time.time() - t0, 1))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=20)
    parser.add_argument("--family", default="roberta")
    args = parser.parse_args()
    from longify.demo.corpus import sample_texts  # noqa: F401 (the package must import)
    from longify.tiny import save_tiny

    root = Path(tempfile.mkdtemp(prefix="longify-rss-"))
    model = save_tiny(args.family, root / "model", max_len=64)
    wiki = Path(__file__).resolve().parents[1] / "src/longify/demo/data/wiki.train.raw"
    lines = [line.strip() for line in wiki.read_text(encoding="utf-8").splitlines() if line.strip()]
    size = int(args.mb * 1e6)
    text, i = [], 0
    while sum(map(len, text)) < size:
        text.append(lines[i % len(lines)])
        i += 1
    (root / "lines.txt").write_text("\n".join(text) + "\n", encoding="utf-8")
    (root / "one.txt").write_text(" ".join(text) + "\n", encoding="utf-8")
    results = {}
    for case in ("lines", "one"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, str(model), str(root / f"{case}.txt"), str(root / f"cache-{case}")],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        results[case] = {"peak_rss_mb": int(out[-3]), "tokens": int(out[-2]), "seconds": float(out[-1])}
    from longify.cpu import cpu_info

    record = {"mb": args.mb, "family": args.family, "cpu": cpu_info().record(), **results}
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
