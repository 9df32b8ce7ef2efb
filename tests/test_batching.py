"""Token-budget batching: the budget holds, every example appears once, the order is a function of
(seed, epoch), padding stays low, and the length filters count what they drop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nmt.data.batching import (
    TokenizedPairs,
    collate,
    filter_lengths,
    length_batches,
    pad_sources,
    pad_targets,
    padding_stats,
    sorted_batches,
    target_tokens,
    token_batches,
)


def random_pairs(n: int, seed: int, max_len: int = 60) -> TokenizedPairs:
    """Pairs whose target length follows the source length, as in real parallel text."""
    rng = np.random.default_rng(seed)
    src_lengths = rng.integers(1, max_len, size=n)
    tgt_lengths = np.clip(src_lengths + rng.integers(-3, 4, size=n), 1, None)
    sources = [rng.integers(4, 100, size=length).tolist() for length in src_lengths]
    targets = [rng.integers(4, 100, size=length).tolist() for length in tgt_lengths]
    return TokenizedPairs.from_lists(sources, targets)


@pytest.fixture(scope="module")
def pairs() -> TokenizedPairs:
    return random_pairs(5000, seed=0)


def test_batches_respect_the_token_budget(pairs):
    sizes = np.maximum(pairs.src_lengths, pairs.tgt_lengths)
    for budget in (64, 500, 4096):
        kept = filter_lengths(pairs, None, None, budget).kept
        for batch in token_batches(pairs, kept, budget, seed=1, epoch=1):
            assert len(batch) * sizes[batch].max() <= budget
            padded = collate(pairs, batch)
            assert padded.src.numel() <= budget and padded.tgt_in.numel() <= budget


def test_every_example_appears_exactly_once_per_epoch(pairs):
    indices = np.arange(0, len(pairs), 3)  # a subset, as after filtering
    for epoch in (1, 2):
        batches = token_batches(pairs, indices, 1000, seed=3, epoch=epoch)
        seen = np.sort(np.concatenate(batches))
        np.testing.assert_array_equal(seen, indices)


def test_batch_order_is_a_function_of_seed_and_epoch(pairs):
    indices = np.arange(len(pairs))

    def order(seed, epoch):
        return np.concatenate(token_batches(pairs, indices, 1000, seed=seed, epoch=epoch))

    np.testing.assert_array_equal(order(1, 1), order(1, 1))
    assert not np.array_equal(order(1, 1), order(1, 2))
    assert not np.array_equal(order(1, 1), order(2, 1))


def test_padding_is_low(pairs):
    batches = token_batches(pairs, np.arange(len(pairs)), 4096, seed=1, epoch=1)
    assert padding_stats(pairs, batches).fraction < 0.10
    # Unsorted batches of the same sizes would pad far more: the bucketing is what keeps it low.
    shuffled = np.random.default_rng(0).permutation(len(pairs))
    cuts = np.cumsum([len(b) for b in batches])[:-1]
    assert padding_stats(pairs, np.split(shuffled, cuts)).fraction > 0.3


def test_length_filters_count_what_they_drop():
    pairs = TokenizedPairs.from_lists(
        [[5] * 3, [5] * 8, [5] * 2, [5] * 30], [[6] * 2, [6] * 2, [6] * 9, [6] * 3]
    )
    result = filter_lengths(pairs, max_source_words=5, max_target_words=5, batch_tokens=1000)
    np.testing.assert_array_equal(result.kept, [0])
    assert result.too_many_words == 3 and result.over_budget == 0
    # A budget smaller than a sentence (ids + EOS) drops it with a count instead of failing later.
    result = filter_lengths(pairs, None, None, batch_tokens=9)
    np.testing.assert_array_equal(result.kept, [0, 1])
    assert result.over_budget == 2 and result.too_many_words == 0


def test_collate_follows_the_model_contract():
    sources, targets = [[5, 6], [7], [8, 9, 10]], [[11], [12, 13], [14]]
    pairs = TokenizedPairs.from_lists(sources, targets)
    batch = collate(pairs, np.array([0, 1, 2]))
    src, src_lengths = pad_sources(sources)
    tgt_in, tgt_out = pad_targets(targets)
    assert torch.equal(batch.src, src) and torch.equal(batch.src_lengths, src_lengths)
    assert torch.equal(batch.tgt_in, tgt_in) and torch.equal(batch.tgt_out, tgt_out)
    assert batch.num_tokens == int((tgt_out != 0).sum()) == target_tokens(pairs, np.array([0, 1, 2]))


def test_sorted_batches_cover_everything_even_sentences_over_the_budget(pairs):
    batches = sorted_batches(pairs, np.arange(100), batch_tokens=10)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.arange(100))


def test_length_batches_respect_the_token_budget():
    lengths = [3, 9, 1, 4, 4, 7, 2, 30]
    batches = length_batches(lengths, batch_tokens=12)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        width = max(lengths[i] for i in batch)
        assert width * len(batch) <= 12 or len(batch) == 1
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_reading_an_arrow_dataset_matches_the_lists():
    from datasets import Dataset

    sources, targets = [[5, 6], [7], [8, 9, 10], [11]], [[12], [13, 14], [15], [16, 17, 18]]
    dataset = Dataset.from_dict(
        {"src_ids": sources, "tgt_ids": targets, "src_words": [2, 1, 3, 1], "tgt_words": [1, 2, 1, 3]}
    )
    for view, order in ((dataset, [0, 1, 2, 3]), (dataset.select([2, 0, 3]), [2, 0, 3])):
        pairs = TokenizedPairs.from_dataset(view)
        expected = TokenizedPairs.from_lists([sources[i] for i in order], [targets[i] for i in order])
        batch, reference = collate(pairs, np.arange(len(order))), collate(expected, np.arange(len(order)))
        assert torch.equal(batch.src, reference.src) and torch.equal(batch.tgt_out, reference.tgt_out)
        np.testing.assert_array_equal(pairs.src_words, [[2, 1, 3, 1][i] for i in order])
