"""`evaluate_systems`: every system's corpus scores overall and by source-length bucket, with bootstrap
intervals and paired significance tests.

Each point estimate is sacreBLEU's own corpus score (nmt/evaluation/metrics.py); the intervals and tests come
from one set of resamples per slice, shared by all systems (nmt/evaluation/bootstrap.py). The inputs are lines
already in memory: reading files and translating with checkpoints is the caller's job.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from nmt.config import Correction, EvalConfig
from nmt.errors import UserError
from nmt.evaluation.alignment import AlignmentScores, GoldAlignment, Link, alignment_scores
from nmt.evaluation.bootstrap import bootstrap_scores, paired_p_value, percentile_interval
from nmt.evaluation.buckets import (
    assign_buckets,
    bucket_labels,
    check_bucket_edges,
    default_bucket_edges,
    source_length_unit,
    source_lengths,
)
from nmt.evaluation.metrics import BLEU_NAME, Metric, make_metrics
from nmt.evaluation.report import (
    OVERALL,
    BleuDetail,
    Comparison,
    EvalReport,
    Interval,
    SliceScores,
    SystemResult,
)
from nmt.evaluation.significance import holm_adjusted
from nmt.languages import resolve_bleu_tokenizer, tokenizer_warning

logger = logging.getLogger(__name__)


def check_line_counts(named_counts: dict[str, int]) -> None:
    """One clear error when the inputs (described by name, e.g. "reference ref.en") differ in length."""
    if len(set(named_counts.values())) > 1:
        listing = ", ".join(f"{name} has {count}" for name, count in named_counts.items())
        raise UserError(
            f"line counts differ: {listing} lines (every file needs one line per source sentence)"
        )


def resolve_eval_config(config: EvalConfig, sources: list[str]) -> EvalConfig:
    """`config` with what it leaves to the data chosen: the BLEU tokenizer (from the target language), the
    length unit (from the source language or text) and the bucket edges (the unit's defaults). The tokenizer
    is checked here, so that the CLI calls this before translating anything: a missing package for it is one
    error line at once, not after minutes of decoding."""
    unit = config.length_unit or source_length_unit(sources, config.source_lang)
    return dataclasses.replace(
        config,
        tokenize=resolve_bleu_tokenizer(config.tokenize, config.target_lang),
        length_unit=unit,
        bucket_edges=check_bucket_edges(
            config.bucket_edges if config.bucket_edges is not None else default_bucket_edges(unit)
        ),
    )


def evaluate_systems(
    sources: list[str],
    references: list[str],
    systems: dict[str, list[str]],
    config: EvalConfig | None = None,
    gold_alignments: list[GoldAlignment] | None = None,
    alignments: dict[str, list[list[Link]] | None] | None = None,
) -> EvalReport:
    """Score each system (name -> hypotheses, one per source line) overall and by source-length bucket.

    With `gold_alignments` (one per line), also score each system's word alignment of the sources with the
    references (`alignments`: name -> links per line, or None for a system without attention). What `config`
    leaves None is chosen first (`resolve_eval_config`); the report's config holds the choices.
    """
    config = resolve_eval_config(config or EvalConfig(), sources)
    edges = config.bucket_edges
    if not systems:
        raise UserError("no system to evaluate; give at least one hypothesis file or checkpoint")
    check_line_counts(
        {"the source": len(sources), "the reference": len(references)}
        | {f"system '{name}'": len(lines) for name, lines in systems.items()}
    )
    if not references:
        raise UserError("nothing to evaluate: the test set has 0 lines")
    if config.bootstrap_samples < 0:
        raise UserError(f"the number of bootstrap samples must be 0 or more, got {config.bootstrap_samples}")
    if not 0 < config.confidence < 1:
        raise UserError(f"the confidence level must be between 0 and 1, got {config.confidence}")
    if not 0 < config.alpha < 1:
        raise UserError(f"the significance level alpha must be between 0 and 1, got {config.alpha}")
    pairs = compared_pairs(config, list(systems))

    alignment = _alignment_scores(len(sources), systems, gold_alignments, alignments or {})

    buckets = assign_buckets(source_lengths(sources, config.length_unit), edges)  # (N,)
    slices = [(label, np.flatnonzero(buckets == i)) for i, label in enumerate(bucket_labels(edges))]
    slices.append((OVERALL, np.arange(len(sources))))

    metrics = make_metrics(references, config)
    warning = tokenizer_warning(config.tokenize, config.target_lang)
    if warning:
        logger.warning("%s", warning)
    stats: dict[
        str, dict[str, list]
    ] = {}  # system -> metric -> per-sentence statistics, N lists of D numbers
    for name, hypotheses in systems.items():
        logger.info("scoring system '%s' (%s)", name, ", ".join(m.name for m in metrics))
        stats[name] = {m.name: m.statistics(hypotheses) for m in metrics}
    arrays = {  # the same as (N, D) float64 arrays, for resampling
        name: {metric: np.asarray(rows, dtype=np.float64) for metric, rows in per_metric.items()}
        for name, per_metric in stats.items()
    }
    _warn_if_tokenized(systems)

    # One independent stream per slice: the resamples of a bucket do not depend on other buckets or systems.
    seeds = np.random.SeedSequence(config.seed).spawn(len(slices))
    results: dict[str, list[SliceScores]] = {name: [] for name in systems}
    comparisons = []
    for (label, index), seed in zip(slices, seeds, strict=True):
        for name in systems:
            results[name].append(_score_slice(label, index, stats[name], metrics))
        if not len(index) or not config.bootstrap_samples:
            continue
        rng = np.random.default_rng(seed)
        samples = bootstrap_scores(arrays, metrics, index, config.bootstrap_samples, rng)
        for name in systems:
            for metric in metrics:
                interval = results[name][-1].scores[metric.name]
                low, high = percentile_interval(samples[name][metric.name], config.confidence)
                # A tiny bucket's lopsided resampling distribution (or float rounding when every resample
                # equals the data) can leave the estimate a hair outside; the interval always contains it.
                interval.low, interval.high = min(low, interval.score), max(high, interval.score)
        for baseline, system in pairs:
            for metric in metrics:
                delta = (
                    results[system][-1].scores[metric.name].score
                    - results[baseline][-1].scores[metric.name].score
                )
                sample_deltas = samples[system][metric.name] - samples[baseline][metric.name]  # (samples,)
                p_value = paired_p_value(delta, sample_deltas)
                comparisons.append(Comparison(baseline, system, label, metric.name, delta, p_value))

    return EvalReport(
        config=config,
        sentences=len(sources),
        bucket_labels=[label for label, _ in slices[:-1]],
        bucket_sizes=[len(index) for _, index in slices[:-1]],
        signatures={m.name: m.signature() for m in metrics},
        systems=[SystemResult(name, rows[-1], rows[:-1]) for name, rows in results.items()],
        comparisons=judge(comparisons, config),
        alignment=alignment,
    )


def compared_pairs(config: EvalConfig, systems: list[str]) -> list[tuple[str, str]]:
    """The (baseline, system) pairs the paired tests compare: `config.compare`'s "SYSTEM=BASELINE" pairs
    when given, else every system against `config.baseline`, else every pair. The CLI calls it on the
    systems' names before translating anything, so that a wrong name is found at once."""
    if config.compare and config.baseline is not None:
        raise UserError("give either --baseline or --compare, not both")
    if config.baseline is not None and config.baseline not in systems:
        raise UserError(f"baseline '{config.baseline}' is not one of the systems ({', '.join(systems)})")
    pairs = []
    for pair in config.compare:
        system, equals, baseline = pair.partition("=")
        if not equals or not system or not baseline:
            raise UserError(f"--compare takes SYSTEM=BASELINE, got '{pair}'")
        for name in (system, baseline):
            if name not in systems:
                raise UserError(f"--compare names '{name}', not one of the systems ({', '.join(systems)})")
        if system == baseline:
            raise UserError(f"--compare '{pair}' compares a system with itself")
        pairs.append((baseline, system))
    if pairs:
        return list(dict.fromkeys(pairs))
    if config.baseline is not None:
        return [(config.baseline, name) for name in systems if name != config.baseline]
    return [(a, b) for i, a in enumerate(systems) for b in systems[i + 1 :]]


def _alignment_scores(
    sentences: int,
    systems: dict[str, list[str]],
    gold: list[GoldAlignment] | None,
    alignments: dict[str, list[list[Link]] | None],
) -> dict[str, AlignmentScores | None] | None:
    """Each system's alignment scores (None for one without an alignment); None without a gold alignment."""
    if gold is None:
        return None
    check_line_counts(
        {"the source": sentences, "the gold alignment": len(gold)}
        | {
            f"system '{name}' alignment": len(links)
            for name, links in alignments.items()
            if links is not None
        }
    )
    found = {name: alignments.get(name) for name in systems}
    return {name: None if links is None else alignment_scores(links, gold) for name, links in found.items()}


def judge(comparisons: list[Comparison], config: EvalConfig) -> list[Comparison]:
    """Each comparison with its significance at `config.alpha`, after Holm's correction over the comparisons
    of its metric (every pair in every slice) when `config.correction` asks for it."""
    for metric in dict.fromkeys(c.metric for c in comparisons):
        family = [c for c in comparisons if c.metric == metric]
        if config.correction is Correction.holm:
            for comparison, adjusted in zip(family, holm_adjusted([c.p_value for c in family]), strict=True):
                comparison.p_adjusted = adjusted
        for comparison in family:
            comparison.significant = comparison.p_reported <= config.alpha
    return comparisons


def _score_slice(label: str, index: np.ndarray, stats: dict[str, list], metrics: list[Metric]) -> SliceScores:
    """sacreBLEU's corpus scores of one system on the sentences `index` (no scores when there are none)."""
    result = SliceScores(label, len(index))
    if not len(index):
        return result
    for metric in metrics:
        score = metric.corpus_score([stats[metric.name][i] for i in index])
        result.scores[metric.name] = Interval(float(score.score))
        if metric.name == BLEU_NAME:
            precisions = [float(p) for p in score.precisions]
            result.bleu_detail = BleuDetail(
                precisions, float(score.bp), int(score.sys_len), int(score.ref_len)
            )
    return result


def _warn_if_tokenized(systems: dict[str, list[str]]) -> None:
    """sacreBLEU's hint for output that looks tokenized (100+ lines ending in " ."), once per system."""
    for name, hypotheses in systems.items():
        if sum(line.endswith(" .") for line in hypotheses) >= 100:
            logger.warning(
                "system '%s' has 100+ lines ending in ' .': if it is tokenized, detokenize it (and the "
                "reference) for a BLEU comparable with published scores",
                name,
            )
