"""Greedy and beam search: scripted fake models pin down the search itself, real models check the contract."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from model_checks import SENTENCES, assert_batched_equals_one_at_a_time, assert_beam_one_equals_greedy
from torch import Tensor

from nmt.config import LengthNormalization
from nmt.data.batching import pad_sources
from nmt.data.special import BOS_ID, EOS_ID
from nmt.decoding.search import beam_search, greedy_search, length_normalize, max_output_lengths
from nmt.models.base import Seq2Seq

A, B_, C = 4, 5, 6  # the producible tokens of the fake vocabulary (ids 0-3 are PAD, UNK, BOS, EOS)
VOCAB = 7


@dataclass
class FakeState:
    prefix: Tensor  # (B, t) the tokens fed so far, BOS first
    source: Tensor  # (B,) the first source token: lets the script differ per sentence
    src_lengths: Tensor  # (B,)
    width: int  # S
    attention: Tensor | None = None  # (B, S)


class ScriptedModel(Seq2Seq):
    """A decoder whose next-token distribution is a fixed function of (first source token, target prefix).

    Its attention at step t is one-hot on source position t mod source_length, so a test can check that the
    search keeps each hypothesis's attention rows with it.
    """

    has_attention = True

    def __init__(self, script: Callable[[int, tuple[int, ...]], dict[int, float] | Tensor]):
        super().__init__(config=None)
        self.script = script

    def encode(self, src, src_lengths):
        return src, src_lengths

    def start(self, encoded):
        src, src_lengths = encoded
        return FakeState(src.new_zeros(src.size(0), 0), src[:, 0], src_lengths, width=src.size(1))

    def step(self, prev, state):
        prefix = torch.cat([state.prefix, prev[:, None]], dim=1)  # (B, t + 1)
        rows = []
        for source, tokens in zip(state.source.tolist(), prefix.tolist(), strict=True):
            probs = self.script(source, tuple(tokens[1:]))  # without BOS
            if isinstance(probs, dict):
                row = torch.zeros(VOCAB)
                for token, p in probs.items():
                    row[token] = p
                probs = row.log()
            rows.append(probs)
        log_probs = torch.stack(rows).float()  # (B, V)
        t = prefix.size(1) - 1
        positions = torch.full_like(state.src_lengths, t) % state.src_lengths  # (B,)
        attention = torch.nn.functional.one_hot(positions, state.width).float()  # (B, S)
        return log_probs, FakeState(prefix, state.source, state.src_lengths, state.width, attention)


def random_script(source: int, prefix: tuple[int, ...]) -> Tensor:
    """Log-probs drawn from a generator seeded by the prefix: a fixed but arbitrary language model."""
    generator = torch.Generator().manual_seed(hash((source, *prefix)) % (2**31))
    logits = torch.randn(VOCAB, generator=generator) * 2
    logits[EOS_ID] += 0.3 * len(prefix)  # longer prefixes end more often
    return logits.log_softmax(-1)


def sources(*sentences: list[int]) -> tuple[Tensor, Tensor]:
    return pad_sources([list(s) for s in sentences])


def search(model, src, lengths, **options):
    defaults = {"max_len_a": 1.0, "max_len_b": 3, "beam_size": 2}
    return beam_search(model, src, lengths, **{**defaults, **options})


# ------------------------------------------------------------------------------------------------------------
# Pure pieces


def test_length_normalization_formulas():
    log_probs = torch.tensor([-2.0, -2.0])
    lengths = torch.tensor([1, 4])
    gnmt = length_normalize(log_probs, lengths, LengthNormalization.gnmt, 1.0)
    assert gnmt.tolist() == pytest.approx([-2.0, -2.0 / 1.5])  # ((5 + 4) / 6) ** 1
    off = length_normalize(log_probs, lengths, LengthNormalization.gnmt, 0.0)
    assert torch.equal(off, log_probs)
    assert torch.equal(
        length_normalize(log_probs, lengths, LengthNormalization.average, 1.0), log_probs / lengths
    )
    assert torch.equal(length_normalize(log_probs, lengths, LengthNormalization.none, 1.0), log_probs)


def test_max_output_lengths_follow_a_times_source_plus_b():
    _, lengths = sources([5] * 4, [5] * 10)  # 4 and 10 subwords (+ EOS)
    assert max_output_lengths(lengths, 1.5, 2).tolist() == [8, 17]
    assert max_output_lengths(lengths, 1.5, 2, cap=10).tolist() == [8, 10]


# ------------------------------------------------------------------------------------------------------------
# Scripted searches


def classic_script(source, prefix):
    """Greedy takes A (0.6) and then A A EOS (0.216); the better output is B EOS (0.36)."""
    table = {
        (): {A: 0.6, B_: 0.4},
        (A,): {A: 0.36, B_: 0.34, EOS_ID: 0.3},
        (B_,): {EOS_ID: 0.9, A: 0.05, B_: 0.05},
    }
    return table.get(prefix, {EOS_ID: 1.0})


def test_beam_finds_what_greedy_misses_and_ranks_the_nbest():
    model = ScriptedModel(classic_script)
    src, lengths = sources([A, A, A])
    greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)[0]
    assert greedy.tokens == [A, A]
    assert math.isclose(greedy.log_prob, math.log(0.6 * 0.36), rel_tol=1e-5)

    nbest = search(model, src, lengths, beam_size=2, nbest=2, normalization=LengthNormalization.none)[0]
    assert [h.tokens for h in nbest] == [[B_], [A, A]]
    assert math.isclose(nbest[0].log_prob, math.log(0.4 * 0.9), rel_tol=1e-5)
    assert nbest[0].score >= nbest[1].score
    assert nbest[1].log_prob == pytest.approx(greedy.log_prob)


def test_nbest_equals_exhaustive_search_when_the_beam_holds_every_prefix():
    model = ScriptedModel(random_script)
    src, lengths = sources([A, B_, C])  # 3 subwords: at most 3 + 0 output tokens
    producible = [1, A, B_, C]  # UNK can be produced too; PAD and BOS cannot
    for normalization in LengthNormalization:
        scored = []
        for length in range(4):
            for tokens in itertools.product(producible, repeat=length):
                prefix, log_prob = (), 0.0
                for token in (*tokens, EOS_ID):
                    log_prob += float(random_script(A, prefix)[token])
                    prefix = (*prefix, token)
                score = float(length_normalize(torch.tensor(log_prob), length + 1, normalization, 1.0))
                scored.append((score, list(tokens)))
        scored.sort(key=lambda item: -item[0])
        hyps = search(
            model,
            src,
            lengths,
            beam_size=64,
            nbest=5,
            normalization=normalization,
            max_len_a=1.0,
            max_len_b=0,
        )[0]
        assert [h.tokens for h in hyps] == [tokens for _, tokens in scored[:5]]
        assert [h.score for h in hyps] == pytest.approx([score for score, _ in scored[:5]], rel=1e-5)


def length_script(source, prefix):
    """Stop at once (0.5), or A A A then stop (0.45 * 0.9 * 0.9 = 0.3645); any other prefix repeats its last
    token until the length limit. The empty output wins on the plain sum only."""
    table = {
        (): {EOS_ID: 0.5, A: 0.45, B_: 0.05},
        (A,): {A: 0.9, C: 0.1},
        (A, A): {A: 0.9, C: 0.1},
        (A, A, A): {EOS_ID: 1.0},
    }
    return table[prefix] if prefix in table else {prefix[-1]: 1.0, EOS_ID: 1e-9}


@pytest.mark.parametrize(
    ("normalization", "alpha", "expected"),
    [
        (LengthNormalization.none, 1.0, []),
        (LengthNormalization.gnmt, 0.0, []),
        (LengthNormalization.gnmt, 1.0, [A, A, A]),
        (LengthNormalization.average, 1.0, [A, A, A]),
    ],
)
def test_length_normalization_changes_the_winner(normalization, alpha, expected):
    model = ScriptedModel(length_script)
    src, lengths = sources([A] * 5)
    best = search(model, src, lengths, beam_size=2, normalization=normalization, length_penalty=alpha)[0][0]
    assert best.tokens == expected
    normalized = length_normalize(torch.tensor(best.log_prob), len(best.tokens) + 1, normalization, alpha)
    assert best.score == pytest.approx(float(normalized))


def test_output_stops_at_the_maximum_length():
    model = ScriptedModel(lambda source, prefix: {A: 0.5, B_: 0.5, EOS_ID: 1e-6})  # ends only when forced
    src, lengths = sources([A] * 2, [A] * 6)
    limits = max_output_lengths(lengths, 1.5, 1).tolist()
    results = search(model, src, lengths, beam_size=3, nbest=3, max_len_a=1.5, max_len_b=1)
    for hyps, limit in zip(results, limits, strict=True):
        assert len(hyps) == 3
        assert all(len(h.tokens) == limit for h in hyps)
    greedy = greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=1)
    assert [len(h.tokens) for h in greedy] == limits


def test_beam_one_equals_greedy_on_a_random_model():
    model = ScriptedModel(random_script)
    src, lengths = sources([A, B_], [B_, C, C, A, A], [C], [A, A, A, B_])
    greedy = greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=2)
    beam = beam_search(
        model, src, lengths, beam_size=1, normalization=LengthNormalization.none, max_len_a=1.5, max_len_b=2
    )
    for g, (b,) in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.log_prob == b.log_prob == b.score == g.score


def test_batched_beam_search_equals_one_sentence_at_a_time():
    model = ScriptedModel(random_script)
    sentences = [[A, B_], [B_, C, C, A, A, B_], [C], [A, A, A, B_], [C, C, A]]
    src, lengths = sources(*sentences)
    batched = search(model, src, lengths, beam_size=4, nbest=3, max_len_a=1.2, max_len_b=2)
    for sentence, together in zip(sentences, batched, strict=True):
        alone = search(model, *sources(sentence), beam_size=4, nbest=3, max_len_a=1.2, max_len_b=2)[0]
        assert [h.tokens for h in together] == [h.tokens for h in alone]
        assert [h.score for h in together] == [h.score for h in alone]


def test_attention_rows_follow_their_hypothesis():
    model = ScriptedModel(random_script)
    src, lengths = sources([A, B_, C], [C, A])
    for hyps in search(model, src, lengths, beam_size=3, nbest=3, max_len_a=2.0, return_attention=True):
        for h in hyps:
            source_length = h.attention.size(1)
            assert h.attention.shape == (len(h.tokens) + 1, source_length)
            expected = torch.arange(len(h.tokens) + 1) % source_length  # the fake attends to t mod S
            assert torch.equal(h.attention.argmax(dim=1), expected)
    greedy = greedy_search(model, src, lengths, max_len_a=2, max_len_b=3, return_attention=True)
    for h, length in zip(greedy, lengths, strict=True):
        assert h.attention.shape == (len(h.tokens) + 1, int(length))


def test_bad_beam_arguments_are_refused():
    model = ScriptedModel(random_script)
    src, lengths = sources([A])
    with pytest.raises(ValueError, match="beam_size"):
        search(model, src, lengths, beam_size=0)
    with pytest.raises(ValueError, match="nbest"):
        search(model, src, lengths, beam_size=2, nbest=3)


def test_special_tokens_are_never_produced():
    model = ScriptedModel(lambda source, prefix: {BOS_ID: 0.7, 0: 0.2, A: 0.05, EOS_ID: 0.05})
    src, lengths = sources([A, A])
    for h in search(model, src, lengths, beam_size=3, nbest=3)[0] + greedy_search(
        model, src, lengths, max_len_a=1, max_len_b=3
    ):
        assert BOS_ID not in h.tokens and 0 not in h.tokens


# ------------------------------------------------------------------------------------------------------------
# Real models (tiny presets, random weights)

ARCHS = ["rnn", "rnnsearch", "transformer"]


def tiny_model(arch: str, vocab: int = 40):
    from nmt.models import build_model, model_config

    torch.manual_seed(0)
    config = model_config(arch, "tiny", {"src_vocab_size": vocab, "tgt_vocab_size": vocab})
    return build_model(arch, config).eval()


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_one_equals_greedy_for_every_model(arch):
    assert_beam_one_equals_greedy(tiny_model(arch))


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_beam_search_equals_one_sentence_at_a_time_for_every_model(arch):
    assert_batched_equals_one_at_a_time(tiny_model(arch))


def test_cached_transformer_decoding_equals_rerunning_the_prefix():
    model = tiny_model("transformer")
    src, lengths = pad_sources(SENTENCES)
    cached = greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=4)
    limits = max_output_lengths(lengths, 1.5, 4)
    with torch.inference_mode():
        for row, hyp in enumerate(cached):
            tokens, log_prob = [], 0.0
            while True:
                tgt_in = torch.tensor([[BOS_ID, *tokens]])
                log_probs = (
                    model(src[row : row + 1], lengths[row : row + 1], tgt_in)[0, -1].float().log_softmax(-1)
                )
                log_probs[[0, BOS_ID]] = -math.inf
                token = EOS_ID if len(tokens) == limits[row] else int(log_probs.argmax())
                log_prob += float(log_probs[token])
                if token == EOS_ID:
                    break
                tokens.append(token)
            assert hyp.tokens == tokens
            assert hyp.log_prob == pytest.approx(log_prob, abs=1e-4)


@pytest.mark.parametrize("arch", ARCHS)
def test_decoding_under_bf16_autocast(arch):
    model = tiny_model(arch)
    src, lengths = pad_sources(SENTENCES)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        beams = beam_search(
            model,
            src,
            lengths,
            beam_size=3,
            nbest=3,
            max_len_a=1.0,
            max_len_b=3,
            return_attention=model.has_attention,
        )
        greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)
    for hyps, g, limit in zip(beams, greedy, max_output_lengths(lengths, 1.0, 3).tolist(), strict=True):
        assert len(hyps) == 3 and len(g.tokens) <= limit
        assert all(math.isfinite(h.score) and len(h.tokens) <= limit for h in hyps)
        if model.has_attention:
            assert all(h.attention.dtype == torch.float32 for h in hyps)


@pytest.mark.parametrize("arch", ["rnnsearch", "transformer"])
def test_real_attention_is_a_distribution_over_the_real_source(arch):
    model = tiny_model(arch)
    src, lengths = pad_sources(SENTENCES)
    for hyps, length in zip(
        beam_search(
            model, src, lengths, beam_size=2, nbest=2, max_len_a=1.0, max_len_b=2, return_attention=True
        ),
        lengths.tolist(),
        strict=True,
    ):
        for h in hyps:
            assert h.attention.shape == (len(h.tokens) + 1, length)
            torch.testing.assert_close(h.attention.sum(dim=1), torch.ones(len(h.tokens) + 1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("arch", ARCHS)
def test_decoding_on_cuda_under_autocast(arch, dtype):
    model = tiny_model(arch).cuda()
    src, lengths = (t.cuda() for t in pad_sources(SENTENCES))
    with torch.autocast("cuda", dtype=dtype):
        beams = beam_search(
            model,
            src,
            lengths,
            beam_size=4,
            nbest=2,
            max_len_a=1.0,
            max_len_b=3,
            return_attention=model.has_attention,
        )
        greedy = greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)
    for hyps, g in zip(beams, greedy, strict=True):
        assert len(hyps) == 2 and all(math.isfinite(h.score) for h in hyps) and math.isfinite(g.log_prob)
