"""The evaluation report: each system's scores overall and per bucket, the paired tests, and its text table.

`EvalReport` holds every number; `format_table` is what `nmt eval` prints, `to_json_dict` and `csv_rows` are
what the writers (nmt/evaluation/writers.py) and the figures (nmt/plots.py) read. With gold word alignments,
the overall table and the JSON also hold each system's alignment error rate (nmt/evaluation/alignment.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from nmt.config import Correction, EvalConfig, LengthUnit, to_dict
from nmt.evaluation.alignment import AlignmentScores
from nmt.evaluation.buckets import bucket_bounds
from nmt.evaluation.metrics import BLEU_NAME, CHRF_NAME, TER_NAME
from nmt.evaluation.significance import format_p_value, resamples_needed, smallest_p_value

OVERALL = "all"  # the label of the slice that holds every sentence
ALIGNMENT_COLUMNS = ("AER", "precision", "recall")


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

    `p_value` is two-sided: 2 (c + 1) / (n + 1), at most 1, where c of the n resamples do not give the
    difference the sign observed on the real data (ties count against it); small means the observed winner
    wins almost every resample. A difference of exactly 0 has p = 1 (nmt/evaluation/bootstrap.py).
    `p_adjusted` is Holm's adjustment over the metric's comparisons (None without a correction), and
    `significant` compares the adjusted p-value (or, without a correction, `p_value`) with the level alpha.
    """

    baseline: str
    system: str
    slice: str
    metric: str
    delta: float  # system score - baseline score on the real data
    p_value: float
    p_adjusted: float | None = None
    significant: bool = False

    @property
    def p_reported(self) -> float:
        """The p-value that decides significance: the adjusted one when there is a correction."""
        return self.p_value if self.p_adjusted is None else self.p_adjusted


@dataclass
class EvalReport:
    config: EvalConfig
    sentences: int
    bucket_labels: list[str]
    bucket_sizes: list[int]
    signatures: dict[str, str]  # metric name -> sacreBLEU signature
    systems: list[SystemResult]
    comparisons: list[Comparison]
    # System name -> its attention's word alignment scores (None: no attention); None without gold alignments.
    alignment: dict[str, AlignmentScores | None] | None = None

    @property
    def bucket_edges(self) -> tuple[int, ...]:
        return tuple(self.config.bucket_edges)

    @property
    def length_unit(self) -> str:
        """What the buckets count: "words" or "characters" (of the source)."""
        return LengthUnit(self.config.length_unit or LengthUnit.words).value

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
        unit = self.length_unit
        return {
            "sentences": self.sentences,
            "config": to_dict(self.config),
            "signatures": dict(self.signatures),
            "length_unit": unit,
            "buckets": [
                {"label": label, f"min_{unit}": low, f"max_{unit}": high, "sentences": size}
                for label, (low, high), size in zip(
                    self.bucket_labels, bucket_bounds(self.bucket_edges), self.bucket_sizes, strict=True
                )
            ],
            "systems": [
                {
                    "name": system.name,
                    "overall": _slice_dict(system.overall),
                    "buckets": [_slice_dict(bucket) for bucket in system.buckets],
                    **self._alignment_dict(system.name),
                }
                for system in self.systems
            ],
            "comparisons": [asdict(comparison) for comparison in self.comparisons],
        }

    def _alignment_dict(self, name: str) -> dict:
        """{"alignment": scores as fractions, or None without attention}; nothing without gold alignments."""
        if self.alignment is None:
            return {}
        scores = self.alignment.get(name)
        return {"alignment": None if scores is None else scores.to_dict()}

    def csv_rows(self) -> list[dict]:
        """One row per system and bucket (and one per system for the whole test set); the length columns are
        named by the unit (min_words, or min_characters for a source written without spaces)."""
        metrics = list(self.signatures)
        unit = self.length_unit
        bounds = [*bucket_bounds(self.bucket_edges), (0, None)]
        rows = []
        for system in self.systems:
            for scores, (low, high) in zip([*system.buckets, system.overall], bounds, strict=True):
                row = {
                    "system": system.name,
                    "bucket": scores.label,
                    f"min_{unit}": low,
                    f"max_{unit}": "" if high is None else high,
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
        if self.alignment is not None:
            lines.append(
                "AER, precision, recall (%): the attention's word alignment against the gold "
                "(Och and Ney 2003); n/a: no attention"
            )
        lines.append("")
        metrics = list(self.signatures)
        rows = [("system", *metrics, *(ALIGNMENT_COLUMNS if self.alignment is not None else ()))]
        for s in self.systems:
            cells = [s.overall.scores[m].format().strip() for m in metrics]
            rows.append((s.name, *cells, *self._alignment_cells(s.name)))
        lines.extend(_align(rows))
        lines.append("")
        lines.append(
            f"BLEU by source length in {self.length_unit}: score"
            f"{' [low, high]' if config.bootstrap_samples else ''}"
            " (sentences)"
        )
        rows = [("bucket", *[s.name for s in self.systems])]
        for index, label in enumerate(self.bucket_labels):
            rows.append((label, *[_bucket_cell(s.buckets[index]) for s in self.systems]))
        rows.append((OVERALL, *[_bucket_cell(s.overall) for s in self.systems]))
        lines.extend(_align(rows))
        if self.comparisons:
            lines.append("")
            lines.extend(self._comparison_table())
        return "\n".join(lines)

    def _alignment_cells(self, name: str) -> tuple[str, ...]:
        if self.alignment is None:
            return ()
        scores = self.alignment.get(name)
        if scores is None:
            return ("n/a",) * len(ALIGNMENT_COLUMNS)
        return tuple(f"{100 * value:.1f}" for value in (scores.aer, scores.precision, scores.recall))

    def _comparison_table(self) -> list[str]:
        """The BLEU differences of every compared pair in every slice, with their p-values, what was
        corrected for and which differences are significant."""
        config = self.config
        bleu = [c for c in self.comparisons if c.metric == BLEU_NAME]
        pairs = list(dict.fromkeys((c.baseline, c.system) for c in self.comparisons))
        slices = list(dict.fromkeys(c.slice for c in bleu))
        with_sentences = " with sentences" if len(slices) < len(self.bucket_labels) + 1 else ""
        count = (
            f"{_plural(len(bleu), 'comparison')} "
            f"({_plural(len(pairs), 'pair')} x {_plural(len(slices), 'slice')}{with_sentences})"
        )
        holm = config.correction is Correction.holm
        lines = [
            "Paired bootstrap (Koehn 2004), two-sided: BLEU difference (p-value); "
            f"* = significant at alpha = {config.alpha:g}"
        ]
        if holm:
            lines.append(f"{count}; p-values Holm-adjusted over all {len(bleu)} (each metric separately)")
        elif len(bleu) > 1:
            expected = config.alpha * len(bleu)  # false positives expected when no system differs
            lines.append(f"{count}, not corrected for multiple comparisons:")
            lines.append(
                f"if no system differed, about {expected:.1f} of them would be marked * by chance "
                "(--correction holm corrects)"
            )
        else:
            lines.append(count)
        family = len(bleu) if holm else 1
        floor = smallest_p_value(config.bootstrap_samples, family)
        if floor > config.alpha:
            lines.append(
                f"no difference can be significant: with {config.bootstrap_samples} resamples the smallest "
                f"p-value{' after Holm' if holm else ''} is {floor:.3g}; "
                f"use --bootstrap {resamples_needed(config.alpha, family)} or more"
            )
        table = {(c.baseline, c.system, c.slice): c for c in bleu}
        rows = [("bucket", *[f"{system} - {baseline}" for baseline, system in pairs])]
        for label in [*self.bucket_labels, OVERALL]:
            cells = []
            for baseline, system in pairs:
                comparison = table.get((baseline, system, label))
                cells.append("-" if comparison is None else _comparison_cell(comparison))
            rows.append((label, *cells))
        return lines + _align(rows)


def _comparison_cell(comparison: Comparison) -> str:
    mark = " *" if comparison.significant else ""
    return f"{comparison.delta:+.1f} ({format_p_value(comparison.p_reported)}){mark}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


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
