"""A deterministic synthetic encyclopedia in the WikiText-103 raw layout.

Articles about invented towns: a `` = Title = `` heading, `` = = Section = = `` sub-headings, blank
lines between paragraphs, as in ``wiki.train.raw``. The facts are drawn from a seeded generator, so the
text is reproducible, has real structure for a masked LM to learn (names recur, facts are consistent
inside an article), and can carry planted facts for the QA stage.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

_SYLLABLES = (
    "ka",
    "lo",
    "mi",
    "ra",
    "ten",
    "vel",
    "dor",
    "is",
    "an",
    "bre",
    "su",
    "thal",
    "or",
    "wen",
    "gar",
)
_REGIONS = (
    "the northern valley",
    "the eastern coast",
    "the high plateau",
    "the river delta",
    "the western hills",
)
_TRADES = (
    "fishing",
    "weaving",
    "copper mining",
    "salt trade",
    "shipbuilding",
    "olive farming",
    "glassmaking",
)
_RIVERS = ("Amber", "Silver", "Quiet", "Long", "Red", "Cold", "Winding")
_FOUNDERS = (
    "Ada",
    "Boris",
    "Clara",
    "Dmitri",
    "Elena",
    "Farid",
    "Greta",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Liam",
)
_SURNAMES = ("Marsh", "Stone", "Reed", "Vale", "Frost", "Hale", "Brook", "Thorn", "Wells", "Ash")
_FILLER = (
    "The climate is mild in summer and wet in winter.",
    "Local records describe several floods during the following decades.",
    "A stone bridge connects the old market to the harbour district.",
    "The town hall was rebuilt after a fire destroyed the original wooden building.",
    "Travellers often remarked on the narrow streets and the painted doors.",
    "A small museum keeps tools, maps and letters from the early settlers.",
    "Festivals are held each spring, when the roads are dry again.",
    "The population grew slowly until the railway reached the region.",
    "Most houses are built from the grey limestone quarried nearby.",
    "Schools in the town teach in two languages.",
)


@dataclass(frozen=True)
class Town:
    """The facts of one article; the QA stage asks about them."""

    name: str
    region: str
    founder: str
    year: int
    trade: str
    river: str
    population: int


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def make_town(rng: random.Random) -> Town:
    return Town(
        name=_name(rng),
        region=rng.choice(_REGIONS),
        founder=f"{rng.choice(_FOUNDERS)} {rng.choice(_SURNAMES)}",
        year=rng.randint(1200, 1900),
        trade=rng.choice(_TRADES),
        river=f"{rng.choice(_RIVERS)} River",
        population=rng.randint(800, 90000),
    )


def article(town: Town, rng: random.Random, filler: int = 6) -> list[str]:
    """The paragraphs of one article (without headings); facts first, then filler and repeats."""
    facts = [
        f"{town.name} is a town in {town.region}, on the banks of the {town.river}.",
        f"It was founded in {town.year} by {town.founder}.",
        f"The economy of {town.name} has long depended on {town.trade}.",
        f"In the last census {town.name} had a population of {town.population}.",
    ]
    paragraphs = [" ".join(facts[:2]), " ".join(facts[2:])]
    for _ in range(filler):
        sentences = rng.sample(_FILLER, 3)
        if rng.random() < 0.5:
            sentences.append(f"Many families in {town.name} still work in {town.trade}.")
        paragraphs.append(" ".join(sentences))
    return paragraphs


def wikitext(n_articles: int, seed: int = 0, filler: int = 6) -> str:
    """``n_articles`` articles in the WikiText-103 raw layout (blank lines hold a single space)."""
    rng = random.Random(seed)
    lines: list[str] = [" "]
    for _ in range(n_articles):
        town = make_town(rng)
        paras = article(town, rng, filler)
        lines += [f" = {town.name} = ", " ", f" {paras[0]} ", f" {paras[1]} ", " "]
        lines += [" = = History = = ", " ", *(f" {p} " for p in paras[2:]), " "]
    return "\n".join(lines) + "\n"


def sample_texts(n: int = 200, seed: int = 0) -> list[str]:
    """Plain paragraphs for training tiny tokenizers (a few tens of KB)."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < n:
        out += article(make_town(rng), rng, filler=2)
    return out[:n]
