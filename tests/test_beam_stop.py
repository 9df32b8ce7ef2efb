"""When beam search leaves a sentence (`BeamStop`): first-k stops at K finished hypotheses, exact only when no
live beam can still beat the n-th best finished one. Scripted models (tests/test_decoding.py) pin it down."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from conftest import run_nmt
from test_decoding import B_, VOCAB, A, C, ScriptedModel, random_script, sources
from torch import Tensor

from nmt.config import BeamStop, DecodeConfig, LengthNormalization
from nmt.data.special import EOS_ID
from nmt.decoding import translation
from nmt.decoding.search import beam_search, greedy_search, length_normalize, max_output_lengths

# ------------------------------------------------------------------------------------------------------------
# Helpers


def late_winner_script(end_after_two_a: float):
    """K = 2 finds two finished hypotheses by step 1 while a live beam is still ahead of both:

    step 0: A 0.4 (live), EOS 0.32 (finished: the empty output), B 0.28 (live)
    step 1: A A 0.36 (live), B EOS 0.252 (finished: K = 2 now), A EOS 0.04, B C ...
    step 2: A A EOS = 0.36 * `end_after_two_a`.
    With 0.8 (A A EOS = 0.288 < 0.32) the empty output wins on the plain sum, but A A wins under GNMT
    alpha = 1 (log 0.288 / (8 / 6) = -0.93 > log 0.32 = -1.14) and the average (-0.41, where B (-0.69) beats
    the empty output (-1.14)); with 0.95 (A A EOS = 0.342 > 0.32) A A wins on the plain sum too.
    """
    table = {
        (): {A: 0.4, EOS_ID: 0.32, B_: 0.28},
        (A,): {A: 0.9, EOS_ID: 0.1},
        (B_,): {EOS_ID: 0.9, C: 0.1},
        (A, A): {EOS_ID: end_after_two_a, A: 1 - end_after_two_a},
    }
    return lambda source, prefix: table.get(prefix, {EOS_ID: 1.0})


def binary_script(seed: int):
    """A random language model over two tokens (A, B) and EOS, so that a modest beam holds every prefix."""

    def script(source: int, prefix: tuple[int, ...]) -> Tensor:
        generator = torch.Generator().manual_seed(hash((seed, *prefix)) % (2**31))
        log_probs = torch.full((VOCAB,), -math.inf)
        log_probs[[A, B_, EOS_ID]] = (torch.randn(3, generator=generator) * 1.5).log_softmax(-1)
        return log_probs

    return script


def exhaustive_nbest(
    script, limit: int, normalization, alpha: float, n: int
) -> list[tuple[float, list[int]]]:
    """The n best (score, tokens) over every output of at most `limit` tokens from {A, B}, best first."""
    scored = []
    for length in range(limit + 1):
        for tokens in itertools.product([A, B_], repeat=length):
            log_prob = sum(
                float(script(0, tuple(tokens[:i]))[token]) for i, token in enumerate((*tokens, EOS_ID))
            )
            score = float(length_normalize(torch.tensor(log_prob), length + 1, normalization, alpha))
            scored.append((score, list(tokens)))
    return sorted(scored, key=lambda item: -item[0])[:n]


def search(model, src, lengths, **options):
    defaults = {"max_len_a": 1.0, "max_len_b": 3, "beam_size": 2}
    return beam_search(model, src, lengths, **{**defaults, **options})


# ------------------------------------------------------------------------------------------------------------
# Scripted searches


@pytest.mark.parametrize(
    ("end_after_two_a", "normalization", "alpha", "first_k", "exact"),
    [
        (0.8, LengthNormalization.gnmt, 1.0, [], [A, A]),  # only the normalisation makes A A better
        (0.8, LengthNormalization.average, 1.0, [B_], [A, A]),
        (0.8, LengthNormalization.gnmt, 0.0, [], []),  # the plain sum: the empty output is the best
        (0.95, LengthNormalization.gnmt, 0.0, [], [A, A]),  # first-k misses even without normalisation
        (0.95, LengthNormalization.none, 1.0, [], [A, A]),
    ],
)
def test_first_k_stops_at_k_finished_and_exact_finds_the_late_winner(
    end_after_two_a, normalization, alpha, first_k, exact
):
    script = late_winner_script(end_after_two_a)
    model = ScriptedModel(script)
    src, lengths = sources([A] * 5)  # a limit of 5 + 3 tokens
    options = {"beam_size": 2, "normalization": normalization, "length_penalty": alpha}
    early = search(model, src, lengths, stop=BeamStop.first_k, **options)[0][0]
    best = search(model, src, lengths, stop=BeamStop.exact, **options)[0][0]
    assert early.tokens == first_k and best.tokens == exact
    assert best.score >= early.score
    # The scores are those of the equation, and the log-probs those of the script.
    for hypothesis in (early, best):
        normalized = length_normalize(
            torch.tensor(hypothesis.log_prob), len(hypothesis.tokens) + 1, normalization, alpha
        )
        assert hypothesis.score == pytest.approx(float(normalized))
    assert math.isclose(
        best.log_prob, math.log(0.36 * end_after_two_a if best.tokens else 0.32), rel_tol=1e-5
    )


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize(
    ("normalization", "alpha"),
    [
        (LengthNormalization.gnmt, 0.6),
        (LengthNormalization.gnmt, 1.0),
        (LengthNormalization.gnmt, 2.5),
        (LengthNormalization.average, 1.0),
        (LengthNormalization.gnmt, 0.0),
        (LengthNormalization.none, 1.0),
    ],
)
def test_exact_equals_exhaustive_search_when_the_beam_holds_every_prefix(seed, normalization, alpha):
    """Two tokens and a limit of 4: at most 24 candidates a step (8 beams x {A, B, EOS}) and 16 live prefixes,
    so a beam of 24 prunes nothing and only the stopping rule can make the search miss: the 3 best it returns,
    sorted, must be the true 3 best.
    The limit comes from a * source + b (here 4) or, for odd seeds, from `max_output_len` (3)."""
    script = binary_script(seed)
    model = ScriptedModel(script)
    src, lengths = sources([A, A])
    cap = 3 if seed % 2 else None
    limit = int(max_output_lengths(lengths, 1.0, 2, cap))
    hyps = search(
        model,
        src,
        lengths,
        beam_size=24,
        nbest=3,
        normalization=normalization,
        length_penalty=alpha,
        max_len_a=1.0,
        max_len_b=2,
        max_output_len=cap,
        stop=BeamStop.exact,
    )[0]
    expected = exhaustive_nbest(script, limit, normalization, alpha, 3)
    assert [h.tokens for h in hyps] == [tokens for _, tokens in expected]
    assert [h.score for h in hyps] == pytest.approx([score for score, _ in expected], rel=1e-5)
    assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)


def test_exact_is_never_worse_than_first_k_and_sometimes_better():
    """On the same beams exact only searches longer, so each of its n best is at least first-k's of that
    rank; with alpha = 2 it finds a better best on some of these sentences."""
    model = ScriptedModel(random_script)
    sentences = [[A, B_], [B_, C, C, A, A, B_], [C], [A, A, A, B_], [C, C, A], [B_, B_, B_, B_, A, C, A]]
    options = {"beam_size": 3, "nbest": 3, "max_len_a": 1.5, "max_len_b": 3, "length_penalty": 2.0}
    early = search(model, *sources(*sentences), stop=BeamStop.first_k, **options)
    best = search(model, *sources(*sentences), stop=BeamStop.exact, **options)
    improved = 0
    for first_k, exact in zip(early, best, strict=True):
        assert len(exact) == len(first_k) == 3
        assert all(e.score >= f.score - 1e-6 for e, f in zip(exact, first_k, strict=True))
        assert [h.score for h in exact] == sorted((h.score for h in exact), reverse=True)
        improved += exact[0].score > first_k[0].score + 1e-6
    assert improved > 0


def test_without_normalisation_a_single_beam_stops_alike_and_equals_greedy():
    """With K = 1 the finished hypothesis is the best candidate of its step, so on the plain sum no live beam
    can beat it: exact stops where first-k does, and both equal greedy search."""
    model = ScriptedModel(random_script)
    src, lengths = sources([A, B_], [B_, C, C, A, A], [C], [A, A, A, B_])
    greedy = greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=2)
    for normalization in (LengthNormalization.none, LengthNormalization.gnmt):
        results = [
            beam_search(
                model,
                src,
                lengths,
                beam_size=1,
                normalization=normalization,
                length_penalty=0.0,
                max_len_a=1.5,
                max_len_b=2,
                stop=stop,
            )
            for stop in BeamStop
        ]
        for g, *beams in zip(greedy, *results, strict=True):
            for (b,) in beams:
                assert g.tokens == b.tokens
                assert g.log_prob == b.log_prob == b.score


def test_exact_batched_equals_one_sentence_at_a_time():
    model = ScriptedModel(random_script)
    sentences = [[A, B_], [B_, C, C, A, A, B_], [C], [A, A, A, B_], [C, C, A]]
    options = {"beam_size": 4, "nbest": 3, "max_len_a": 1.2, "max_len_b": 2, "stop": BeamStop.exact}
    batched = search(model, *sources(*sentences), length_penalty=1.5, **options)
    for sentence, together in zip(sentences, batched, strict=True):
        alone = search(model, *sources(sentence), length_penalty=1.5, **options)[0]
        assert [h.tokens for h in together] == [h.tokens for h in alone]
        assert [h.score for h in together] == [h.score for h in alone]


def test_exact_keeps_attention_rows_with_their_hypothesis():
    model = ScriptedModel(random_script)
    src, lengths = sources([A, B_, C], [C, A])
    results = search(
        model, src, lengths, beam_size=3, nbest=3, max_len_a=2.0, return_attention=True, stop=BeamStop.exact
    )
    for hyps in results:
        for h in hyps:
            expected = torch.arange(len(h.tokens) + 1) % h.attention.size(1)  # the fake attends to t mod S
            assert torch.equal(h.attention.argmax(dim=1), expected)


# ------------------------------------------------------------------------------------------------------------
# The option, from the command line to the search


@pytest.fixture
def recorded_stops(monkeypatch):
    """The `stop` of every beam search that translation runs."""
    stops = []

    def recording(*args, **kwargs):
        stops.append(kwargs["stop"])
        return beam_search(*args, **kwargs)

    monkeypatch.setattr(translation, "beam_search", recording)
    return stops


def test_the_default_is_first_k():
    assert DecodeConfig().beam_stop == BeamStop.first_k


@pytest.mark.parametrize("stop", ["exact", "first-k"])
def test_translate_passes_beam_stop_to_the_search(stop, recorded_stops, tiny_checkpoint):
    result = run_nmt(
        "translate", "-c", tiny_checkpoint("rnn"), "--beam", 2, "--nbest", 2, "--beam-stop", stop,
        "--device", "cpu", input="alba bero\ncima\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 4
    assert recorded_stops and set(recorded_stops) == {BeamStop(stop)}


def test_eval_passes_beam_stop_to_checkpoint_translation(recorded_stops, tiny_checkpoint, tmp_path):
    source = tmp_path / "src.txt"
    source.write_text("alba bero\ncima dano\n", encoding="utf-8")
    reference = tmp_path / "ref.txt"
    reference.write_text("BERO ALBA\nDANO CIMA\n", encoding="utf-8")
    result = run_nmt(
        "eval", "-s", source, "-r", reference, "--checkpoint", f"m={tiny_checkpoint('rnn')}", "--beam", 2,
        "--beam-stop", "exact", "--device", "cpu", "--bootstrap", 0,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert recorded_stops and set(recorded_stops) == {BeamStop.exact}


def test_an_unknown_beam_stop_is_refused(tiny_checkpoint):
    result = run_nmt("translate", "-c", tiny_checkpoint("rnn"), "--beam-stop", "soon", input="alba\n")
    assert result.exit_code == 2 and "--beam-stop" in result.stderr
