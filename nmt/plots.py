"""Figures: attention maps and BLEU against source sentence length (Bahdanau et al. 2014, Figs. 2 and 3).

The one place that draws; the CLI calls it with what the library returns (a `Translation` of
nmt.decoding.translation, an `EvalReport` of nmt.evaluation), and nothing in the library imports it.

A translation's attention (`Translation.attention_maps`, every map of `Seq2Seq.attention_maps`) is drawn as
`AttentionView` says (the `nmt translate --attention-*` options): one kind (cross, encoder or decoder), one
layer or all, the mean of the heads, one head or all, as heatmaps or, for one query token, as lines. The axes:

- cross: source pieces + </s> across, target pieces + </s> down. Row i is the query that produced target
  piece i (the last one the EOS), as in Bahdanau et al. 2014, Fig. 3.
- encoder: source pieces + </s> on both axes.
- decoder: <s> + target pieces on both axes. The decoder reads BOS + the translation; the query at position
  i is the state of the token read there (it then predicts token i + 1), and the keys it may see are the
  tokens read so far. So both axes name the token read, the diagonal is each token looking at itself, and
  the causal mask leaves the upper triangle empty. (Labelling the rows by the token predicted, as for cross,
  would shift them one place against the keys they are compared with.)

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no global state, no display), rendered
with the non-interactive Agg canvas and written atomically as PNG.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nmt.data.corpus import normalize
from nmt.errors import UserError
from nmt.evaluation.report import EvalReport
from nmt.files import atomic_write

if TYPE_CHECKING:  # for the annotation only: importing decoding would load torch for `nmt eval --plot`
    from nmt.decoding.translation import Translation

EOS_PIECE = "</s>"  # the label of the end-of-sentence position in an attention plot
BOS_PIECE = "<s>"  # the label of the beginning-of-sentence token the decoder reads first
WORD_START = "\u2581"  # SentencePiece's mark on a piece that begins a word
# The fields of nmt.models.base.AttentionMaps (a test checks), named here without importing torch.
KIND_NAMES = {
    "cross": "cross-attention",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
}
MEAN, ALL, LAST = "mean", "all", "last"


def _save_png(figure: Figure, path: Path) -> None:
    """Render `figure` to PNG and write it atomically to `path`."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    atomic_write(Path(path), lambda handle: handle.write(buffer.getvalue()))


# ------------------------------------------------------------------------------------------------------------
# What to draw


@dataclass(frozen=True)
class AttentionView:
    """Which attention maps of a translation to draw (the `nmt translate --attention-*` options).

    `layer` and `head` count from 1. `token`, when given, draws that one query's weights as lines instead of
    heatmaps (see `query_rows` for how it names a query).
    """

    kind: str = "cross"  # a key of KIND_NAMES
    layer: int | str = LAST  # a layer number, LAST or ALL (one panel per layer)
    head: int | str = MEAN  # a head number, MEAN (of the layer's heads) or ALL (one panel per head)
    token: str | None = None

    @classmethod
    def parse(cls, kind: str | None, layer: str | None, head: str | None, token: str | None) -> AttentionView:
        """From the options' text (None: the default); a malformed value is a UserError naming its option."""
        kind = (kind or "cross").strip().lower()
        if kind not in KIND_NAMES:
            raise UserError(f"--attention-kind must be one of {', '.join(KIND_NAMES)} (got {kind!r})")
        if token is not None and not normalize(token):
            raise UserError("--attention-token must name a token (got an empty one)")
        return cls(
            kind=kind,
            layer=_number_or(layer, "--attention-layer", (LAST, ALL), LAST),
            head=_number_or(head, "--attention-head", (MEAN, ALL), MEAN),
            token=normalize(token) if token is not None else None,
        )

    @property
    def queries_are_source(self) -> bool:
        """Whether the queries are source tokens, known before translating (so is a --attention-token)."""
        return self.kind == "encoder"

    def check(self, inventory: dict[str, tuple[int, int]]) -> None:
        """Refuse a kind, layer or head the model lacks; `inventory` maps each kind the model has to its
        (layers, heads), as nmt.decoding.translation.attention_inventory answers."""
        if not inventory:
            raise UserError(
                "--attention-plot needs a model with attention: the rnn model reads the source as one fixed "
                "vector (use an rnnsearch or transformer checkpoint, or leave out --attention-plot)"
            )
        if self.kind not in inventory:
            has = ", ".join(KIND_NAMES[kind] for kind in inventory)
            raise UserError(
                f"--attention-kind {self.kind}: this model has no {KIND_NAMES[self.kind]} (it has: {has})"
            )
        layers, heads = inventory[self.kind]
        name = KIND_NAMES[self.kind]
        if isinstance(self.layer, int) and not 1 <= self.layer <= layers:
            raise UserError(
                f"--attention-layer {self.layer}: this model's {name} has {layers} layer(s) "
                f"(give 1 to {layers}, last or all)"
            )
        if isinstance(self.head, int) and not 1 <= self.head <= heads:
            raise UserError(
                f"--attention-head {self.head}: this model's {name} has {heads} head(s) per layer "
                f"(give 1 to {heads}, mean or all)"
            )

    def check_translation(self, translation: Translation) -> None:
        """Refuse a translation whose queries do not hold --attention-token (nothing to check without it)."""
        if self.token is not None:
            queries, _ = attention_axes(self.kind, translation.source_pieces, translation.target_pieces)
            self.query_rows(queries, translation.index + 1)

    def query_rows(self, queries: list[str], line: int) -> list[int]:
        """The rows (from 0) of the query labels that `token` names, or a UserError naming `line` (from 1).

        A number N is the N-th query (from 1: the N-th row of the heatmap, the EOS or BOS counted); anything
        else is first a word, whose pieces all are chosen (its first occurrence; pieces are grouped into
        words at SentencePiece's word-start mark), then a single piece, with or without that mark.
        """
        token = self.token or ""
        if token.isascii() and token.isdecimal():
            if 1 <= int(token) <= len(queries):
                return [int(token) - 1]
        else:
            for word, rows in _words(queries):
                if word == token:
                    return rows
            for row, piece in enumerate(queries):
                if token in (piece, piece.removeprefix(WORD_START)):
                    return [row]
        shown = " ".join(queries) if len(queries) <= 30 else " ".join([*queries[:30], "..."])
        raise UserError(
            f"--attention-token {token!r} is not among the queries of line {line} ({shown}): give one of "
            f"its words or pieces, or a position from 1 to {len(queries)}"
        )


def _number_or(text: str | None, option: str, words: tuple[str, ...], default: str) -> int | str:
    """A 1-based number or one of `words` (case-insensitive), from an option's text."""
    value = (text or default).strip().lower()
    if value in words:
        return value
    if value.isascii() and value.isdecimal() and int(value) >= 1:
        return int(value)
    raise UserError(f"{option} must be a number from 1 or one of {', '.join(words)} (got {text!r})")


def _words(pieces: list[str]) -> list[tuple[str, list[int]]]:
    """Pieces grouped into words: (the word's text, its rows). A word starts at a piece with the word-start
    mark; <s> and </s> are words of their own."""
    words: list[tuple[str, list[int]]] = []
    for row, piece in enumerate(pieces):
        special = piece in (BOS_PIECE, EOS_PIECE)
        if not words or special or piece.startswith(WORD_START) or words[-1][0] in (BOS_PIECE, EOS_PIECE):
            words.append(("", []))
        text, rows = words[-1]
        words[-1] = (text + (piece if special else piece.replace(WORD_START, "")), [*rows, row])
    return words


def attention_axes(
    kind: str, source_pieces: list[str], target_pieces: list[str]
) -> tuple[list[str], list[str]]:
    """(query labels, key labels) of a map of `kind` (see the module docstring for why)."""
    source = [*source_pieces, EOS_PIECE]
    if kind == "cross":
        return [*target_pieces, EOS_PIECE], source
    if kind == "encoder":
        return source, source
    read = [BOS_PIECE, *target_pieces]  # decoder: what the decoder read, position by position
    return read, read


@dataclass
class Panel:
    """One map to draw: its label and its (queries, keys) weights."""

    title: str
    weights: np.ndarray


def select_panels(view: AttentionView, layers: list) -> list[list[Panel]]:
    """The maps `view` chooses from `layers` (one array-like (heads, queries, keys) per layer): one row per
    chosen layer, one column per chosen head (or their mean). Titles are left out when there is only one
    map to choose from (RNNsearch's one layer of one head)."""
    layers = [np.asarray(layer, dtype=np.float32) for layer in layers]
    only_one = len(layers) == 1 and layers[0].shape[0] == 1
    if view.layer == ALL:
        chosen = range(len(layers))
    else:
        chosen = [len(layers) - 1 if view.layer == LAST else view.layer - 1]
    grid = []
    for index in chosen:
        heads, name = layers[index], f"layer {index + 1}"
        if view.head == MEAN:
            row = [Panel(f"{name}, mean of {len(heads)} heads" if len(heads) > 1 else name, heads.mean(0))]
        elif view.head == ALL:
            row = [Panel(f"{name}, head {h + 1}", heads[h]) for h in range(len(heads))]
        else:
            row = [Panel(f"{name}, head {view.head}", heads[view.head - 1])]
        grid.append([Panel("" if only_one else panel.title, panel.weights) for panel in row])
    return grid


def _arrange(grid: list[list[Panel]]) -> list[list[Panel]]:
    """A single row or column of more than three panels wrapped into a near-square grid; layers x heads as
    they are."""
    if len(grid) > 1 and any(len(row) > 1 for row in grid):
        return grid
    panels = [panel for row in grid for panel in row]
    if len(panels) <= 3:
        return [panels]
    columns = math.ceil(math.sqrt(len(panels)))
    return [panels[i : i + columns] for i in range(0, len(panels), columns)]


def _check_shapes(grid: list[list[Panel]], queries: list[str], keys: list[str]) -> None:
    for panel in (panel for row in grid for panel in row):
        if panel.weights.shape != (len(queries), len(keys)):
            raise ValueError(
                f"attention weights of shape {panel.weights.shape} do not match "
                f"{len(queries)} query x {len(keys)} key tokens"
            )


# ------------------------------------------------------------------------------------------------------------
# Drawing attention


def plot_attention(
    weights, source_tokens: list[str], target_tokens: list[str], path: Path, title: str | None = None
) -> Figure:
    """Draw an alignment matrix as a grayscale heatmap (white = 1, black = 0): Bahdanau et al. 2014, Fig. 3.

    `weights` is a (T, S) array-like: row t holds the attention of target token t over the S source tokens.
    Source tokens label the columns along the top, target tokens the rows down the left side.
    """
    matrix = np.asarray(weights, dtype=np.float32)  # (T, S)
    if matrix.ndim != 2:
        raise ValueError(f"attention weights of shape {matrix.shape} are not a (target, source) matrix")
    return plot_attention_grid([[Panel("", matrix)]], target_tokens, source_tokens, path, title)


def plot_attention_grid(
    grid: list[list[Panel]], queries: list[str], keys: list[str], path: Path, caption: str | None = None
) -> Figure:
    """Heatmaps (white = 1, black = 0) of the panels of `grid`, rows of panels as given (one axes each),
    keys across the top and queries down the left of the outer panels; returns the figure it saved."""
    _check_shapes(grid, queries, keys)
    grid = _arrange(grid)
    rows, columns = len(grid), max(len(row) for row in grid)
    single = rows == columns == 1
    cell, font = (0.32, 9) if single else (0.16, 6)  # inches per token: labels stay readable
    width, height = 0.6 + cell * len(keys), 0.6 + cell * len(queries)
    # One map is captioned under it, as Bahdanau et al.'s figure, its panel's title on a second line.
    under = "\n".join(part for part in (caption, grid[0][0].title) if part) if single else ""
    text_width = 0.5 + 0.08 * max((len(line) for line in under.splitlines()), default=0)  # ~10 pt letters
    figure = Figure(
        figsize=(max(3.0, text_width, 0.9 + columns * width), max(3.0, 1.0 + rows * height)),
        dpi=100,
        layout="constrained",
    )
    for r, row in enumerate(grid):
        for c, panel in enumerate(row):
            axes = figure.add_subplot(rows, columns, r * columns + c + 1)
            axes.imshow(
                panel.weights, cmap="gray", vmin=0.0, vmax=1.0, aspect="equal", interpolation="nearest"
            )
            axes.set_xticks(range(len(keys)), labels=keys, rotation=90, fontsize=font)
            axes.set_yticks(range(len(queries)), labels=queries, fontsize=font)
            axes.xaxis.tick_top()
            axes.tick_params(length=0, labeltop=r == 0, labelleft=c == 0)
            if single and under:
                axes.set_xlabel(under)
            elif panel.title:
                axes.set_xlabel(panel.title, fontsize=7)
    if caption and not single:
        figure.suptitle(caption, fontsize=10)
    _save_png(figure, path)
    return figure


def plot_attention_lines(
    grid: list[list[Panel]],
    queries: list[str],
    keys: list[str],
    rows: list[int],
    path: Path,
    caption: str | None = None,
) -> Figure:
    """For the queries at `rows`, the weight each gives every key, as lines: queries in a column on the left,
    keys on the right, one line from each chosen query to each key, as thick and as dark as its weight (the
    picture of Vaswani et al. 2017, Figures 3-5, of "its" attending to "Law"). One axes per panel of `grid`;
    returns the figure it saved."""
    _check_shapes(grid, queries, keys)
    grid = _arrange(grid)
    n_rows, columns = len(grid), max(len(row) for row in grid)
    longest = max(len(label) for label in [*queries, *keys])
    width, height = max(3.0, 1.4 + 0.14 * longest), 0.6 + 0.22 * max(len(queries), len(keys))
    figure = Figure(figsize=(columns * width, 0.5 + n_rows * height), dpi=100, layout="constrained")
    for r, row in enumerate(grid):
        for c, panel in enumerate(row):
            axes = figure.add_subplot(n_rows, columns, r * columns + c + 1)
            _draw_lines(axes, panel, queries, keys, rows)
    if caption:
        chosen = " ".join(queries[row] for row in rows)
        figure.suptitle(f"{caption}: what {chosen} attends to", fontsize=10)
    _save_png(figure, path)
    return figure


def _draw_lines(axes, panel: Panel, queries: list[str], keys: list[str], rows: list[int]) -> None:
    """One panel of `plot_attention_lines`."""
    axes.set_xlim(0.0, 1.0)
    axes.set_ylim(max(len(queries), len(keys)) - 0.5, -0.5)  # the first token at the top
    axes.axis("off")
    left, right = 0.3, 0.7
    for row in rows:
        for key, weight in enumerate(panel.weights[row]):
            alpha = float(min(1.0, 0.05 + weight))
            axes.plot(
                [left + 0.02, right - 0.02],
                [row, key],
                color="tab:blue",
                linewidth=0.3 + 6 * weight,
                alpha=alpha,
            )
    received = panel.weights[rows].sum(axis=0) / len(rows)  # what each key gets from the chosen queries
    for index, label in enumerate(queries):
        chosen = index in rows
        style = {"facecolor": "tab:orange", "alpha": 0.4, "linewidth": 0} if chosen else None
        axes.text(left, index, label, ha="right", va="center", fontsize=8, bbox=style)
    for index, label in enumerate(keys):
        style = {"facecolor": "tab:blue", "alpha": float(min(1.0, received[index])), "linewidth": 0}
        axes.text(right, index, label, ha="left", va="center", fontsize=8, bbox=style)
    if panel.title:
        axes.set_title(panel.title, fontsize=8)


def plot_translation_attention(
    translation: Translation, path: Path, view: AttentionView | None = None
) -> Figure:
    """A translation's attention maps, chosen by `view` (default: the last layer's cross-attention, mean over
    heads: source subwords across, target subwords down, each side ending in the EOS), titled with the input
    line's number (from 1). Heatmaps, or lines for `view.token`. Returns the figure it saved."""
    view = view or AttentionView()
    if translation.attention_maps is None:
        raise ValueError(f"line {translation.index + 1} has no attention maps to draw")
    queries, keys = attention_axes(view.kind, translation.source_pieces, translation.target_pieces)
    layers = [layer[0] for layer in getattr(translation.attention_maps, view.kind)]  # (heads, queries, keys)
    grid = select_panels(view, layers)
    caption = f"line {translation.index + 1}, {KIND_NAMES[view.kind]}"
    if view.token is None:
        return plot_attention_grid(grid, queries, keys, path, caption)
    rows = view.query_rows(queries, translation.index + 1)
    return plot_attention_lines(grid, queries, keys, rows, path, caption)


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
    axes.set_xlabel(f"Sentence length (source {report.length_unit})")
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
