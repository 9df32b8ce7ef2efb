"""The evaluator: exact sacreBLEU scores per bucket, bucket edges, bootstrap intervals, paired tests."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import sacrebleu
from sacrebleu.metrics import BLEU, CHRF, TER

import nmt.evaluation.evaluate as evaluation
from nmt.config import EvalConfig
from nmt.errors import UserError
from nmt.evaluation import OVERALL, evaluate_systems
from nmt.evaluation.bootstrap import (
    disagreeing_resamples,
    one_sided_p_value,
    paired_p_value,
    percentile_interval,
    resample_counts,
)
from nmt.evaluation.buckets import assign_buckets, bucket_labels, check_bucket_edges, parse_bucket_edges
from nmt.evaluation.metrics import bleu_from_stats, chrf_from_stats, ter_from_stats
from nmt.plots import plot_attention, plot_bleu_by_length

WORDS = [f"w{i}" for i in range(12)] + ["the", "a", "of", "to", "and", "in", "is", "was"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_test_set(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Sources of 0..70 words and references of about the same length (a few empty lines included)."""
    rng = random.Random(seed)
    sources, references = [], []
    for i in range(n):
        length = 0 if i % 97 == 5 else rng.randint(1, 70)
        sources.append(" ".join(rng.choice(WORDS) for _ in range(length)))
        ref_length = 0 if i % 89 == 7 else max(1, length + rng.randint(-3, 3))
        references.append(" ".join(rng.choice(WORDS) for _ in range(ref_length)))
    return sources, references


def degrade(lines: list[str], drop: float, seed: int) -> list[str]:
    """A worse "system": each word of the reference is dropped with probability `drop`."""
    rng = random.Random(seed)
    return [" ".join(w for w in line.split() if rng.random() >= drop) for line in lines]


@pytest.fixture(scope="module")
def data():
    sources, references = synthetic_test_set(300, seed=3)
    systems = {
        "perfect": list(references),
        "good": degrade(references, 0.1, seed=4),
        "bad": degrade(references, 0.5, seed=5),
    }
    return sources, references, systems


@pytest.fixture(scope="module")
def report(data):
    sources, references, systems = data
    return evaluate_systems(sources, references, systems, EvalConfig(bootstrap_samples=200, seed=7))


# ------------------------------------------------------------------------------------------------------------
# Buckets


def test_bucket_edges_are_half_open_and_partition_every_length():
    edges = (0, 10, 20)
    lengths = [0, 1, 9, 10, 11, 19, 20, 21, 500]
    assert assign_buckets(lengths, edges).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert bucket_labels(edges) == ["0-9", "10-19", "20+"]
    assert bucket_labels((0, 1, 5)) == ["0", "1-4", "5+"]


def test_report_buckets_partition_the_sentences(data, report):
    sources, _, _ = data
    assert sum(report.bucket_sizes) == len(sources) == report.sentences
    lengths = [len(s.split()) for s in sources]
    for index, (low, size) in enumerate(zip(report.config.bucket_edges, report.bucket_sizes, strict=True)):
        high = report.config.bucket_edges[index + 1] if index + 1 < len(report.bucket_sizes) else float("inf")
        assert size == sum(low <= n < high for n in lengths)
    for system in report.systems:
        assert [b.sentences for b in system.buckets] == report.bucket_sizes
        assert system.overall.sentences == len(sources)


@pytest.mark.parametrize("bad", ["", "10,20", "0,10,10", "0,20,10", "0,a", "-5,0,5", "0,1.5"])
def test_bad_bucket_edges_are_user_errors(bad):
    with pytest.raises(UserError, match="bucket edges"):
        parse_bucket_edges(bad)


def test_bucket_edges_from_the_api_are_checked(data):
    sources, references, systems = data
    with pytest.raises(UserError, match="start at 0"):
        evaluate_systems(sources, references, systems, EvalConfig(bucket_edges=(5, 10)))
    assert check_bucket_edges([0, 3]) == (0, 3)


# ------------------------------------------------------------------------------------------------------------
# Scores


def test_reference_as_system_scores_100_in_every_non_empty_bucket(report):
    perfect = report.system("perfect")
    for scores in [*perfect.buckets, perfect.overall]:
        if scores.sentences:
            assert scores.bleu.score == pytest.approx(100.0)
            assert scores.chrf.score == pytest.approx(100.0)
        else:
            assert scores.bleu is None


def test_bucket_scores_equal_sacrebleu_on_the_bucket_lines(data, report):
    sources, references, systems = data
    buckets = assign_buckets([len(s.split()) for s in sources], report.bucket_edges)
    for name, hypotheses in systems.items():
        result = report.system(name)
        assert result.overall.bleu.score == sacrebleu.corpus_bleu(hypotheses, [references]).score
        assert result.overall.chrf.score == sacrebleu.corpus_chrf(hypotheses, [references]).score
        for index, scores in enumerate(result.buckets):
            chosen = np.flatnonzero(buckets == index)
            if not len(chosen):
                continue
            hyps, refs = [hypotheses[i] for i in chosen], [references[i] for i in chosen]
            assert scores.bleu.score == sacrebleu.corpus_bleu(hyps, [refs]).score
            assert scores.chrf.score == sacrebleu.corpus_chrf(hyps, [refs]).score


def test_signatures_are_sacrebleu_signatures(data, report):
    _, references, systems = data
    bleu = BLEU()
    bleu.corpus_score(systems["good"], [references])
    assert report.signatures["BLEU"] == bleu.get_signature().format()
    assert set(report.signatures) == {"BLEU", "chrF"}


def test_tokenizer_choice_is_passed_to_sacrebleu(data):
    sources, references, systems = data
    report = evaluate_systems(sources, references, systems, EvalConfig(tokenize="char", bootstrap_samples=0))
    assert "tok:char" in report.signatures["BLEU"]
    expected = sacrebleu.corpus_bleu(systems["good"], [references], tokenize="char").score
    assert report.system("good").overall.bleu.score == expected
    with pytest.raises(UserError, match="tokenizer"):
        evaluate_systems(sources, references, systems, EvalConfig(tokenize="no-such-tokenizer"))


def test_ter_matches_sacrebleu_when_asked(data):
    sources, references, systems = data
    small = {"good": systems["good"][:60]}
    report = evaluate_systems(
        sources[:60], references[:60], small, EvalConfig(ter=True, bootstrap_samples=50)
    )
    assert (
        report.system("good").overall.ter.score
        == sacrebleu.corpus_ter(small["good"], [references[:60]]).score
    )
    assert "TER" in report.signatures


def test_empty_hypotheses_and_references_are_scored():
    sources = ["a b", "", "c d e", "f"]
    references = ["x y", "", "", "z"]
    systems = {"empty": ["", "", "", ""], "echo": ["x y", "", "w", "z"]}
    report = evaluate_systems(sources, references, systems, EvalConfig(bootstrap_samples=20, ter=True))
    for name, hypotheses in systems.items():
        assert report.system(name).overall.bleu.score == sacrebleu.corpus_bleu(hypotheses, [references]).score
    assert report.system("empty").overall.bleu.score == 0.0


# ------------------------------------------------------------------------------------------------------------
# The vectorised formulas against sacreBLEU's own, on resampled statistics


def _random_sums(rows: list[list], samples: int, seed: int) -> np.ndarray:
    counts = resample_counts(np.random.default_rng(seed), len(rows), samples)  # (samples, n)
    return counts @ np.asarray(rows, dtype=np.float64)


@pytest.mark.parametrize("size", [1, 3, 40])
def test_vectorised_scores_match_sacrebleu(data, size):
    _, references, systems = data
    hyps, refs = systems["bad"][:size], references[:size]
    for metric, from_stats in (
        (BLEU(), bleu_from_stats),
        (CHRF(), chrf_from_stats),
        (TER(), ter_from_stats),
    ):
        rows = metric._extract_corpus_statistics(hyps, [refs])
        sums = _random_sums(rows, samples=50, seed=size)
        expected = [
            metric._compute_score_from_stats([int(v) if v == int(v) else v for v in s]).score for s in sums
        ]
        np.testing.assert_allclose(from_stats(sums), expected, rtol=1e-12, atol=1e-12)


def test_vectorised_bleu_edge_cases_match_sacrebleu():
    cases = [
        [0, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # nothing produced
        [3, 3, 0, 0, 0, 0, 3, 2, 1, 0],  # no match at all
        [3, 5, 2, 1, 0, 0, 3, 2, 1, 0],  # shorter than 4 words: no 4-grams
        [9, 5, 6, 3, 0, 0, 9, 8, 7, 6],  # unmatched 3- and 4-grams: exp smoothing
        [7, 7, 7, 6, 5, 4, 7, 6, 5, 4],  # perfect
    ]
    expected = [BLEU.compute_bleu(c[2:6], c[6:], c[0], c[1], smooth_method="exp").score for c in cases]
    np.testing.assert_allclose(bleu_from_stats(np.array(cases)), expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------
# Bootstrap


def test_every_interval_contains_its_point_estimate(report):
    """The reported interval holds its estimate, stays within the metric's range and, for a system whose
    resamples differ (not the perfect one, which scores 100 on every resample), has a width: an interval
    function gone wrong cannot hide behind the widening to the estimate (it would leave [score, score])."""
    for system in report.systems:
        for scores in [*system.buckets, system.overall]:
            for interval in scores.scores.values():
                assert interval.low <= interval.score <= interval.high
                if system.name == "perfect":
                    assert interval.low == pytest.approx(100) and interval.high == pytest.approx(100)
                else:
                    assert interval.low >= 0 and interval.high <= 100
                    assert interval.high - interval.low > 0.1


def test_raw_percentile_intervals_contain_the_estimates_on_real_sized_buckets(data, monkeypatch):
    """Widening an interval to its estimate guards tiny buckets; it is not what makes the test above pass."""
    raw = []

    def recording(samples, confidence):
        raw.append(percentile_interval(samples, confidence))
        return raw[-1]

    monkeypatch.setattr(evaluation, "percentile_interval", recording)
    sources, references, systems = data
    report = evaluate_systems(sources, references, systems, EvalConfig(bootstrap_samples=200, seed=7))
    estimates = [  # in the order they are bootstrapped: slice by slice, then system, then metric
        interval.score
        for index in range(len(report.bucket_labels) + 1)
        for system in report.systems
        for interval in [*system.buckets, system.overall][index].scores.values()
    ]
    assert len(raw) == len(estimates) > 0
    for (low, high), estimate in zip(raw, estimates, strict=True):
        assert low <= estimate <= high


def test_intervals_narrow_as_the_bucket_grows(data):
    sources, references, systems = data
    config = EvalConfig(bootstrap_samples=300, seed=2)
    small = evaluate_systems(sources, references, {"good": systems["good"]}, config)
    big = evaluate_systems(sources * 4, references * 4, {"good": systems["good"] * 4}, config)
    for a, b in zip(
        [*small.systems[0].buckets, small.systems[0].overall],
        [*big.systems[0].buckets, big.systems[0].overall],
        strict=True,
    ):
        if a.sentences < 5:
            continue
        assert b.bleu.score == pytest.approx(a.bleu.score)  # same data, same corpus BLEU
        assert b.bleu.high - b.bleu.low < a.bleu.high - a.bleu.low
        assert b.chrf.high - b.chrf.low < a.chrf.high - a.chrf.low


def test_same_seed_gives_identical_json_and_another_seed_does_not(data):
    sources, references, systems = data

    def dump(seed: int) -> str:
        config = EvalConfig(bootstrap_samples=100, seed=seed)
        return json.dumps(
            evaluate_systems(sources, references, systems, config).to_json_dict(), sort_keys=True
        )

    assert dump(11) == dump(11)
    assert dump(11) != dump(12)


def test_without_bootstrap_there_are_no_intervals_or_tests(data):
    sources, references, systems = data
    report = evaluate_systems(sources, references, systems, EvalConfig(bootstrap_samples=0))
    assert report.system("good").overall.bleu.low is None
    assert report.comparisons == []
    assert "good" in report.format_table()


def test_resample_counts_draw_each_resample_of_full_size():
    counts = resample_counts(np.random.default_rng(0), sentences=7, samples=20)
    assert counts.shape == (20, 7)
    assert (counts.sum(axis=1) == 7).all()
    assert (counts >= 0).all()


# ------------------------------------------------------------------------------------------------------------
# Paired significance (Koehn 2004)


def test_a_system_against_itself_is_never_significant(data, monkeypatch):
    """Twins tie on the data and on every resample (the paired test draws the same resamples for both), so
    whichever of them is taken as the observed winner, no resample agrees: p = 1 computed from the resamples,
    not only from the tie on the data."""
    tested = []

    def recording(delta, sample_deltas):
        tested.append((delta, sample_deltas))
        return paired_p_value(delta, sample_deltas)

    monkeypatch.setattr(evaluation, "paired_p_value", recording)
    sources, references, systems = data
    twins = {"one": systems["good"], "two": list(systems["good"])}
    report = evaluate_systems(sources, references, twins, EvalConfig(bootstrap_samples=200))
    assert report.comparisons
    for comparison in report.comparisons:
        assert comparison.delta == 0.0
        assert comparison.p_value == 1.0
    assert len(tested) == len(report.comparisons)
    for delta, sample_deltas in tested:
        assert delta == 0.0 and len(sample_deltas) == 200
        assert paired_p_value(1e-9, sample_deltas) == 1.0  # "two" observed better: no resample agrees
        assert paired_p_value(-1e-9, sample_deltas) == 1.0  # "one" observed better: no resample agrees


def test_a_clearly_better_system_is_significant(report):
    overall = {(c.baseline, c.system, c.metric): c for c in report.comparisons if c.slice == OVERALL}
    comparison = overall[("good", "bad", "BLEU")]
    assert comparison.delta < 0
    assert comparison.p_value < 0.05
    assert overall[("good", "bad", "chrF")].p_value < 0.05


def test_baseline_compares_every_system_with_it_in_every_slice(data):
    sources, references, systems = data
    report = evaluate_systems(sources, references, systems, EvalConfig(bootstrap_samples=50, baseline="bad"))
    pairs = {(c.baseline, c.system) for c in report.comparisons}
    assert pairs == {("bad", "perfect"), ("bad", "good")}
    slices = {c.slice for c in report.comparisons}
    non_empty = {label for label, size in zip(report.bucket_labels, report.bucket_sizes, strict=True) if size}
    assert slices == non_empty | {OVERALL}
    with pytest.raises(UserError, match="baseline 'nope'"):
        evaluate_systems(sources, references, systems, EvalConfig(baseline="nope"))


def test_compare_tests_only_the_pairs_it_names(data):
    sources, references, systems = data
    config = EvalConfig(bootstrap_samples=50, compare=("good=bad", "perfect=good", "good=bad"))
    report = evaluate_systems(sources, references, systems, config)
    assert list(dict.fromkeys((c.baseline, c.system) for c in report.comparisons)) == [
        ("bad", "good"),
        ("good", "perfect"),
    ]
    for compare, message in [
        (("good",), "SYSTEM=BASELINE"),
        (("good=nope",), "'nope'"),
        (("good=good",), "itself"),
    ]:
        with pytest.raises(UserError, match=message):
            evaluate_systems(sources, references, systems, EvalConfig(compare=compare))
    with pytest.raises(UserError, match="not both"):
        evaluate_systems(sources, references, systems, EvalConfig(compare=("good=bad",), baseline="bad"))


def test_paired_p_value_counts_resamples_against_the_observed_sign():
    """The counts of Koehn's test are unchanged (2 of 4 resamples against a positive delta, 3 of 4 against a
    negative one, ties against the winner); the p-values now carry the +1 correction, (c + 1) / (n + 1), and
    are doubled into a two-sided p-value (tests/test_significance.py checks both on larger examples)."""
    deltas = np.array([1.0, 2.0, -1.0, 0.0])
    assert disagreeing_resamples(1.5, deltas) == 2  # was: paired_p_value(1.5, deltas) == 0.5 == 2 / 4
    assert disagreeing_resamples(-1.5, deltas) == 3  # was: paired_p_value(-1.5, deltas) == 0.75 == 3 / 4
    assert one_sided_p_value(1.5, deltas) == pytest.approx(3 / 5)
    assert one_sided_p_value(-1.5, deltas) == pytest.approx(4 / 5)
    assert paired_p_value(1.5, deltas) == paired_p_value(-1.5, deltas) == 1.0  # 2 * 3/5 and 2 * 4/5, capped
    assert paired_p_value(0.0, deltas) == 1.0


# ------------------------------------------------------------------------------------------------------------
# Inputs


def test_line_count_mismatch_names_the_counts(data):
    sources, references, systems = data
    with pytest.raises(UserError, match=r"line counts differ: .*299.*300"):
        evaluate_systems(sources[:-1], references, systems)


# ------------------------------------------------------------------------------------------------------------
# Plots


def test_bleu_by_length_plot_is_a_png(report, tmp_path):
    path = tmp_path / "plots" / "bleu.png"
    plot_bleu_by_length(report, path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["bleu.png"]  # no temporary file left behind


def test_attention_plot_is_a_png_and_checks_its_shape(tmp_path):
    weights = np.random.default_rng(0).dirichlet(np.ones(4), size=3)  # (T=3, S=4)
    path = tmp_path / "attention.png"
    plot_attention(weights, ["la", "casa", "rossa", "</s>"], ["the", "red", "house"], path, title="example")
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with pytest.raises(ValueError, match="do not match"):
        plot_attention(weights, ["la", "casa"], ["the", "red", "house"], tmp_path / "bad.png")
