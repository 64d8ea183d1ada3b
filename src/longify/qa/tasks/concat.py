"""``--concat-contexts K``: long-context variants of any dataset (the thesis' SQ3 / XQ3).

Each paragraph is joined with K-1 other paragraphs of the same language, drawn and placed at random with a
seeded generator; its questions keep their ids and get the joined context with answer offsets shifted.
Paragraphs are drawn per language in file order from the same seed, so parallel files (XQuAD: the same
paragraphs in every language) get the same distractors in every language.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import replace

from longify.errors import LongifyError
from longify.qa.tasks.example import Answer, QAExample


def _layouts(paragraphs: list[str], k: int, rng: random.Random) -> list[tuple[list[int], int]]:
    """For each paragraph: the paragraph indices of its joined context and where it stands among them."""
    layouts = []
    for index in range(len(paragraphs)):
        others = [j + (j >= index) for j in rng.sample(range(len(paragraphs) - 1), k - 1)]
        position = rng.randrange(k)
        layouts.append(([*others[:position], index, *others[position:]], position))
    return layouts


def concat_contexts(
    examples: Iterable[QAExample], k: int, *, seed: int = 0, separator: str = "\n\n"
) -> Iterator[QAExample]:
    """The examples with each context replaced by itself plus K-1 seeded distractor paragraphs."""
    if k < 1:
        raise LongifyError(f"--concat-contexts {k}: expected a positive number of paragraphs")
    examples = list(examples)
    if k == 1:
        yield from examples
        return
    paragraphs: dict[str, dict[str, int]] = defaultdict(dict)  # language -> context -> index
    for example in examples:
        paragraphs[example.language].setdefault(example.context, len(paragraphs[example.language]))
    joined: dict[tuple[str, str], tuple[str, int]] = {}  # (language, context) -> (new context, shift)
    for language, index in paragraphs.items():
        texts = list(index)
        if len(texts) < k:
            raise LongifyError(
                f"--concat-contexts {k}: language {language} has only {len(texts)} distinct paragraphs"
            )
        for text, (order, position) in zip(texts, _layouts(texts, k, random.Random(seed)), strict=True):
            parts = [texts[j] for j in order]
            shift = sum(len(p) + len(separator) for p in parts[:position])
            joined[language, text] = (separator.join(parts), shift)
    for example in examples:
        context, shift = joined[example.language, example.context]
        answers = [Answer(a.text, a.answer_start + shift) for a in example.answers]
        yield replace(example, context=context, answers=answers)
