"""Corpus scores from sacreBLEU, BLEU by source-length bucket, bootstrap intervals and paired significance.

How it stays both exact and fast:

- sacreBLEU extracts every sentence's sufficient statistics once per system (BLEU: hypothesis and reference
  length, matching and total n-grams for n = 1..4; chrF: hypothesis, reference and matching character n-grams
  for each order; TER: edits and reference length), with its own tokenizer and reference cache.
- Every point estimate (a whole test set or one bucket) is sacreBLEU's own corpus score of those rows, so it
  is exactly what `sacrebleu.corpus_bleu` prints for the same lines.
- A bootstrap resample is a vector of multiplicities (how often each sentence was drawn); summing resampled
  statistics is one matrix product `counts @ stats`, and the scores of all resamples come from a vectorised
  copy of sacreBLEU's formulas (`bleu_from_stats`, `chrf_from_stats`, `ter_from_stats`, tested against it).
  No text is re-tokenised and no n-gram re-counted per resample.

Buckets are half-open intervals of source length in whitespace-separated words: edges (0, 10, 20) give the
buckets [0, 10), [10, 20) and [20, inf), labelled "0-9", "10-19" and "20+"; a 10-word sentence is in "10-19".
An empty source line has 0 words and belongs to the first bucket.

Confidence intervals are percentile bootstrap intervals (Efron and Tibshirani 1993; Koehn 2004),
resampling sentences with replacement within the bucket; significance between two systems is the paired
bootstrap test of Koehn 2004, with the same resamples for both systems.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from nmt.config import DecodeConfig, EvalConfig
from nmt.errors import UserError

logger = logging.getLogger(__name__)

OVERALL = "all"  # the label of the slice that holds every sentence
BLEU_NAME, CHRF_NAME, TER_NAME = "BLEU", "chrF", "TER"
_MAX_RESAMPLE_CELLS = 4_000_000  # resamples x sentences held in memory at once (32 MB of float64)


# ------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Interval:
    """A corpus score with its bootstrap confidence interval (None when bootstrapping is off)."""

    score: float
    low: float | None = None
    high: float | None = None

    def format(self) -> str:
        if self.low is None or self.high is None:
            return f"{self.score:.1f}"
        return f"{self.score:.1f} [{self.low:.1f}, {self.high:.1f}]"


@dataclass
class BleuDetail:
    """The parts of a corpus BLEU score, as sacreBLEU reports them."""

    precisions: list[float]  # modified n-gram precisions in percent, n = 1..4
    brevity_penalty: float
    hyp_len: int
    ref_len: int


@dataclass
class SliceScores:
    """One system's scores on one set of sentences: a length bucket or the whole test set."""

    label: str
    sentences: int
    scores: dict[str, Interval] = field(default_factory=dict)  # metric name -> score; empty when no sentences
    bleu_detail: BleuDetail | None = None

    @property
    def bleu(self) -> Interval | None:
        return self.scores.get(BLEU_NAME)

    @property
    def chrf(self) -> Interval | None:
        return self.scores.get(CHRF_NAME)

    @property
    def ter(self) -> Interval | None:
        return self.scores.get(TER_NAME)


@dataclass
class SystemResult:
    name: str
    overall: SliceScores
    buckets: list[SliceScores]


@dataclass
class Comparison:
    """Paired bootstrap test (Koehn 2004) of `system` against `baseline` on one slice and metric.

    `p_value` is the share of resamples in which the difference does not have the sign observed on the real
    data (ties count against it): small means the observed winner wins almost every resample. A difference of
    exactly 0 has p = 1.
    """

    baseline: str
    system: str
    slice: str
    metric: str
    delta: float  # system score - baseline score on the real data
    p_value: float


@dataclass
class EvalReport:
    config: EvalConfig
    sentences: int
    bucket_labels: list[str]
    bucket_sizes: list[int]
    signatures: dict[str, str]  # metric name -> sacreBLEU signature
    systems: list[SystemResult]
    comparisons: list[Comparison]

    @property
    def bucket_edges(self) -> tuple[int, ...]:
        return tuple(self.config.bucket_edges)

    def bucket_centre(self, index: int) -> float:
        """Where bucket `index` sits on a length axis: its middle (the open last bucket: a typical width)."""
        edges = self.bucket_edges
        if index + 1 < len(edges):
            return (edges[index] + edges[index + 1]) / 2
        width = edges[-1] - edges[-2] if len(edges) > 1 else 10
        return edges[-1] + width / 2

    def system(self, name: str) -> SystemResult:
        for result in self.systems:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_json_dict(self) -> dict:
        """Every number of the report, the configuration and the sacreBLEU signatures, as plain JSON types."""
        config = asdict(self.config)
        config["bucket_edges"] = list(self.config.bucket_edges)
        return {
            "sentences": self.sentences,
            "config": config,
            "signatures": dict(self.signatures),
            "buckets": [
                {"label": label, "min_words": low, "max_words": high, "sentences": size}
                for label, (low, high), size in zip(
                    self.bucket_labels, bucket_bounds(self.bucket_edges), self.bucket_sizes, strict=True
                )
            ],
            "systems": [
                {
                    "name": system.name,
                    "overall": _slice_dict(system.overall),
                    "buckets": [_slice_dict(bucket) for bucket in system.buckets],
                }
                for system in self.systems
            ],
            "comparisons": [asdict(comparison) for comparison in self.comparisons],
        }

    def csv_rows(self) -> list[dict]:
        """One row per system and bucket (and one per system for the whole test set)."""
        metrics = list(self.signatures)
        bounds = [*bucket_bounds(self.bucket_edges), (0, None)]
        rows = []
        for system in self.systems:
            for scores, (low, high) in zip([*system.buckets, system.overall], bounds, strict=True):
                row = {
                    "system": system.name,
                    "bucket": scores.label,
                    "min_words": low,
                    "max_words": "" if high is None else high,
                    "sentences": scores.sentences,
                }
                for metric in metrics:
                    interval = scores.scores.get(metric)
                    row[metric] = "" if interval is None else interval.score
                    row[f"{metric}_low"] = "" if interval is None or interval.low is None else interval.low
                    row[f"{metric}_high"] = "" if interval is None or interval.high is None else interval.high
                rows.append(row)
        return rows

    def format_table(self) -> str:
        """A readable summary: signatures, overall scores, the bucket table and the paired tests."""
        config = self.config
        lines = [f"{name:<5} {signature}" for name, signature in self.signatures.items()]
        if config.bootstrap_samples:
            lines.append(
                f"{self.sentences} sentences; [low, high]: {config.confidence:.0%} bootstrap interval from "
                f"{config.bootstrap_samples} resamples (seed {config.seed})"
            )
        else:
            lines.append(f"{self.sentences} sentences; bootstrapping off")
        lines.append("")
        metrics = list(self.signatures)
        rows = [("system", *metrics)]
        rows += [(s.name, *[s.overall.scores[m].format().strip() for m in metrics]) for s in self.systems]
        lines.extend(_align(rows))
        lines.append("")
        lines.append(
            f"BLEU by source length in words: score{' [low, high]' if config.bootstrap_samples else ''}"
            " (sentences)"
        )
        rows = [("bucket", *[s.name for s in self.systems])]
        for index, label in enumerate(self.bucket_labels):
            rows.append((label, *[_bucket_cell(s.buckets[index]) for s in self.systems]))
        rows.append((OVERALL, *[_bucket_cell(s.overall) for s in self.systems]))
        lines.extend(_align(rows))
        if self.comparisons:
            lines.append("")
            lines.append(
                "Paired bootstrap (Koehn 2004): BLEU difference (p = share of resamples where it fails)"
            )
            pairs = list(dict.fromkeys((c.baseline, c.system) for c in self.comparisons))
            table = {(c.baseline, c.system, c.slice): c for c in self.comparisons if c.metric == BLEU_NAME}
            rows = [("bucket", *[f"{system} - {baseline}" for baseline, system in pairs])]
            for label in [*self.bucket_labels, OVERALL]:
                cells = []
                for baseline, system in pairs:
                    comparison = table.get((baseline, system, label))
                    cells.append(
                        "-" if comparison is None else f"{comparison.delta:+.1f} (p={comparison.p_value:.3f})"
                    )
                rows.append((label, *cells))
            lines.extend(_align(rows))
        return "\n".join(lines)


def _bucket_cell(scores: SliceScores) -> str:
    if scores.bleu is None:
        return "- (0)"
    return f"{scores.bleu.format().strip()} ({scores.sentences})"


def _align(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(value.ljust(w) for value, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def _slice_dict(scores: SliceScores) -> dict:
    out: dict = {"label": scores.label, "sentences": scores.sentences}
    for metric, interval in scores.scores.items():
        out[metric] = asdict(interval)
    if scores.bleu_detail is not None:
        out["bleu_detail"] = asdict(scores.bleu_detail)
    return out


# ------------------------------------------------------------------------------------------------------------
# Buckets


def check_bucket_edges(edges) -> tuple[int, ...]:
    """Validate bucket edges: integers, strictly increasing, from 0 (so the buckets cover every length)."""
    edges = tuple(edges)
    if not edges:
        raise UserError("bucket edges are empty; give increasing word counts starting at 0, e.g. 0,10,20,30")
    if any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in edges):
        raise UserError(f"bucket edges must be whole numbers of words, got {list(edges)}")
    if edges[0] != 0:
        raise UserError(
            f"bucket edges must start at 0 so that every sentence has a bucket, got {list(edges)}"
        )
    if any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
        raise UserError(f"bucket edges must be strictly increasing, got {list(edges)}")
    return tuple(int(e) for e in edges)


def parse_bucket_edges(text: str) -> tuple[int, ...]:
    """'0,10,20' -> (0, 10, 20), with one clear error for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        edges = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(
            f"bad bucket edges '{text}': give comma-separated word counts starting at 0, e.g. 0,10,20"
        ) from None
    return check_bucket_edges(edges)


def bucket_bounds(edges: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """(min_words, max_words) of each bucket, both inclusive; None for the open last bucket."""
    return [(low, high - 1) for low, high in zip(edges[:-1], edges[1:], strict=True)] + [(edges[-1], None)]


def bucket_labels(edges: tuple[int, ...]) -> list[str]:
    """'0-9', '10-19', ..., '60+' (inclusive word counts)."""
    return [
        f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        for low, high in bucket_bounds(edges)
    ]


def assign_buckets(lengths, edges: tuple[int, ...]) -> np.ndarray:
    """The bucket index of each length: bucket i holds edges[i] <= length < edges[i + 1]."""
    return np.searchsorted(np.asarray(edges), np.asarray(lengths, dtype=np.int64), side="right") - 1  # (N,)


# ------------------------------------------------------------------------------------------------------------
# Scores from summed sufficient statistics, vectorised over resamples (the same formulas as sacreBLEU 2.x)


def bleu_from_stats(stats: np.ndarray, max_order: int = 4) -> np.ndarray:
    """Corpus BLEU with sacreBLEU's default 'exp' smoothing, for each row of summed statistics.

    stats: (B, 2 + 2 * max_order) rows [hyp_len, ref_len, correct_1..n, total_1..n]  ->  (B,) scores.
    Papineni et al. 2002: BP * exp(mean_n log p_n); an n-gram order with no match gets precision
    100 / (2^k * total_n), k counting the orders without a match so far (mteval-v13a's smoothing).
    """
    stats = np.asarray(stats, dtype=np.float64)
    sys_len, ref_len = stats[:, 0], stats[:, 1]  # (B,)
    correct = stats[:, 2 : 2 + max_order]  # (B, n)
    total = stats[:, 2 + max_order : 2 + 2 * max_order]  # (B, n)
    safe_sys = np.where(sys_len > 0, sys_len, 1.0)
    brevity = np.where(sys_len < ref_len, np.where(sys_len > 0, np.exp(1 - ref_len / safe_sys), 0.0), 1.0)
    safe_total = np.where(total > 0, total, 1.0)
    unmatched_so_far = np.cumsum(correct == 0, axis=1)  # (B, n)
    precision = np.where(
        correct > 0, 100.0 * correct / safe_total, 100.0 / (2.0**unmatched_so_far * safe_total)
    )  # (B, n)
    log_sum = np.zeros(len(stats))
    for n in range(max_order):  # summed in order, as sacreBLEU does
        log_sum = log_sum + np.log(precision[:, n])
    score = brevity * np.exp(log_sum / max_order)
    # No match at all, or an order with no n-grams (hypotheses shorter than n): BLEU is 0.
    defined = (correct > 0).any(axis=1) & (total > 0).all(axis=1)
    return np.where(defined, score, 0.0)


def chrf_from_stats(stats: np.ndarray, beta: float = 2.0) -> np.ndarray:
    """Corpus chrF (Popovic 2015) as sacreBLEU 2.x computes it by default (effective-order averaging).

    stats: (B, 3 * orders) rows of [hyp, ref, match] n-gram counts per order  ->  (B,) scores.
    """
    stats = np.asarray(stats, dtype=np.float64)
    hyp, ref, match = stats[:, 0::3], stats[:, 1::3], stats[:, 2::3]  # (B, orders)
    effective = (hyp > 0) & (ref > 0)  # orders that count in the averages
    precision = np.where(effective, match / np.where(hyp > 0, hyp, 1.0), 0.0)
    recall = np.where(effective, match / np.where(ref > 0, ref, 1.0), 0.0)
    orders = effective.sum(axis=1)  # (B,)
    safe_orders = np.where(orders > 0, orders, 1)
    avg_precision, avg_recall = precision.sum(axis=1) / safe_orders, recall.sum(axis=1) / safe_orders
    factor = beta**2
    denominator = factor * avg_precision + avg_recall
    score = (1 + factor) * avg_precision * avg_recall / np.where(denominator > 0, denominator, 1.0)
    return np.where((orders > 0) & (avg_precision + avg_recall > 0), 100 * score, 0.0)


def ter_from_stats(stats: np.ndarray) -> np.ndarray:
    """Corpus TER (Snover et al. 2006): total edits / total reference words, in percent.

    stats: (B, 2) rows [edits, ref_len]  ->  (B,) scores; an empty reference scores 100 if anything is output.
    """
    stats = np.asarray(stats, dtype=np.float64)
    edits, ref_len = stats[:, 0], stats[:, 1]
    ratio = np.where(ref_len > 0, edits / np.where(ref_len > 0, ref_len, 1.0), np.where(edits > 0, 1.0, 0.0))
    return 100 * ratio


# ------------------------------------------------------------------------------------------------------------
# Bootstrap


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


# ------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class _Metric:
    name: str
    scorer: object  # a sacrebleu.metrics.base.Metric with the references cached
    from_stats: Callable[[np.ndarray], np.ndarray]


def _metrics(references: list[str], config: EvalConfig) -> list[_Metric]:
    from sacrebleu.metrics import BLEU, CHRF, TER

    try:
        # force: the check for tokenized output is done once for all systems, by _warn_if_tokenized
        bleu = BLEU(tokenize=config.tokenize, force=True, references=[references])
    except Exception as error:  # unknown tokenizer, or one whose extra package/model is missing
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot use the BLEU tokenizer '{config.tokenize}' ({reason[:150]}); "
            f"choose one of {', '.join(BLEU.TOKENIZERS)}"
        ) from None
    chrf = CHRF(references=[references])  # chrF2 on character 6-grams, sacreBLEU's defaults
    metrics = [
        _Metric(BLEU_NAME, bleu, lambda stats: bleu_from_stats(stats, bleu.max_ngram_order)),
        _Metric(CHRF_NAME, chrf, lambda stats: chrf_from_stats(stats, chrf.beta)),
    ]
    if config.ter:
        metrics.append(_Metric(TER_NAME, TER(references=[references]), ter_from_stats))
    return metrics


def _warn_if_tokenized(systems: dict[str, list[str]]) -> None:
    """sacreBLEU's hint for output that looks tokenized (100+ lines ending in " ."), once per system."""
    for name, hypotheses in systems.items():
        if sum(line.endswith(" .") for line in hypotheses) >= 100:
            logger.warning(
                "system '%s' has 100+ lines ending in ' .': if it is tokenized, detokenize it (and the "
                "reference) for a BLEU comparable with published scores",
                name,
            )


def check_line_counts(named_counts: dict[str, int]) -> None:
    """One clear error when the inputs (described by name, e.g. "reference ref.en") differ in length."""
    if len(set(named_counts.values())) > 1:
        listing = ", ".join(f"{name} has {count}" for name, count in named_counts.items())
        raise UserError(
            f"line counts differ: {listing} lines (every file needs one line per source sentence)"
        )


def evaluate_systems(
    sources: list[str], references: list[str], systems: dict[str, list[str]], config: EvalConfig | None = None
) -> EvalReport:
    """Score each system (name -> hypotheses, one per source line) overall and by source-length bucket."""
    config = config or EvalConfig()
    edges = check_bucket_edges(config.bucket_edges)
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
    if config.baseline is not None and config.baseline not in systems:
        raise UserError(f"baseline '{config.baseline}' is not one of the systems ({', '.join(systems)})")

    buckets = assign_buckets([len(line.split()) for line in sources], edges)  # (N,)
    slices = [(label, np.flatnonzero(buckets == i)) for i, label in enumerate(bucket_labels(edges))]
    slices.append((OVERALL, np.arange(len(sources))))

    metrics = _metrics(references, config)
    stats: dict[
        str, dict[str, list]
    ] = {}  # system -> metric -> per-sentence statistics, N lists of D numbers
    for name, hypotheses in systems.items():
        logger.info("scoring system '%s' (%s)", name, ", ".join(m.name for m in metrics))
        stats[name] = {m.name: m.scorer._extract_corpus_statistics(hypotheses, None) for m in metrics}
    arrays = {  # the same as (N, D) float64 arrays, for resampling
        name: {metric: np.asarray(rows, dtype=np.float64) for metric, rows in per_metric.items()}
        for name, per_metric in stats.items()
    }
    _warn_if_tokenized(systems)

    pairs = (
        [(config.baseline, name) for name in systems if name != config.baseline]
        if config.baseline is not None
        else [(a, b) for i, a in enumerate(systems) for b in list(systems)[i + 1 :]]
    )
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
        samples = _bootstrap_slice(arrays, metrics, index, config.bootstrap_samples, rng)
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
        signatures={m.name: m.scorer.get_signature().format() for m in metrics},
        systems=[SystemResult(name, rows[-1], rows[:-1]) for name, rows in results.items()],
        comparisons=comparisons,
    )


def _score_slice(
    label: str, index: np.ndarray, stats: dict[str, list], metrics: list[_Metric]
) -> SliceScores:
    """sacreBLEU's corpus scores of one system on the sentences `index` (no scores when there are none)."""
    result = SliceScores(label, len(index))
    if not len(index):
        return result
    for metric in metrics:
        score = metric.scorer._aggregate_and_compute([stats[metric.name][i] for i in index])
        result.scores[metric.name] = Interval(float(score.score))
        if metric.name == BLEU_NAME:
            precisions = [float(p) for p in score.precisions]
            result.bleu_detail = BleuDetail(
                precisions, float(score.bp), int(score.sys_len), int(score.ref_len)
            )
    return result


def _bootstrap_slice(
    stats: dict[str, dict[str, np.ndarray]],
    metrics: list[_Metric],
    index: np.ndarray,
    samples: int,
    rng: np.random.Generator,
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of every system and metric on `samples` resamples of the sentences `index` (shared by all)."""
    arrays = {
        name: {m.name: per_metric[m.name][index] for m in metrics} for name, per_metric in stats.items()
    }  # system -> metric -> (n, D)
    out = {name: {m.name: np.empty(samples) for m in metrics} for name in stats}
    chunk = max(1, min(samples, _MAX_RESAMPLE_CELLS // len(index)))
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        counts = resample_counts(rng, len(index), stop - start)  # (b, n)
        for name, per_metric in arrays.items():
            for metric in metrics:
                summed = counts @ per_metric[metric.name]  # (b, D): exact integer sums in float64
                out[name][metric.name][start:stop] = metric.from_stats(summed)
    return out


# ------------------------------------------------------------------------------------------------------------
# Files


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (or .gz), as `nmt prepare` reads them; an empty file is an error."""
    from nmt.corpus import read_lines as read_corpus_lines

    path = Path(path)
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is not a file")
    lines = read_corpus_lines(path)
    if not lines:
        raise UserError(f"{path} is empty (0 lines); it needs one line per source sentence")
    return lines


def parse_named_path(spec: str, option: str) -> tuple[str, Path]:
    """'NAME=PATH' -> (NAME, Path(PATH))."""
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise UserError(f"{option} '{spec}' must look like NAME=FILE, e.g. {option} baseline=out.en")
    return name.strip(), Path(path.strip())


def translate_with_checkpoint(
    checkpoint: Path, lines: list[str], decode: DecodeConfig, device: str = "auto"
) -> list[str]:
    """Translate `lines` with the model in `checkpoint` (one output line per input line)."""
    from nmt.devices import resolve_device
    from nmt.translation import load_translator, translate_lines

    torch_device = resolve_device(device)
    model, loaded = load_translator(checkpoint, torch_device)
    logger.info("translating %d lines with %s on %s", len(lines), checkpoint, torch_device)
    return [result.text for result in translate_lines(model, loaded.tokenizers, lines, decode, torch_device)]


@dataclass
class TestSet:
    """The source and reference lines and each system's hypotheses, all of the same length."""

    sources: list[str]
    references: list[str]
    systems: dict[str, list[str]]


def load_test_set(
    source: Path,
    reference: Path,
    system_specs: list[str],
    checkpoint_specs: list[str],
    decode: DecodeConfig | None = None,
    device: str = "auto",
) -> TestSet:
    """Read the files, hypothesis files (NAME=FILE) and translate with checkpoints (NAME=CKPT), in that order.

    Every file is read and the line counts are compared before any model is loaded.
    """
    named = [("--system", spec) for spec in system_specs] + [
        ("--checkpoint", spec) for spec in checkpoint_specs
    ]
    if not named:
        raise UserError("nothing to evaluate: give at least one --system NAME=FILE or --checkpoint NAME=CKPT")
    parsed = [(option, *parse_named_path(spec, option)) for option, spec in named]
    seen: set[str] = set()
    for _, name, _ in parsed:
        if name in seen:
            raise UserError(
                f"system name '{name}' is given twice; give every --system/--checkpoint its own name"
            )
        seen.add(name)
    sources, references = read_lines(source), read_lines(reference)
    hypotheses = {name: read_lines(path) for option, name, path in parsed if option == "--system"}
    check_line_counts(
        {f"source {source}": len(sources), f"reference {reference}": len(references)}
        | {
            f"system '{name}' {path}": len(hypotheses[name])
            for option, name, path in parsed
            if option == "--system"
        }
    )
    systems = {}
    for option, name, path in parsed:  # in the order given on the command line
        if option == "--system":
            systems[name] = hypotheses[name]
        else:
            systems[name] = translate_with_checkpoint(path, sources, decode or DecodeConfig(), device)
    return TestSet(sources, references, systems)


def write_json(report: EvalReport, path: Path) -> None:
    from nmt.files import atomic_write

    text = json.dumps(report.to_json_dict(), indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_csv(report: EvalReport, path: Path) -> None:
    from nmt.files import atomic_write

    rows = report.csv_rows()
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue().encode("utf-8")))


__all__ = [
    "BleuDetail",
    "Comparison",
    "EvalReport",
    "Interval",
    "SliceScores",
    "SystemResult",
    "TestSet",
    "assign_buckets",
    "bleu_from_stats",
    "bucket_labels",
    "chrf_from_stats",
    "evaluate_systems",
    "load_test_set",
    "parse_bucket_edges",
    "read_lines",
    "ter_from_stats",
    "write_csv",
    "write_json",
]
