"""Ancestral sampling: the filters, the draw, reproducibility, and `nmt translate --sampling`."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from conftest import run_nmt, snapshot
from model_checks import SENTENCES

from nmt.config import DecodeConfig
from nmt.data.batching import pad_sources
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.sampling import draw, filtered_probabilities, sample_search, uniform_streams
from nmt.decoding.search import greedy_search, max_output_lengths
from nmt.decoding.translation import load_translator, translate_lines
from nmt.models import build_model, model_config
from nmt.models.base import Seq2Seq

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ["rnn", "rnnsearch", "transformer"]
LIMITS = {"max_len_a": 1.5, "max_len_b": 4}


def tiny_model(arch: str, vocab: int = 40):
    torch.manual_seed(0)
    config = model_config(arch, "tiny", {"src_vocab_size": vocab, "tgt_vocab_size": vocab})
    return build_model(arch, config).eval()


def sample(model, sentences=SENTENCES, ids=None, **options):
    options = {"seed": 1, "num_samples": 3, **LIMITS, **options}
    ids = list(range(len(sentences))) if ids is None else ids
    return sample_search(model, *pad_sources(sentences), sentence_ids=ids, **options)


def tokens(results):
    return [[h.tokens for h in samples] for samples in results]


# ------------------------------------------------------------------------------------------------------------
# The filters and the draw


def test_top_k_keeps_the_k_likeliest_tokens():
    log_probs = torch.tensor([[0.1, 0.4, 0.2, 0.3]]).log()
    probs = filtered_probabilities(log_probs, temperature=1.0, top_k=2, top_p=1.0)[0]
    assert (probs / probs.sum()).tolist() == pytest.approx([0.0, 0.4 / 0.7, 0.0, 0.3 / 0.7])
    assert filtered_probabilities(log_probs, 1.0, 0, 1.0).tolist()[0] == pytest.approx([0.1, 0.4, 0.2, 0.3])


@pytest.mark.parametrize(
    ("top_p", "kept"),
    [(0.4, [1]), (0.41, [1, 3]), (0.7, [1, 3]), (0.71, [1, 3, 2]), (0.9, [1, 3, 2]), (1.0, [0, 1, 2, 3])],
)
def test_top_p_keeps_the_smallest_set_that_reaches_p(top_p, kept):
    log_probs = torch.tensor([[0.1, 0.4, 0.2, 0.3]]).log()
    probs = filtered_probabilities(log_probs, temperature=1.0, top_k=0, top_p=top_p)[0]
    assert sorted(probs.nonzero().squeeze(1).tolist()) == sorted(kept)


def test_top_p_always_keeps_one_token():
    log_probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).log()
    probs = filtered_probabilities(log_probs, temperature=1.0, top_k=0, top_p=1e-9)[0]
    assert probs.nonzero().squeeze(1).tolist() == [0]


def test_temperature_comes_before_the_filters():
    """At T = 0.5 the distribution (0.5, 0.3, 0.2) becomes (25, 9, 4) / 38: the first token alone then holds
    0.66, so top-p 0.6 keeps it alone; at T = 1 it keeps two."""
    log_probs = torch.tensor([[0.5, 0.3, 0.2]]).log()
    cooled = filtered_probabilities(log_probs, temperature=0.5, top_k=0, top_p=0.6)[0]
    assert cooled.tolist() == pytest.approx([25 / 38, 0.0, 0.0])  # not renormalised: the draw scales
    plain = filtered_probabilities(log_probs, temperature=1.0, top_k=0, top_p=0.6)[0]
    assert plain.nonzero().squeeze(1).tolist() == [0, 1]


def test_draw_inverts_the_cumulative_distribution():
    probs = torch.tensor([[0.0, 0.25, 0.0, 0.75]] * 5, dtype=torch.float64)
    uniforms = torch.tensor([0.0, 0.2499, 0.25, 0.9, 0.999999], dtype=torch.float64)
    assert draw(probs, uniforms).tolist() == [1, 1, 3, 3, 3]  # zero-probability tokens never come out
    unnormalised = probs * 0.5  # a filtered row that was not renormalised: same draws
    assert draw(unnormalised, uniforms).tolist() == [1, 1, 3, 3, 3]


def splitmix64(state: int, count: int) -> list[int]:
    """SplitMix64 written out with Python integers: the reference for `uniform_streams`."""
    mask, outputs = 2**64 - 1, []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & mask
        z = ((state ^ (state >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        outputs.append(z ^ (z >> 31))
    return outputs


def test_uniform_streams_are_splitmix64():
    keys = [0, 1, 2**63 + 12345, 2**64 - 1]  # the last ones wrap around
    streams = uniform_streams(keys, 5)
    assert streams.shape == (4, 5) and streams.dtype == torch.float64
    for key, row in zip(keys, streams.tolist(), strict=True):
        assert row == [(value >> 11) * 2.0**-53 for value in splitmix64(key, 5)]
    assert splitmix64(0, 1) == [0xE220A8397B1DCDAF]  # the published first output from state 0
    assert torch.equal(uniform_streams(keys, 9)[:, :5], streams)  # a number does not depend on the width
    assert ((streams >= 0) & (streams < 1)).all()


class FixedDistribution(Seq2Seq):
    """A decoder whose first token follows a fixed distribution, then always EOS."""

    def __init__(self, probs: list[float]):
        super().__init__(config=None)
        self.log_probs = torch.tensor(probs).log()

    def encode(self, src, src_lengths):
        return src.size(0)

    def start(self, encoded):
        return torch.zeros(encoded, dtype=torch.long)  # the step number of each row

    def step(self, prev, state):
        rows = state.size(0)
        first = self.log_probs.expand(rows, -1).clone()
        then = torch.full_like(first, -math.inf)
        then[:, EOS_ID] = 0.0
        return torch.where((state == 0)[:, None], first, then), state + 1


def test_samples_follow_the_models_distribution():
    probs = [0.0, 0.0, 0.0, 0.1, 0.5, 0.3, 0.1]  # PAD, UNK, BOS, EOS, then three words
    model = FixedDistribution(probs)
    sentences = [[5, 6]] * 500
    results = sample(model, sentences, num_samples=4)
    counts = Counter(drawn.tokens[0] if drawn.tokens else EOS_ID for row in results for drawn in row)
    total = sum(counts.values())
    assert total == 2000
    for token in (EOS_ID, 4, 5, 6):
        assert counts[token] / total == pytest.approx(
            probs[token], abs=0.035
        )  # 3 sigma at 2000 draws, p = 0.5
    first = results[0][0]
    assert first.log_prob == pytest.approx(math.log(probs[first.tokens[0] if first.tokens else EOS_ID]))


# ------------------------------------------------------------------------------------------------------------
# Sampling real models


@pytest.mark.parametrize("arch", ARCHS)
def test_top_k_one_is_greedy_search(arch):
    model = tiny_model(arch)
    greedy = greedy_search(model, *pad_sources(SENTENCES), **LIMITS)
    sampled = sample(model, top_k=1, num_samples=2, temperature=0.7)
    for best, samples in zip(greedy, sampled, strict=True):
        for drawn in samples:
            assert drawn.tokens == best.tokens
            assert drawn.log_prob == pytest.approx(best.log_prob, abs=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_a_seed_gives_the_same_samples_whatever_the_batch(arch):
    model = tiny_model(arch)
    together = sample(model, ids=[10, 11, 12, 13])
    assert tokens(sample(model, ids=[10, 11, 12, 13])) == tokens(together)
    for row, sentence in enumerate(SENTENCES):
        alone = sample(model, [sentence], ids=[10 + row])
        assert tokens(alone) == [tokens(together)[row]]
        assert alone[0][0].log_prob == pytest.approx(together[row][0].log_prob, abs=1e-4)
    reordered = sample(model, SENTENCES[::-1], ids=[13, 12, 11, 10])
    assert tokens(reordered) == tokens(together)[::-1]
    assert tokens(sample(model, ids=[10, 11, 12, 13], seed=2)) != tokens(together)
    # The first sample does not depend on how many are drawn.
    assert [s[0] for s in tokens(sample(model, ids=[10, 11, 12, 13], num_samples=1))] == [
        s[0] for s in tokens(together)
    ]


def test_samples_keep_the_length_limit_and_never_draw_specials():
    model = tiny_model("transformer")
    sentences = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14]]
    limits = max_output_lengths(pad_sources(sentences)[1], LIMITS["max_len_a"], LIMITS["max_len_b"]).tolist()
    results = sample(model, sentences, num_samples=8, temperature=3.0)  # flat: long samples
    assert any(
        len(s.tokens) == limit for samples, limit in zip(results, limits, strict=True) for s in samples
    )
    for samples, limit in zip(results, limits, strict=True):
        assert len(samples) == 8
        for drawn in samples:
            assert len(drawn.tokens) <= limit
            assert not {PAD_ID, BOS_ID, EOS_ID} & set(drawn.tokens)
            assert math.isfinite(drawn.log_prob) and drawn.score == drawn.log_prob <= 0


def test_bad_sampling_arguments_are_refused():
    model = tiny_model("rnn")
    for options in ({"num_samples": 0}, {"temperature": 0.0}, {"top_k": -1}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            sample(model, **options)


def test_translate_lines_samples_by_line_number(tiny_checkpoint):
    """The samples of a line depend on its line number, not on the chunk or batch it was read in."""
    model, checkpoint = load_translator(tiny_checkpoint("rnnsearch"), torch.device("cpu"))
    lines = ["alba bero", "", "cima dano eske", "fora", "alba bero"]
    config = DecodeConfig(sampling=True, nbest=2, temperature=2.0, max_len_a=1.0, max_len_b=3, seed=7)
    whole = list(translate_lines(model, checkpoint.tokenizers, lines, config, "cpu"))
    by_one = list(translate_lines(model, checkpoint.tokenizers, lines, config, "cpu", chunk_size=1))
    assert [[h.text for h in t.hypotheses] for t in whole] == [[h.text for h in t.hypotheses] for t in by_one]
    assert whole[1].hypotheses == [] and all(len(t.hypotheses) == 2 for t in whole if t.source)


# ------------------------------------------------------------------------------------------------------------
# nmt translate --sampling


def test_translate_sampling_is_reproducible_with_a_seed(tiny_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("alba bero\n\ncima dano eske\n", encoding="utf-8")
    options = ["translate", "-c", tiny_checkpoint("transformer"), "-i", source, "--sampling", "--nbest", 3]
    first = run_nmt(*options, "--seed", 5, "--temperature", 1.5, "--top-p", 0.95)
    again = run_nmt(*options, "--seed", 5, "--temperature", 1.5, "--top-p", 0.95)
    other = run_nmt(*options, "--seed", 6, "--temperature", 1.5, "--top-p", 0.95)
    assert first.exit_code == again.exit_code == other.exit_code == 0, first.stderr
    assert first.stdout == again.stdout and first.stdout != other.stdout
    rows = [line.split("\t") for line in first.stdout.split("\n")[:-1]]
    assert [(int(r[0]), int(r[1])) for r in rows] == [
        (line, rank) for line in (1, 2, 3) for rank in (1, 2, 3)
    ]
    assert all(float(r[2]) <= 0 for r in rows if r[0] != "2")


def test_translate_sampling_with_top_k_one_is_greedy(tiny_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("alba bero\ncima dano eske\nfora\n", encoding="utf-8")
    checkpoint = tiny_checkpoint("rnnsearch")
    greedy = run_nmt("translate", "-c", checkpoint, "-i", source, "--beam", 1)
    sampled = run_nmt("translate", "-c", checkpoint, "-i", source, "--sampling", "--top-k", 1, "--seed", 3)
    assert greedy.exit_code == sampled.exit_code == 0, sampled.stderr
    assert greedy.stdout == sampled.stdout


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--sampling", "--beam", "4"], "--beam is a beam search option"),
        (["--sampling", "--length-penalty", "0.6"], "--length-penalty is a beam search option"),
        (["--sampling", "--beam-stop", "exact"], "--beam-stop is a beam search option"),
        (["--top-k", "5"], "--top-k is a sampling option: give --sampling too"),
        (["--seed", "5"], "--seed is a sampling option"),
        (["--sampling", "--temperature", "0"], "--temperature must be a positive number"),
        (["--sampling", "--top-k", "-1"], "--top-k must be >= 0"),
        (["--sampling", "--top-p", "0"], "--top-p must be above 0 and at most 1"),
        (["--sampling", "--nbest", "0"], "--nbest must be at least 1"),
    ],
)
def test_bad_sampling_options_are_one_line_errors(options, message, tiny_checkpoint, tmp_path):
    out = tmp_path / "out.txt"
    before = snapshot(tmp_path)
    result = run_nmt("translate", "-c", tiny_checkpoint("rnn"), "-o", out, *options, input="alba\n")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
