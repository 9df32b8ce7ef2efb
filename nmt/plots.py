"""Figures: attention heatmaps and BLEU against source sentence length (Bahdanau et al. 2014, Figs. 2 and 3).

The one place that draws; the CLI calls it with what the library returns (a `Translation` of
nmt.decoding.translation, an `EvalReport` of nmt.evaluation), and nothing in the library imports it.

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no global state, no display), rendered
with the non-interactive Agg canvas and written atomically as PNG.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nmt.evaluation.report import EvalReport
from nmt.files import atomic_write

if TYPE_CHECKING:  # for the annotation only: importing decoding would load torch for `nmt eval --plot`
    from nmt.decoding.translation import Translation

EOS_PIECE = "</s>"  # the label of the end-of-sentence position in an attention plot


def _save_png(figure: Figure, path: Path) -> None:
    """Render `figure` to PNG and write it atomically to `path`."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue()))


def plot_attention(
    weights, source_tokens: list[str], target_tokens: list[str], path: Path, title: str | None = None
) -> None:
    """Draw an alignment matrix as a grayscale heatmap (white = 1, black = 0): Bahdanau et al. 2014, Fig. 3.

    `weights` is a (T, S) array-like: row t holds the attention of target token t over the S source tokens.
    Source tokens label the columns along the top, target tokens the rows down the left side.
    """
    matrix = np.asarray(weights, dtype=np.float32)  # (T, S)
    if matrix.ndim != 2 or matrix.shape != (len(target_tokens), len(source_tokens)):
        raise ValueError(
            f"attention weights of shape {matrix.shape} do not match "
            f"{len(target_tokens)} target x {len(source_tokens)} source tokens"
        )
    rows, cols = matrix.shape
    cell = 0.32  # inches per token, so that labels stay readable on long sentences
    figure = Figure(figsize=(max(3.0, 1.5 + cell * cols), max(3.0, 1.5 + cell * rows)), dpi=100)
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest")
    axes.set_xticks(range(cols), labels=source_tokens, rotation=90, fontsize=9)
    axes.set_yticks(range(rows), labels=target_tokens, fontsize=9)
    axes.xaxis.tick_top()
    axes.tick_params(length=0)
    if title:
        axes.set_xlabel(title)
    figure.tight_layout()
    _save_png(figure, path)


def plot_translation_attention(translation: Translation, path: Path) -> None:
    """A heatmap of a translation's best hypothesis's attention: source subwords across, target subwords
    down, each side ending in the EOS; titled with the input line's number (from 1)."""
    plot_attention(
        translation.attention,
        [*translation.source_pieces, EOS_PIECE],
        [*translation.target_pieces, EOS_PIECE],
        path,
        title=f"line {translation.index + 1}",
    )


def plot_bleu_by_length(report: EvalReport, path: Path, title: str | None = None) -> None:
    """BLEU against source sentence length, one line per system with its bootstrap confidence band.

    In the manner of Bahdanau et al. 2014, Fig. 2: each point is the corpus BLEU of the sentences in one
    source-length bucket, drawn at the bucket's middle (the open last bucket half a bucket past its lower
    edge); empty buckets are left out.
    """
    centres = [report.bucket_centre(i) for i in range(len(report.bucket_labels))]
    figure = Figure(figsize=(6.4, 4.2), dpi=110)
    axes = figure.add_subplot()
    for system in report.systems:
        points = [(x, b.bleu) for x, b in zip(centres, system.buckets, strict=True) if b.bleu is not None]
        if not points:
            continue
        x = [centre for centre, _ in points]
        (line,) = axes.plot(x, [s.score for _, s in points], marker="o", markersize=4, label=system.name)
        if all(s.low is not None and s.high is not None for _, s in points):
            lows, highs = [s.low for _, s in points], [s.high for _, s in points]
            axes.fill_between(x, lows, highs, color=line.get_color(), alpha=0.2, linewidth=0)
    axes.set_xticks(centres, labels=report.bucket_labels, fontsize=8)
    axes.set_xlim(report.bucket_edges[0], 2 * centres[-1] - report.bucket_edges[-1])
    axes.set_xlabel("Sentence length (source words)")
    axes.set_ylabel("BLEU")
    axes.set_ylim(bottom=0)
    axes.grid(True, alpha=0.3)
    if title is None:
        title = "BLEU by source sentence length"
        if report.config.bootstrap_samples:
            title += f" (shaded: {report.config.confidence:.0%} bootstrap interval)"
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    _save_png(figure, path)
