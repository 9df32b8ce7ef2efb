"""The bootstrap: resampling sentences, percentile intervals and the paired significance test.

Confidence intervals are percentile bootstrap intervals (Efron and Tibshirani 1993; Koehn 2004), resampling
sentences with replacement; significance between two systems is the paired bootstrap test of Koehn 2004,
with the same resamples for both systems.

A resample is a vector of multiplicities (how often each sentence was drawn); summing the resampled
statistics is one matrix product `counts @ stats`, scored by the vectorised formulas of
nmt/evaluation/metrics.py.
"""

from __future__ import annotations

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


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The percentile bootstrap interval; order statistics as in sacreBLEU (index n // 40 at 95%)."""
    ordered = np.sort(samples)
    cut = int(len(ordered) * (1 - confidence) / 2)
    return float(ordered[cut]), float(ordered[len(ordered) - 1 - cut])


def paired_p_value(delta: float, sample_deltas: np.ndarray) -> float:
    """Koehn 2004: the share of resamples where the observed winner does not win (1 when tied)."""
    if delta > 0:
        return float(np.mean(sample_deltas <= 0))
    if delta < 0:
        return float(np.mean(sample_deltas >= 0))
    return 1.0


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
