"""Turning lists of token ids into padded tensors, and token-budget batches of similar length.

`length_batches` is the one length batcher: training, validation and translation all cut with it.

Training batches are made in three moves (as in fairseq and tensor2tensor), all a pure function of
(seed, epoch) so that an interrupted run can find its place again:

1. shuffle the examples, and cut the shuffled order into large chunks (`chunk_batches` batches' worth);
2. sort each chunk by length, and cut it into batches whose padded size, B * max length, fits the budget;
3. shuffle the order of the batches.

Sorting inside large random chunks keeps padding low while batches still differ from epoch to epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID


def pad_sources(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Source ids -> (src (B, S) = ids + EOS right-padded with PAD, src_lengths (B,) including EOS)."""
    lengths = torch.tensor([len(s) + 1 for s in sequences], dtype=torch.long)
    src = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sequences):
        src[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        src[row, len(ids)] = EOS_ID
    return src, lengths


def pad_targets(sequences: Sequence[Sequence[int]]) -> tuple[Tensor, Tensor]:
    """Target ids -> (tgt_in (B, T) = BOS + ids, tgt_out (B, T) = ids + EOS), both right-padded with PAD."""
    width = max((len(s) for s in sequences), default=0) + 1
    tgt_in = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    tgt_out = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sequences):
        ids = torch.as_tensor(ids, dtype=torch.long)
        tgt_in[row, 0] = BOS_ID
        tgt_in[row, 1 : len(ids) + 1] = ids
        tgt_out[row, : len(ids)] = ids
        tgt_out[row, len(ids)] = EOS_ID
    return tgt_in, tgt_out


# ----------------------------------------------------------------------------------------------------------
# A split's token ids in memory


@dataclass
class TokenizedPairs:
    """The token ids of a split as flat arrays (sentences end to end, plus offsets), read once from Arrow.

    Sentence i's source ids are `src_ids[src_offsets[i]:src_offsets[i + 1]]`. Reading the Arrow buffers
    directly makes 300k pairs load in well under a second.
    """

    src_ids: np.ndarray  # (total source tokens,) int64
    src_offsets: np.ndarray  # (N + 1,) int64
    tgt_ids: np.ndarray
    tgt_offsets: np.ndarray
    src_words: np.ndarray  # (N,) whitespace word counts of the cleaned text
    tgt_words: np.ndarray

    @classmethod
    def from_dataset(cls, dataset) -> TokenizedPairs:
        """Read the src_ids/tgt_ids/src_words/tgt_words columns of a `datasets.Dataset`."""
        table = dataset.with_format("arrow")[:]  # a pyarrow.Table, honouring any index mapping

        def flat(name: str) -> tuple[np.ndarray, np.ndarray]:
            column = table.column(name).combine_chunks()
            offsets = column.offsets.to_numpy().astype(np.int64)
            values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
            return values[offsets[0] : offsets[-1]], offsets - offsets[0]

        src_ids, src_offsets = flat("src_ids")
        tgt_ids, tgt_offsets = flat("tgt_ids")
        return cls(
            src_ids=src_ids,
            src_offsets=src_offsets,
            tgt_ids=tgt_ids,
            tgt_offsets=tgt_offsets,
            src_words=table.column("src_words").to_numpy().astype(np.int64),
            tgt_words=table.column("tgt_words").to_numpy().astype(np.int64),
        )

    @classmethod
    def from_lists(cls, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> TokenizedPairs:
        """For tests and small inputs; word counts are taken to be the token counts."""

        def flat(seqs):
            lengths = np.array([len(s) for s in seqs], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            values = np.array([i for s in seqs for i in s], dtype=np.int64)
            return values, offsets, lengths

        src_ids, src_offsets, src_words = flat(sources)
        tgt_ids, tgt_offsets, tgt_words = flat(targets)
        return cls(src_ids, src_offsets, tgt_ids, tgt_offsets, src_words, tgt_words)

    def __len__(self) -> int:
        return len(self.src_words)

    @property
    def src_lengths(self) -> np.ndarray:
        """(N,) source tensor lengths: ids + EOS."""
        return np.diff(self.src_offsets) + 1

    @property
    def tgt_lengths(self) -> np.ndarray:
        """(N,) target tensor lengths: BOS + ids (= ids + EOS)."""
        return np.diff(self.tgt_offsets) + 1


# ----------------------------------------------------------------------------------------------------------
# Filtering and batching


@dataclass
class LengthFilter:
    """The examples kept for training, and how many were dropped for which reason."""

    kept: np.ndarray  # (K,) indices into the split
    too_many_words: int  # longer than --max-source-len / --max-target-len (in words)
    over_budget: int  # one sentence alone does not fit the token budget


def filter_lengths(
    pairs: TokenizedPairs, max_source_words: int | None, max_target_words: int | None, batch_tokens: int
) -> LengthFilter:
    """Keep pairs within the word limits (Bahdanau et al. train on sentences of up to 30 or 50 words) whose
    padded size alone fits `batch_tokens`."""
    keep_words = np.ones(len(pairs), dtype=bool)
    if max_source_words is not None:
        keep_words &= pairs.src_words <= max_source_words
    if max_target_words is not None:
        keep_words &= pairs.tgt_words <= max_target_words
    fits = np.maximum(pairs.src_lengths, pairs.tgt_lengths) <= batch_tokens
    return LengthFilter(
        kept=np.flatnonzero(keep_words & fits),
        too_many_words=int((~keep_words).sum()),
        over_budget=int((keep_words & ~fits).sum()),
    )


def length_batches(
    sizes: Sequence[int] | np.ndarray, batch_tokens: int, order: Sequence[int] | np.ndarray | None = None
) -> list[np.ndarray]:
    """Cut `order` into runs whose padded size, count * largest size, is at most `batch_tokens`.

    The one length batcher, for training, validation and translation. `sizes[i]` is example i's padded
    length; `order` lists the indices to batch, already sorted by size (either way) so that batches hold
    sentences of similar length; by default every index, longest first (stable). A sentence larger than the
    budget alone gets a batch of its own. Returns arrays of indices, in the order cut.
    """
    sizes = np.asarray(sizes, dtype=np.int64)  # (N,)
    order = np.argsort(-sizes, kind="stable") if order is None else np.asarray(order, dtype=np.int64)
    batches, start, largest = [], 0, 0
    for position, size in enumerate(sizes[order].tolist()):
        largest_with = max(largest, size)
        if position > start and (position - start + 1) * largest_with > batch_tokens:
            batches.append(order[start:position])
            start, largest_with = position, size
        largest = largest_with
    if start < len(order):
        batches.append(order[start:])
    return batches


def token_batches(
    pairs: TokenizedPairs,
    indices: np.ndarray,
    batch_tokens: int,
    seed: int,
    epoch: int,
    chunk_batches: int = 100,
) -> list[np.ndarray]:
    """The training batches of `epoch`: lists of example indices, a pure function of (seed, epoch).

    A batch's padded size, B * max(source length, target length), never exceeds `batch_tokens`
    (every index must fit alone: see `filter_lengths`). Every index appears in exactly one batch.
    """
    rng = np.random.default_rng([seed, epoch])
    src_len, tgt_len = pairs.src_lengths, pairs.tgt_lengths
    sizes = np.maximum(src_len, tgt_len)  # (N,)
    shuffled = rng.permutation(np.asarray(indices, dtype=np.int64))
    if len(shuffled) == 0:
        return []
    per_batch = max(1, batch_tokens // max(1, int(sizes[shuffled].mean())))
    chunk = per_batch * chunk_batches
    batches: list[np.ndarray] = []
    for start in range(0, len(shuffled), chunk):
        part = shuffled[start : start + chunk]
        # Sort by the size that the budget counts, max(source, target), then by the total length; stable,
        # so ties keep their random order.
        part = part[np.lexsort((src_len[part] + tgt_len[part], sizes[part]))]
        batches.extend(length_batches(sizes, batch_tokens, order=part))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def sorted_batches(pairs: TokenizedPairs, indices: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Deterministic batches for evaluation: sorted by length, no shuffling (callers restore the order).

    The budget is raised to the longest pair when one exceeds it, so that every index has a batch.
    """
    indices = np.asarray(indices, dtype=np.int64)
    sizes = np.maximum(pairs.src_lengths, pairs.tgt_lengths)
    order = indices[np.lexsort((pairs.src_lengths[indices] + pairs.tgt_lengths[indices], sizes[indices]))]
    return length_batches(sizes, max(batch_tokens, int(sizes[indices].max(initial=1))), order=order)


@dataclass
class PaddingStats:
    real_tokens: int
    padded_tokens: int  # positions in the padded (B, S) and (B, T) tensors, real or padding

    @property
    def fraction(self) -> float:
        """The share of tensor positions that hold padding."""
        return 1.0 - self.real_tokens / max(1, self.padded_tokens)


def padding_stats(pairs: TokenizedPairs, batches: Sequence[np.ndarray]) -> PaddingStats:
    """Padding over the source and target tensors of `batches`."""
    src_len, tgt_len = pairs.src_lengths, pairs.tgt_lengths
    real = padded = 0
    for batch in batches:
        s, t = src_len[batch], tgt_len[batch]
        real += int(s.sum() + t.sum())
        padded += len(batch) * int(s.max() + t.max())
    return PaddingStats(real, padded)


# ----------------------------------------------------------------------------------------------------------
# Padded tensors


@dataclass
class Batch:
    """A padded batch following the model contract (nmt/models/base.py)."""

    src: Tensor  # (B, S) ids + EOS, right-padded
    src_lengths: Tensor  # (B,) including EOS
    tgt_in: Tensor  # (B, T) BOS + ids
    tgt_out: Tensor  # (B, T) ids + EOS
    num_tokens: int  # real target tokens (the loss is summed over these)

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"
        return Batch(
            src=self.src.to(device, non_blocking=non_blocking),
            src_lengths=self.src_lengths.to(device, non_blocking=non_blocking),
            tgt_in=self.tgt_in.to(device, non_blocking=non_blocking),
            tgt_out=self.tgt_out.to(device, non_blocking=non_blocking),
            num_tokens=self.num_tokens,
        )

    def pin_memory(self) -> Batch:
        return Batch(
            self.src.pin_memory(),
            self.src_lengths.pin_memory(),
            self.tgt_in.pin_memory(),
            self.tgt_out.pin_memory(),
            self.num_tokens,
        )


def _gather_padded(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """(B, width) rows values[starts[b] : starts[b] + lengths[b]], PAD after; no Python loop over rows."""
    columns = np.arange(width)  # (W,)
    inside = columns[None, :] < lengths[:, None]  # (B, W) True at real tokens
    positions = np.where(inside, starts[:, None] + columns[None, :], 0)  # (B, W)
    return np.where(inside, values[positions] if len(values) else PAD_ID, PAD_ID)


def target_tokens(pairs: TokenizedPairs, indices: np.ndarray) -> int:
    """Real target tokens (ids + EOS) of the examples `indices`: the loss normaliser, known before the GPU."""
    return int(pairs.tgt_lengths[indices].sum())


def collate(pairs: TokenizedPairs, indices: np.ndarray) -> Batch:
    """The padded tensors of examples `indices`, in that order."""
    src_len = np.diff(pairs.src_offsets)[indices]  # (B,) ids only
    tgt_len = np.diff(pairs.tgt_offsets)[indices]
    rows = np.arange(len(indices))
    src = _gather_padded(pairs.src_ids, pairs.src_offsets[indices], src_len, int(src_len.max()) + 1)  # (B, S)
    src[rows, src_len] = EOS_ID
    ids = _gather_padded(pairs.tgt_ids, pairs.tgt_offsets[indices], tgt_len, int(tgt_len.max()) + 1)  # (B, T)
    tgt_out = ids.copy()
    tgt_out[rows, tgt_len] = EOS_ID
    tgt_in = np.empty_like(ids)
    tgt_in[:, 0] = BOS_ID
    tgt_in[:, 1:] = ids[:, :-1]
    return Batch(
        src=torch.from_numpy(src),
        src_lengths=torch.from_numpy(src_len + 1),
        tgt_in=torch.from_numpy(tgt_in),
        tgt_out=torch.from_numpy(tgt_out),
        num_tokens=int(tgt_len.sum()) + len(indices),
    )
