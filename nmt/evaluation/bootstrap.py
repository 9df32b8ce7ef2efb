"""The bootstrap: resampling sentences, percentile intervals and the paired significance test.

Confidence intervals are percentile bootstrap intervals (Efron and Tibshirani 1993; Koehn 2004), resampling
sentences with replacement; significance between two systems is the paired bootstrap test of Koehn 2004,
with the same resamples for both systems, made two-sided and given the +1 correction of Monte Carlo p-values
(docs/statistics.md says why, and how it relates to `sacrebleu --paired-bs`).

A resample is a vector of multiplicities (how often each sentence was drawn); summing the resampled
statistics is one matrix product `counts @ stats`, scored by the vectorised formulas of
nmt/evaluation/metrics.py.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from nmt.evaluation.metrics import Metric

MAX_RESAMPLE_CELLS = 4_000_000  # resamples x sentences held in memory at once (32 MB of float64)


def resample_counts(rng: np.random.Generator, sentences: int, samples: int) -> np.ndarray:
    """How often each of `sentences` is drawn in each of `samples` resamples: (samples, n)."""
    drawn = rng.integers(0, sentences, size=(samples, sentences))  # (samples, n) sentence indices
    flat = drawn + np.arange(samples)[:, None] * sentences
    return (
        np.bincount(flat.ravel(), minlength=samples * sentences)
        .reshape(samples, sentences)
        .astype(np.float64)
    )


def tail_cut(samples: int, confidence: float) -> int:
    """How many resamples the percentile interval leaves out in each tail: floor(n (1 - confidence) / 2).

    The largest k for which the interval from the (k+1)-th smallest to the (k+1)-th largest of n resamples
    still holds at least `confidence` of them (n - 2k >= confidence n). It is computed exactly on the decimal
    the confidence was written as (0.9 is 9/10): in floats, 1000 * (1 - 0.9) / 2 is 49.99..., which would
    round the cut down to 49 and keep 902 resamples where 900 are asked for. At 95% it is n // 40, the index
    sacreBLEU's `estimate_ci` uses.
    """
    exact = Fraction(str(float(confidence)))  # str: the shortest decimal that reads back as this float
    return int(samples * (1 - exact) / 2)  # int() of a non-negative Fraction is its floor


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile bootstrap interval: the (k+1)-th smallest and (k+1)-th largest of the n resampled
    scores, k = `tail_cut(n, confidence)`, so that it holds at least `confidence` of the resamples, with the
    same number left out in each tail."""
    ordered = np.sort(samples)
    cut = tail_cut(len(ordered), confidence)
    return float(ordered[cut]), float(ordered[len(ordered) - 1 - cut])


def disagreeing_resamples(delta: float, sample_deltas: np.ndarray) -> int:
    """c of Koehn 2004's paired test: the resamples in which the observed winner does not win.

    delta: system - baseline on the real data; sample_deltas: (n,) the same difference on each resample.
    A resample that ties counts against the winner; with delta = 0 there is no winner and every resample
    counts (c = n).
    """
    if delta > 0:
        return int(np.count_nonzero(sample_deltas <= 0))
    if delta < 0:
        return int(np.count_nonzero(sample_deltas >= 0))
    return len(sample_deltas)


def one_sided_p_value(delta: float, sample_deltas: np.ndarray) -> float:
    """Koehn 2004's share of resamples in which the observed winner does not win, with the +1 correction of
    Monte Carlo p-values (Davison and Hinkley 1997, ch. 4; North et al. 2002): (c + 1) / (n + 1), never 0,
    and 1 when the systems tie on the real data."""
    if delta == 0:
        return 1.0
    return (disagreeing_resamples(delta, sample_deltas) + 1) / (len(sample_deltas) + 1)


def paired_p_value(delta: float, sample_deltas: np.ndarray) -> float:
    """The two-sided paired bootstrap p-value: min(1, 2 (c + 1) / (n + 1)).

    Koehn's one-sided share tests "is the observed winner better?", a direction chosen after seeing the data:
    for two interchangeable systems it falls below alpha in about 2 alpha of test sets (one per tail).
    Doubling it, as for any equal-tailed test, brings the rate of false "different" calls back to alpha:
    it is at most alpha exactly when 0 is outside the equal-tailed (1 - alpha) percentile interval of the
    resampled differences (up to the +1).
    """
    return min(1.0, 2 * one_sided_p_value(delta, sample_deltas))


def bootstrap_scores(
    stats: dict[str, dict[str, np.ndarray]],
    metrics: list[Metric],
    index: np.ndarray,
    samples: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of every system and metric on `samples` resamples of the sentences `index`, the same resamples
    for every system (as the paired test needs).

    stats: system -> metric -> (N, D) per-sentence statistics  ->  system -> metric -> (samples,) scores.
    """
    arrays = {
        name: {m.name: per_metric[m.name][index] for m in metrics} for name, per_metric in stats.items()
    }  # system -> metric -> (n, D)
    out = {name: {m.name: np.empty(samples) for m in metrics} for name in stats}
    chunk = max(1, min(samples, MAX_RESAMPLE_CELLS // len(index)))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        counts = resample_counts(rng, len(index), stop - start)  # (b, n)
        for name, per_metric in arrays.items():
            for metric in metrics:
                summed = counts @ per_metric[metric.name]  # (b, D): exact integer sums in float64
                out[name][metric.name][start:stop] = metric.from_stats(summed)
    return out
