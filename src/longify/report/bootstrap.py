"""Long vs short: the paired bootstrap over questions of the difference in F1 and EM.

Both models' per-question scores are paired by (seed, language, question id); only pairs both models scored
count.
The point estimate is the mean difference over all pairs. Each resample draws questions with replacement
(all seeds of a drawn question go together, since one question is equally hard for every seed) and recomputes
that mean; the interval is the percentile interval of the resampled means.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RESAMPLES = 10_000
# the fewest a report accepts: percentile intervals rest on the tails (the 2.5th percentile of 1000 resamples
# is the 25th smallest); Efron & Tibshirani (1993) advise at least 1000 for them
MIN_RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK = 250  # resamples drawn at once: memory stays at _CHUNK x questions


@dataclass(frozen=True)
class Interval:
    """A difference (long - short, in points) with its bootstrap interval."""

    delta: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Comparison:
    f1: Interval
    exact_match: Interval
    questions: int
    pairs: int
    seeds: int


def pair_scores(long: pd.DataFrame, short: pd.DataFrame) -> pd.DataFrame:
    """Rows (seed, language, id, d_f1, d_em) of the pairs both models scored; inputs have seed, language,
    id, f1 and exact_match."""
    keys = ["seed", "language", "id"]
    both = long.merge(short, on=keys, suffixes=("_long", "_short"), validate="one_to_one")
    return pd.DataFrame(
        {
            **{k: both[k] for k in keys},
            "d_f1": both["f1_long"] - both["f1_short"],
            "d_em": both["exact_match_long"] - both["exact_match_short"],
        }
    )


def paired_bootstrap(
    pairs: pd.DataFrame, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> Comparison | None:
    """The bootstrap of the mean paired difference (see the module docstring); None without pairs."""
    if pairs.empty:
        return None
    per_question = pairs.groupby(["language", "id"], sort=True).agg(
        n=("d_f1", "size"), f1=("d_f1", "sum"), em=("d_em", "sum")
    )
    n = per_question["n"].to_numpy(dtype=np.float64)
    sums = per_question[["f1", "em"]].to_numpy(dtype=np.float64)  # per question: sum over its seeds
    q = len(n)
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, 2))
    for start in range(0, resamples, _CHUNK):
        stop = min(start + _CHUNK, resamples)
        draw = rng.integers(0, q, size=(stop - start, q))
        means[start:stop] = sums[draw].sum(axis=1) / n[draw].sum(axis=1)[:, None]
    alpha = (1.0 - level) / 2
    low, high = np.quantile(means, [alpha, 1.0 - alpha], axis=0)
    delta = sums.sum(axis=0) / n.sum()
    return Comparison(
        f1=Interval(float(delta[0]), float(low[0]), float(high[0])),
        exact_match=Interval(float(delta[1]), float(low[1]), float(high[1])),
        questions=q,
        pairs=int(n.sum()),
        seeds=int(pairs["seed"].nunique()),
    )
