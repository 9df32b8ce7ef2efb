"""Metric statistics: sacreBLEU's BLEU, chrF and TER as sufficient statistics, and their scores.

How scores stay both exact and fast:

- sacreBLEU extracts every sentence's sufficient statistics once per system (BLEU: hypothesis and reference
  length, matching and total n-grams for n = 1..4; chrF: hypothesis, reference and matching character n-grams
  for each order; TER: edits and reference length), with its own tokenizer and reference cache.
- Every point estimate (a whole test set or one bucket) is sacreBLEU's own corpus score of those rows, so it
  is exactly what `sacrebleu.corpus_bleu` prints for the same lines.
- A bootstrap resample sums the statistics of the sentences it draws (nmt/evaluation/bootstrap.py), and the
  scores of all resamples come from a vectorised copy of sacreBLEU's formulas (`bleu_from_stats`,
  `chrf_from_stats`, `ter_from_stats`, tested against it). No text is re-tokenised and no n-gram re-counted.

The statistics come from private sacreBLEU methods (`_extract_corpus_statistics`, `_aggregate_and_compute`),
used only in `Metric` below; pyproject.toml pins sacrebleu below 3 for that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric as SacreMetric
from sacrebleu.metrics.base import Score

from nmt.config import EvalConfig
from nmt.errors import UserError
from nmt.languages import bleu_tokenizer_for, check_bleu_tokenizer

BLEU_NAME, CHRF_NAME, TER_NAME = "BLEU", "chrF", "TER"


@dataclass
class Metric:
    """One sacreBLEU metric with the references cached, and the vectorised formula of its corpus score."""

    name: str
    scorer: SacreMetric
    from_stats: Callable[[np.ndarray], np.ndarray]  # (B, D) summed statistics -> (B,) scores

    def statistics(self, hypotheses: Sequence[str]) -> list[list]:
        """Each sentence's sufficient statistics against the cached references: N rows of D numbers."""
        return self.scorer._extract_corpus_statistics(hypotheses, None)

    def corpus_score(self, rows: Sequence[list]) -> Score:
        """sacreBLEU's corpus score of the sentences whose statistics are `rows`."""
        return self.scorer._aggregate_and_compute(list(rows))

    def signature(self) -> str:
        return self.scorer.get_signature().format()


def make_metrics(references: list[str], config: EvalConfig) -> list[Metric]:
    """BLEU and chrF (and TER when `config.ter`) against `references`, with sacreBLEU's default settings;
    BLEU tokenized by `config.tokenize`, or else by the target language's tokenizer (`bleu_tokenizer_for`,
    from nmt/languages.py, shared with dev BLEU in training)."""
    tokenize = check_bleu_tokenizer(config.tokenize or bleu_tokenizer_for(config.target_lang))
    try:
        # force: the check for tokenized output is done once for all systems, by the evaluator
        bleu = BLEU(tokenize=tokenize, force=True, references=[references])
    except Exception as error:  # a tokenizer whose package is there but fails (a wrong MeCab dictionary)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot use the BLEU tokenizer '{tokenize}' ({reason[:150]}); "
            f"choose one of {', '.join(BLEU.TOKENIZERS)}"
        ) from None
    chrf = CHRF(references=[references])  # chrF2 on character 6-grams, sacreBLEU's defaults
    metrics = [
        Metric(BLEU_NAME, bleu, lambda stats: bleu_from_stats(stats, bleu.max_ngram_order)),
        Metric(CHRF_NAME, chrf, lambda stats: chrf_from_stats(stats, chrf.beta)),
    ]
    if config.ter:
        metrics.append(Metric(TER_NAME, TER(references=[references]), ter_from_stats))
    return metrics


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
