"""Evaluation: metric statistics and the bootstrap, length buckets, the report and its writers.

Given lines in memory (sources, references and each system's hypotheses), `evaluate_systems` scores every
system with sacreBLEU overall and by source-length bucket, with bootstrap intervals and paired tests, and
returns an `EvalReport` that `write_json`/`write_csv` save. Reading files and translating with checkpoints
is the caller's job (the `nmt eval` command).

May import: numpy, sacrebleu, nmt.config, nmt.errors, nmt.files and nmt.languages (which tokenizer scores a
language, shared with training's dev BLEU). Never torch, nmt.models, nmt.decoding, nmt.training, nmt.plots or
the CLI (nmt.plots imports this package, not the other way round).

Modules: metrics (sacreBLEU statistics and vectorised scores), bootstrap (resampling, intervals, p-values),
significance (Holm's correction for many comparisons, printing p-values), buckets (source-length buckets, in
words or, for a source written without spaces, characters), report (EvalReport and its table), writers (JSON,
CSV), evaluate (`evaluate_systems`, `resolve_eval_config`). docs/statistics.md explains the statistics.
"""

from nmt.evaluation.buckets import parse_bucket_edges
from nmt.evaluation.evaluate import check_line_counts, compared_pairs, evaluate_systems, resolve_eval_config
from nmt.evaluation.metrics import bleu_tokenizer_for
from nmt.evaluation.report import (
    OVERALL,
    BleuDetail,
    Comparison,
    EvalReport,
    Interval,
    SliceScores,
    SystemResult,
)
from nmt.evaluation.writers import write_csv, write_json

__all__ = [
    "OVERALL",
    "BleuDetail",
    "Comparison",
    "EvalReport",
    "Interval",
    "SliceScores",
    "SystemResult",
    "bleu_tokenizer_for",
    "check_line_counts",
    "compared_pairs",
    "evaluate_systems",
    "parse_bucket_edges",
    "resolve_eval_config",
    "write_csv",
    "write_json",
]
