"""Padding: the share of padding positions in the trainer's length-bucketed token batches
(`nmt.data.batching.token_batches`), on the synthetic corpus and on prepared data directories."""

from __future__ import annotations

from pathlib import Path

from nmt.benchmark.inputs import FIRST_WORD_ID
from nmt.benchmark.report import PaddingResult
from nmt.data.batching import TokenizedPairs, filter_lengths, padding_stats, token_batches
from nmt.data.prepared import PreparedData
from nmt.data.synthetic import generate_pairs


def measure_padding(
    corpus: str, unit: str, pairs: TokenizedPairs, batch_tokens: int, seed: int
) -> PaddingResult:
    """The padding of epoch 1's training batches of `pairs` at the token budget `batch_tokens`."""
    kept = filter_lengths(pairs, None, None, batch_tokens).kept
    batches = token_batches(pairs, kept, batch_tokens, seed, epoch=1)
    src_len, tgt_len = pairs.src_lengths, pairs.tgt_lengths
    src_real = sum(int(src_len[b].sum()) for b in batches)
    src_padded = sum(len(b) * int(src_len[b].max()) for b in batches)
    tgt_real = sum(int(tgt_len[b].sum()) for b in batches)
    tgt_padded = sum(len(b) * int(tgt_len[b].max()) for b in batches)
    return PaddingResult(
        corpus=corpus,
        unit=unit,
        pairs=len(kept),
        batch_tokens=batch_tokens,
        batches=len(batches),
        source_padding=1 - src_real / max(1, src_padded),
        target_padding=1 - tgt_real / max(1, tgt_padded),
        padding=padding_stats(pairs, batches).fraction,
    )


def synthetic_pairs(n: int, seed: int) -> TokenizedPairs:
    """The synthetic corpus as word ids (its two languages translate word for word; lengths are in words)."""
    vocabulary: dict[str, int] = {}

    def ids(text: str) -> list[int]:
        return [vocabulary.setdefault(word, FIRST_WORD_ID + len(vocabulary)) for word in text.split()]

    found = generate_pairs(n, seed)
    return TokenizedPairs.from_lists([ids(s) for s, _ in found], [ids(t) for _, t in found])


def corpus_name(data_dir: Path) -> str:
    """The directory's name and its language pair, e.g. "m30k (en-de)"."""
    data = PreparedData.open(data_dir)
    return f"{Path(data_dir).name} ({data.source_lang}-{data.target_lang})"


def prepared_pairs(data_dir: Path) -> TokenizedPairs:
    """The training split of a prepared data directory, as token ids."""
    return TokenizedPairs.from_dataset(PreparedData.open(data_dir).split("train"))
