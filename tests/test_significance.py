"""Significance that means what it says: the paired bootstrap p-value and its +1 correction, Holm's
correction, exact percentile intervals, agreement with `sacrebleu --paired-bs`, and calibration."""

from __future__ import annotations

import gzip
import itertools
import logging
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
from conftest import corpus_path
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest, estimate_ci
from test_evaluation import degrade, synthetic_test_set

from nmt.config import Correction, EvalConfig
from nmt.errors import UserError
from nmt.evaluation import OVERALL, Comparison, evaluate_systems
from nmt.evaluation.bootstrap import (
    bootstrap_scores,
    disagreeing_resamples,
    one_sided_p_value,
    paired_p_value,
    percentile_interval,
    tail_cut,
)
from nmt.evaluation.evaluate import judge
from nmt.evaluation.metrics import bleu_from_stats, make_metrics
from nmt.evaluation.significance import (
    format_p_value,
    holm_adjusted,
    resamples_needed,
    smallest_p_value,
)

# ------------------------------------------------------------------------------------------------------------
# The p-value: (c + 1) / (n + 1), two-sided


def test_p_value_equation_on_hand_made_resample_deltas():
    deltas = np.array([3.0, 1.0, 0.0, -2.0, 5.0, 0.5, -1.0, 2.0, 4.0])  # n = 9
    # Observed +2: the resamples at 0, -2 and -1 do not agree (a tie counts against the winner): c = 3.
    assert disagreeing_resamples(2.0, deltas) == 3
    assert one_sided_p_value(2.0, deltas) == pytest.approx((3 + 1) / (9 + 1))
    assert paired_p_value(2.0, deltas) == pytest.approx(2 * (3 + 1) / (9 + 1))
    # Observed -2: every resample at or above 0 disagrees: c = 7, and the two-sided value is capped at 1.
    assert disagreeing_resamples(-2.0, deltas) == 7
    assert one_sided_p_value(-2.0, deltas) == pytest.approx(8 / 10)
    assert paired_p_value(-2.0, deltas) == 1.0
    # A tie on the real data has no winner: p = 1 whatever the resamples say.
    assert one_sided_p_value(0.0, deltas) == paired_p_value(0.0, deltas) == 1.0


def test_p_value_is_never_zero_and_counts_exactly():
    rng = np.random.default_rng(0)
    for n in (1, 2, 10, 999):
        agreeing = rng.uniform(0.1, 3.0, size=n)  # every resample agrees with a positive delta
        assert one_sided_p_value(1.0, agreeing) == 1 / (n + 1)  # the smallest it can be, not 0
        assert paired_p_value(1.0, agreeing) == min(1.0, 2 / (n + 1)) == smallest_p_value(n)
        deltas = rng.integers(-3, 4, size=n).astype(float)  # many exact ties with 0
        for delta in (0.7, -0.7):
            c = sum(1 for d in deltas if (d <= 0 if delta > 0 else d >= 0))
            assert one_sided_p_value(delta, deltas) == (c + 1) / (n + 1)
            assert paired_p_value(delta, deltas) == min(1.0, 2 * (c + 1) / (n + 1))


def test_p_values_are_printed_without_zero_and_kept_exact_in_json():
    assert format_p_value(0.04) == "p=0.040"
    assert format_p_value(2 / 1001) == "p=0.002"
    assert format_p_value(2 / 10001) == "p<0.001"
    assert format_p_value(1.0) == "p=1.000"
    for n in range(1, 30_000, 7):
        assert format_p_value(2 / (n + 1)) != "p=0.000"

    sources, references = synthetic_test_set(80, seed=1)
    systems = {"good": list(references), "bad": degrade(references, 0.6, seed=2)}
    config = EvalConfig(bucket_edges=(0,), bootstrap_samples=3000, seed=3)
    report = evaluate_systems(sources, references, systems, config)
    table = report.format_table()
    assert "p<0.001" in table and "p=0.000" not in table
    [comparison] = [
        c for c in report.to_json_dict()["comparisons"] if c["metric"] == "BLEU" and c["slice"] == OVERALL
    ]
    assert comparison["p_value"] == 2 / 3001  # the exact float: every resample agrees
    assert comparison["significant"] is True and comparison["p_adjusted"] is None


def test_smallest_p_value_and_the_resamples_it_needs():
    for alpha, family in itertools.product((0.05, 0.01, 0.1, 0.2), (1, 2, 7, 48)):
        needed = resamples_needed(alpha, family)
        assert smallest_p_value(needed, family) <= alpha
        if needed > 1:
            assert smallest_p_value(needed - 1, family) > alpha
    assert resamples_needed(0.05) == 39


# ------------------------------------------------------------------------------------------------------------
# Holm 1979


def holm_rejections(p_values: list[float], alpha: float) -> set[int]:
    """Holm's sequentially rejective procedure, as the paper states it: sort the p-values, reject while the
    i-th smallest is at most alpha / (m - i + 1), stop at the first that is not."""
    m = len(p_values)
    rejected = set()
    for rank, index in enumerate(sorted(range(m), key=lambda i: p_values[i]), start=1):
        if p_values[index] > alpha / (m - rank + 1):
            break
        rejected.add(index)
    return rejected


def test_holm_on_a_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 x 0.005, 3 x 0.01, 2 x 0.03, 1 x 0.04 = 0.02, 0.03, 0.06, 0.04;
    # the running maximum makes the last 0.06, so that it never falls below the one before it.
    assert holm_adjusted([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjusted([0.3, 0.6]) == pytest.approx([0.6, 0.6])
    assert holm_adjusted([0.9, 0.8]) == [1.0, 1.0]  # capped at 1
    assert holm_adjusted([0.02]) == [0.02]  # one test: nothing to correct
    assert holm_adjusted([]) == []


def test_holm_matches_its_definition_on_random_families():
    rng = np.random.default_rng(1)
    for trial in range(300):
        m = int(rng.integers(1, 12))
        p = (
            rng.choice([0.001, 0.004, 0.01, 0.02, 0.5, 1.0], size=m)
            if trial % 3 == 0
            else rng.uniform(0, 0.3, m)
        )
        p = [float(x) for x in p]  # every third family has exact ties
        adjusted = holm_adjusted(p)
        order = sorted(range(m), key=lambda i: p[i])
        for rank, index in enumerate(order, start=1):  # min(1, max_{j <= i} (m - j + 1) p_(j))
            expected = min(1.0, max((m - j + 1) * p[order[j - 1]] for j in range(1, rank + 1)))
            assert adjusted[index] == pytest.approx(expected)
        assert all(p[i] <= adjusted[i] <= 1.0 for i in range(m))
        assert all(
            adjusted[a] <= adjusted[b] for a, b in itertools.pairwise(order)
        )  # monotone in the raw order
        for alpha in (0.01, 0.05, 0.1, 0.2):
            assert {i for i in range(m) if adjusted[i] <= alpha} == holm_rejections(p, alpha)


def test_holm_correction_in_the_report_adjusts_each_metric_over_pairs_and_slices():
    sources, references = synthetic_test_set(200, seed=4)
    systems = {
        "a": degrade(references, 0.1, seed=5),
        "b": degrade(references, 0.15, seed=6),
        "c": degrade(references, 0.4, seed=7),
    }
    edges = (0, 20, 40)
    plain = evaluate_systems(
        sources, references, systems, EvalConfig(bucket_edges=edges, bootstrap_samples=2000)
    )
    holm = evaluate_systems(
        sources,
        references,
        systems,
        EvalConfig(bucket_edges=edges, bootstrap_samples=2000, correction=Correction.holm),
    )
    assert [c.p_value for c in plain.comparisons] == [c.p_value for c in holm.comparisons]  # same resamples
    for metric in ("BLEU", "chrF"):
        family = [c for c in holm.comparisons if c.metric == metric]
        assert len(family) == 3 * 4  # 3 pairs x (3 buckets + all)
        assert [c.p_adjusted for c in family] == holm_adjusted([c.p_value for c in family])
        assert [c.significant for c in family] == [c.p_adjusted <= 0.05 for c in family]
    assert all(c.p_adjusted is None and c.significant == (c.p_value <= 0.05) for c in plain.comparisons)
    table = plain.format_table()
    assert "12 comparisons (3 pairs x 4 slices), not corrected for multiple comparisons" in table
    assert "about 0.6 of them would be marked * by chance" in table
    assert "12 comparisons (3 pairs x 4 slices); p-values Holm-adjusted over all 12" in holm.format_table()
    with pytest.raises(UserError, match="alpha"):
        evaluate_systems(sources, references, systems, EvalConfig(alpha=1.5))


def test_too_few_resamples_for_the_correction_are_reported():
    sources, references = synthetic_test_set(60, seed=8)
    systems = {"a": list(references), "b": degrade(references, 0.5, seed=9)}
    config = EvalConfig(bucket_edges=(0, 20, 40), bootstrap_samples=100, correction=Correction.holm)
    report = evaluate_systems(sources, references, systems, config)
    table = report.format_table()
    # 4 comparisons: Holm's smallest p-value is 4 x 2 / 101 = 0.079 > 0.05, whatever the data.
    assert "no difference can be significant" in table and "--bootstrap 159 or more" in table
    assert not any(c.significant for c in report.comparisons)


# ------------------------------------------------------------------------------------------------------------
# Percentile intervals: the exact order statistic


def brute_force_cut(n: int, confidence: str) -> int:
    """The most resamples that can be left out of each tail while the rest still hold `confidence` of all."""
    wanted = Fraction(confidence) * n
    return max(k for k in range(n) if n - 2 * k >= wanted)


@pytest.mark.parametrize("confidence", ["0.95", "0.9", "0.8", "0.5", "0.99", "0.999", "0.68"])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 19, 39, 40, 41, 99, 199, 999, 1000, 1001, 4999])
def test_percentile_interval_is_the_exact_order_statistic(n, confidence):
    cut = brute_force_cut(n, confidence)
    assert tail_cut(n, float(confidence)) == cut
    samples = np.random.default_rng(n).permutation(n).astype(float)  # the values 0..n-1, shuffled
    low, high = percentile_interval(samples, float(confidence))
    assert (low, high) == (cut, n - 1 - cut)
    inside = np.count_nonzero((samples >= low) & (samples <= high))
    assert inside >= Fraction(confidence) * n  # covers at least `confidence` of the resamples
    assert low == n - 1 - high  # as many left out below as above
    if n - 2 * (cut + 1) >= 1:
        assert inside - 2 < Fraction(confidence) * n  # and one more out of each tail would not


def test_the_cut_no_longer_rounds_down_and_matches_sacrebleu_at_95():
    assert int(1000 * (1 - 0.9) / 2) == 49 and int(1000 * (1 - 0.8) / 2) == 99  # the float arithmetic of old
    assert tail_cut(1000, 0.9) == 50 and tail_cut(1000, 0.8) == 100
    for n in range(1, 3000):
        assert tail_cut(n, 0.95) == n // 40  # sacreBLEU's estimate_ci index
    scores = np.random.default_rng(0).normal(30, 2, size=1000)
    low, high = percentile_interval(scores, 0.95)
    mean, half_width = estimate_ci(scores)
    assert half_width == pytest.approx((high - low) / 2)


# ------------------------------------------------------------------------------------------------------------
# Agreement with sacreBLEU's own paired bootstrap on real sentences


def first_lines(path, count: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in itertools.islice(handle, count)]


@pytest.mark.corpora
@pytest.mark.parametrize(
    ("drops", "different"),
    [((0.1, 0.3), True), ((0.1, 0.1), False)],
    ids=["10%-vs-30%-of-words-dropped", "two-different-10%-drops"],
)
def test_direction_and_verdict_agree_with_sacrebleu_paired_bs(drops, different, monkeypatch):
    """Multi30k test2016 (German), first 300 lines; each "system" drops words of the reference at random (a
    crude but real-text stand-in for an MT system that leaves words out). sacreBLEU's test is the one
    `sacrebleu --paired-bs` runs (1000 resamples, its default seed); docs/statistics.md compares the two."""
    references = first_lines(corpus_path("multi30k", "test2016.de.gz"), 300)
    sources = first_lines(corpus_path("multi30k", "test2016.en.gz"), 300)
    baseline, system = degrade(references, drops[0], seed=1), degrade(references, drops[1], seed=2)

    config = EvalConfig(bucket_edges=(0,), bootstrap_samples=1000)
    report = evaluate_systems(sources, references, {"baseline": baseline, "system": system}, config)
    ours = {c.metric: c for c in report.comparisons if c.slice == OVERALL}

    monkeypatch.delenv("SACREBLEU_SEED", raising=False)  # sacreBLEU's default seed, 12345
    logging.getLogger("sacrebleu").setLevel(logging.WARNING)
    metrics = {"BLEU": BLEU(references=[references]), "chrF": CHRF(references=[references])}
    _, scores = PairedTest([("baseline", baseline), ("system", system)], metrics, None, test_type="bs")()
    for ours_name, theirs_name in (("BLEU", "BLEU"), ("chrF", "chrF2")):
        base_result, system_result = scores[theirs_name]
        theirs_delta = system_result.score - base_result.score
        assert np.sign(ours[ours_name].delta) == np.sign(theirs_delta) != 0
        assert ours[ours_name].delta == pytest.approx(theirs_delta)
        assert ours[ours_name].significant == (system_result.p_value < 0.05) == different


# ------------------------------------------------------------------------------------------------------------
# Calibration: interchangeable systems are called different at about the nominal rate


def interchangeable_trials(trials: int, sentences: int, resamples: int, buckets: int):
    """Each trial: two systems that take, sentence by sentence, one of two equally good variants (a coin
    decides which system gets which), so that neither is better; tested by the paired bootstrap in `buckets`
    random slices of the sentences and overall. Yields the trial's Comparisons, overall last."""
    _, references = synthetic_test_set(sentences, seed=11)
    [bleu] = make_metrics(references, EvalConfig())[:1]
    one = np.asarray(bleu.statistics(degrade(references, 0.2, seed=12)), dtype=np.float64)  # (N, D)
    two = np.asarray(bleu.statistics(degrade(references, 0.2, seed=13)), dtype=np.float64)
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        coin = rng.integers(0, 2, size=sentences).astype(bool)[:, None]
        stats = {"a": {"BLEU": np.where(coin, one, two)}, "b": {"BLEU": np.where(coin, two, one)}}
        bucket = rng.integers(0, max(buckets, 1), size=sentences)
        # the random slices, then every sentence (overall) last
        slices = [np.flatnonzero(bucket == i) for i in range(buckets)] + [np.arange(sentences)]
        comparisons = []
        for index in slices:
            if not len(index):
                continue
            samples = bootstrap_scores(stats, [bleu], index, resamples, rng)
            observed = {
                name: bleu_from_stats(s["BLEU"][index].sum(axis=0)[None])[0] for name, s in stats.items()
            }
            delta = float(observed["b"] - observed["a"])
            p = paired_p_value(delta, samples["b"]["BLEU"] - samples["a"]["BLEU"])
            comparisons.append(Comparison("a", "b", str(len(comparisons)), "BLEU", delta, p))
        yield comparisons


def test_interchangeable_systems_are_called_different_at_about_the_nominal_rate():
    """200 trials of 100 sentences and 200 resamples at alpha = 0.05. Measured: 6.0% of them are called
    significant; the one-sided share (c + 1) / (n + 1), undoubled, would call 11.5% (about 2 alpha)."""
    called, one_sided_called = [], []
    for [comparison] in interchangeable_trials(trials=200, sentences=100, resamples=200, buckets=0):
        called.append(judge([comparison], EvalConfig(alpha=0.05))[0].significant)
        one_sided_called.append(comparison.p_value / 2 <= 0.05)  # (c + 1) / (n + 1): the share, undoubled
    # About alpha: neither the 2 alpha of a one-sided test nor a test that never rejects.
    assert 0.01 <= np.mean(called) < 0.10
    assert np.mean(one_sided_called) > np.mean(called)


def test_holm_keeps_the_family_wise_rate_of_interchangeable_systems_near_alpha():
    """200 trials of 160 sentences, tested overall and in 2 random halves (3 tests per trial), 200 resamples.
    Measured: 14.5% of the trials have a false call among the 3 uncorrected tests, 3.5% with Holm."""
    plain, holm = [], []
    for comparisons in interchangeable_trials(trials=200, sentences=160, resamples=200, buckets=2):
        uncorrected = judge([replace(c) for c in comparisons], EvalConfig(alpha=0.05))
        plain.append(any(c.significant for c in uncorrected))
        corrected = judge(comparisons, EvalConfig(alpha=0.05, correction=Correction.holm))
        holm.append(any(c.significant for c in corrected))
    assert np.mean(holm) < 0.10
    assert np.mean(plain) > np.mean(holm)
