"""Word alignments read off a model's attention: does attention learn to align?

The model reads the reference as its own output (teacher forcing: tgt_in = BOS + the reference's subwords) and
`Seq2Seq.attention_maps` returns its cross attention. The subword attention is merged into word attention (a
target word's row is the mean of its pieces' rows, a source word's weight the sum of its pieces' columns; the
source EOS column and the row that predicts the target EOS are left out), and each target word is aligned to
the source word it attends to most: the discrete alignment that Garg et al. (2019), "Jointly Learning to
Align and Translate with Transformer Models", extract from attention probabilities, taken at the step whose
output is the target word (row i of `AttentionMaps.cross` predicts target piece i).

Words are split at whitespace (the indices of the Pharaoh format, nmt.evaluation.alignment); a word's
subwords are the SentencePiece pieces from one that starts with '▁' up to the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import Tensor

from nmt.data.batching import length_batches, pad_sources, pad_targets
from nmt.data.corpus import normalize
from nmt.data.tokenizer import Tokenizer, TokenizerPair
from nmt.decoding.search import source_limits
from nmt.errors import UserError
from nmt.memory import run_in_pieces
from nmt.models.base import Seq2Seq

logger = logging.getLogger(__name__)

WORD_START = "\u2581"  # '▁', SentencePiece's mark of a piece that begins a word
BATCH_TOKENS = 4000  # padded tokens (the longer side) per teacher-forced batch
Link = tuple[int, int]  # (source word, target word), 0-based


# ------------------------------------------------------------------------------------------------------------
# Subwords to words


def piece_words(pieces: Sequence[str]) -> list[int]:
    """The word index of each piece: a word is a piece starting with '▁' and the pieces up to the next one
    (a first piece without the mark still starts word 0)."""
    words, word = [], -1
    for position, piece in enumerate(pieces):
        if position == 0 or piece.startswith(WORD_START):
            word += 1
        words.append(word)
    return words


def word_attention(attention: Tensor, source_words: Sequence[int], target_words: Sequence[int]) -> Tensor:
    """(target words, source words) attention from (target pieces, source pieces) attention: each target
    word's row is the mean of its pieces' rows, each source word's weight the sum of its pieces' columns.

    `attention` has exactly one row per target piece and one column per source piece (no EOS, no padding);
    `source_words` and `target_words` give the word of each piece (`piece_words`).
    """
    attention = attention.float()
    columns = _membership(source_words, attention.device)  # (source pieces, source words)
    rows = _membership(target_words, attention.device)  # (target pieces, target words)
    summed = rows.T @ attention @ columns  # (target words, source words): sums over pieces on both sides
    return summed / rows.sum(dim=0).clamp(min=1)[:, None]  # the target side's sums become means


def _membership(words: Sequence[int], device: torch.device) -> Tensor:
    """(pieces, words) 0/1 matrix: entry (k, w) is 1 when piece k belongs to word w."""
    index = torch.as_tensor(list(words), dtype=torch.long, device=device)
    count = int(index.max()) + 1 if len(index) else 0
    return torch.nn.functional.one_hot(index, count).float()


def argmax_alignment(word_weights: Tensor) -> list[Link]:
    """Each target word j aligned to the source word i it attends to most: the links (i, j)."""
    if word_weights.numel() == 0:
        return []
    return [(int(i), j) for j, i in enumerate(word_weights.argmax(dim=1).tolist())]


def align_from_attention(
    attention: Tensor, source_pieces: Sequence[str], target_pieces: Sequence[str]
) -> list[Link]:
    """The word alignment of one sentence pair from its (target pieces, source pieces) attention."""
    merged = word_attention(attention, piece_words(source_pieces), piece_words(target_pieces))
    return argmax_alignment(merged)


# ------------------------------------------------------------------------------------------------------------
# A model's alignments


class _Encoded:
    """A sentence's pieces (surface strings, '▁' marks kept) and ids, cut to what the model takes."""

    def __init__(self, tokenizer: Tokenizer, line: str, limit: int | None):
        text = normalize(line)
        self.pieces = tokenizer.pieces(text)
        self.ids = tokenizer.encode(text)
        # Whitespace words that SentencePiece normalises away (e.g. a lone zero-width character) would shift
        # every later index: such a sentence is not aligned rather than aligned wrongly.
        self.words_match = len(set(piece_words(self.pieces))) == len(text.split())
        if limit is not None:
            self.pieces, self.ids = self.pieces[:limit], self.ids[:limit]


def align_words(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    sources: Sequence[str],
    references: Sequence[str],
    device: torch.device | str,
    *,
    layer: int | None = None,
    batch_tokens: int = BATCH_TOKENS,
) -> list[list[Link]]:
    """The attention's word alignment of each (source, reference) pair: a list of links (i, j) per pair.

    The cross attention is the decoder layer `layer`'s (default `model.alignment_layer`, the one that
    `state.attention` exposes), averaged over heads. Sentences are batched by length, longest first, in eval
    mode without gradients; a pair with an empty side, or whose words SentencePiece does not keep apart, gets
    no links.
    """
    if not model.has_attention:
        raise UserError(
            "this model has no attention over the source to align with (model.has_attention is False)"
        )
    if len(sources) != len(references):
        raise ValueError(f"{len(sources)} sources but {len(references)} references")
    device = torch.device(device)
    layer = model.alignment_layer if layer is None else layer
    max_source, max_output = source_limits(model)
    source = [_Encoded(tokenizers.source, line, max_source) for line in sources]
    target = [_Encoded(tokenizers.target, line, max_output) for line in references]
    alignments: list[list[Link]] = [[] for _ in sources]
    rows = [k for k, (s, t) in enumerate(zip(source, target, strict=True)) if s.ids and t.ids]
    for k in rows:
        if not (source[k].words_match and target[k].words_match):
            logger.warning("pair %d: its subwords do not split into its words; left without alignment", k + 1)
    rows = [k for k in rows if source[k].words_match and target[k].words_match]

    def run(batch: list[int]) -> list[list[Link]]:
        return _align_batch(model, [source[k] for k in batch], [target[k] for k in batch], device, layer)

    def does_not_fit(row: int) -> list[Link]:
        logger.warning(
            "pair %d does not fit in %s memory even alone: left without alignment", row + 1, device
        )
        return []

    sizes = [max(len(source[k].ids), len(target[k].ids)) + 1 for k in rows]  # EOS / BOS
    was_training = model.training
    model.eval()
    try:
        for batch in length_batches(sizes, batch_tokens):
            batch_rows = [rows[b] for b in batch.tolist()]
            for k, links in zip(
                batch_rows, run_in_pieces(run, batch_rows, device, does_not_fit), strict=True
            ):
                alignments[k] = links
    finally:
        model.train(was_training)
    return alignments


@torch.no_grad()
def _align_batch(
    model: Seq2Seq, source: list[_Encoded], target: list[_Encoded], device: torch.device, layer: int
) -> list[list[Link]]:
    src, src_lengths = pad_sources([s.ids for s in source])
    tgt_in, _ = pad_targets([t.ids for t in target])  # BOS + the reference's ids
    maps = model.attention_maps(src.to(device), src_lengths.to(device), tgt_in.to(device))
    cross = maps.cross[layer].float().mean(dim=1).cpu()  # (B, T, S): the heads averaged
    # Row k predicts target piece k (the last row predicts EOS); column k is source piece k (the last, EOS).
    return [
        align_from_attention(cross[b, : len(t.ids), : len(s.ids)], s.pieces, t.pieces)
        for b, (s, t) in enumerate(zip(source, target, strict=True))
    ]


__all__ = [
    "align_from_attention",
    "align_words",
    "argmax_alignment",
    "piece_words",
    "word_attention",
]
