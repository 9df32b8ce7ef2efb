"""Ensembles: several models answering as one `Seq2Seq`, through the same search and the same contract."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import make_checkpoint, make_prepared, run_nmt, snapshot, toy_pairs
from model_checks import (
    SENTENCES,
    TGT_VOCAB,
    assert_batched_equals_one_at_a_time,
    assert_beam_one_equals_greedy,
    padded_batch,
    perturbed_model,
    run_steps,
)

from nmt.data.batching import pad_sources
from nmt.data.special import PAD_ID
from nmt.decoding.search import beam_search, greedy_search
from nmt.decoding.translation import load_translator
from nmt.errors import UserError
from nmt.models import Ensemble
from nmt.models.ensemble import EnsembleState

pytestmark = pytest.mark.usefixtures("one_thread")


make_model = perturbed_model


def mixed_ensemble() -> Ensemble:
    """Three architectures in one ensemble: one without attention, two with."""
    return Ensemble([make_model("rnn", 1), make_model("rnnsearch", 2), make_model("transformer", 3)]).eval()


# ------------------------------------------------------------------------------------------------------------
# The model


@pytest.mark.parametrize("arch", ["rnn", "rnnsearch", "transformer"])
@torch.no_grad()
def test_an_ensemble_of_one_model_is_that_model(arch):
    model = make_model(arch, 0)
    ensemble = Ensemble([model]).eval()
    src, src_lengths, tgt_in, _ = padded_batch()
    alone, alone_attention, _ = run_steps(model, src, src_lengths, tgt_in)
    together, together_attention, _ = run_steps(ensemble, src, src_lengths, tgt_in)
    assert torch.equal(alone, together)
    if model.has_attention:
        assert torch.equal(alone_attention, together_attention)
    assert ensemble.has_attention == model.has_attention
    assert ensemble.max_positions() == model.max_positions()
    for single, (best,) in zip(
        greedy_search(model, *pad_sources(SENTENCES), max_len_a=1.5, max_len_b=4),
        beam_search(ensemble, *pad_sources(SENTENCES), beam_size=1, max_len_a=1.5, max_len_b=4, nbest=1),
        strict=True,
    ):
        assert single.tokens == best.tokens
    beams = beam_search(model, *pad_sources(SENTENCES), beam_size=3, nbest=2, max_len_a=1.5, max_len_b=4)
    ensemble_beams = beam_search(
        ensemble, *pad_sources(SENTENCES), beam_size=3, nbest=2, max_len_a=1.5, max_len_b=4
    )
    assert [[h.tokens for h in n] for n in beams] == [[h.tokens for h in n] for n in ensemble_beams]
    assert [[h.score for h in n] for n in beams] == [[h.score for h in n] for n in ensemble_beams]


@torch.no_grad()
def test_an_ensembles_step_equals_its_forward():
    ensemble = mixed_ensemble()
    src, src_lengths, tgt_in, _ = padded_batch()
    expected = ensemble(src, src_lengths, tgt_in).log_softmax(dim=-1)
    stepped, attention, _ = run_steps(ensemble, src, src_lengths, tgt_in)
    assert stepped.dtype == torch.float32 and stepped.shape == (3, tgt_in.size(1), TGT_VOCAB)
    torch.testing.assert_close(stepped, expected)
    torch.testing.assert_close(expected.exp().sum(-1), torch.ones(3, tgt_in.size(1)))  # a distribution
    # The attention it exposes: the mean of the two members that have one, zero at padding.
    assert attention.shape == (3, tgt_in.size(1), src.size(1))
    torch.testing.assert_close(attention.sum(-1), torch.ones(3, tgt_in.size(1)))
    assert (attention.permute(1, 0, 2)[:, src == PAD_ID] == 0).all()


@torch.no_grad()
def test_the_step_is_the_mean_of_the_members_probabilities():
    ensemble = mixed_ensemble()
    src, src_lengths, tgt_in, _ = padded_batch()
    members = [run_steps(member, src, src_lengths, tgt_in) for member in ensemble.members]
    stepped, attention, _ = run_steps(ensemble, src, src_lengths, tgt_in)
    mean_probs = torch.stack([log_probs.exp() for log_probs, _, _ in members]).mean(dim=0)
    torch.testing.assert_close(stepped.exp(), mean_probs)
    with_attention = [a for _, a, _ in members if a is not None]
    assert len(with_attention) == 2
    torch.testing.assert_close(attention, (with_attention[0] + with_attention[1]) / 2)


def test_an_ensemble_answers_for_its_members():
    ensemble = mixed_ensemble()
    assert ensemble.has_attention
    assert ensemble.max_positions() == ensemble.members[2].max_positions()  # the only one with a limit
    assert not Ensemble([make_model("rnn", 1), make_model("rnn", 2)]).has_attention
    short = make_model("transformer", 4, max_positions=16)
    assert Ensemble([make_model("transformer", 3), short]).max_positions() == 16
    with pytest.raises(ValueError, match="at least one"):
        Ensemble([])


def test_search_checks_pass_for_an_ensemble():
    """The checks every model passes (tests/model_checks.py) hold for an ensemble of three architectures."""
    ensemble = mixed_ensemble()
    assert_beam_one_equals_greedy(ensemble)
    assert_batched_equals_one_at_a_time(ensemble)


@torch.no_grad()
def test_reorder_commutes_with_step_and_keeps_each_members_source_side():
    ensemble = mixed_ensemble()
    src, src_lengths, tgt_in, _ = padded_batch()
    state = ensemble.start(ensemble.encode(src, src_lengths))
    for t in range(2):
        _, state = ensemble.step(tgt_in[:, t], state)
    assert isinstance(state, EnsembleState) and len(state.members) == 3
    index = torch.tensor([2, 0, 0, 1, 2])
    log_probs, _ = ensemble.step(tgt_in[:, 2], state)
    reordered, after = ensemble.step(tgt_in[index, 2], ensemble.reorder(state, index))
    torch.testing.assert_close(reordered, log_probs[index])
    # Beams of the same sentences: each member leaves its own source-side fields where they are.
    beams = ensemble.reorder(state, torch.arange(3).repeat_interleave(2))
    kept = ensemble.reorder(beams, torch.tensor([1, 0, 2, 2, 5, 4]), same_sources=True)
    for member_state, kept_state in zip(beams.members, kept.members, strict=True):
        for field in dataclasses.fields(member_state):
            if field.metadata.get("source_side"):
                assert getattr(kept_state, field.name) is getattr(member_state, field.name)


# ------------------------------------------------------------------------------------------------------------
# Loading and the commands


@pytest.fixture(scope="module")
def other_vocabulary(tmp_path_factory):
    """A checkpoint trained on other text, so with other SentencePiece models than toy_data's."""
    directory = tmp_path_factory.mktemp("other-vocab")
    pairs = [(s.replace("a", "o"), t.replace("A", "U")) for s, t in toy_pairs(200, seed=9)]
    data = make_prepared(directory / "data", pairs, pairs[:10], pairs[:10], vocab_size=48)
    return make_checkpoint(directory / "other.pt", data, "rnnsearch")


def test_load_translator_builds_an_ensemble_of_different_architectures(tiny_checkpoint):
    paths = [tiny_checkpoint("rnnsearch"), tiny_checkpoint("transformer")]
    model, checkpoint = load_translator(paths, torch.device("cpu"))
    assert isinstance(model, Ensemble) and len(model.members) == 2 and not model.training
    assert checkpoint.tokenizers.target.model_proto
    single, _ = load_translator(paths[0], torch.device("cpu"))
    assert not isinstance(single, Ensemble)
    alone, _ = load_translator(paths[:1], torch.device("cpu"))
    assert not isinstance(alone, Ensemble)


def test_different_vocabularies_are_one_clear_error(tiny_checkpoint, other_vocabulary):
    with pytest.raises(UserError, match="different source vocabularies") as error:
        load_translator([tiny_checkpoint("rnn"), other_vocabulary], torch.device("cpu"))
    assert str(tiny_checkpoint("rnn")) in str(error.value) and str(other_vocabulary) in str(error.value)


def test_translate_with_an_ensemble(tiny_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("alba bero\n\ncima dano eske\n", encoding="utf-8")
    a, b = tiny_checkpoint("rnnsearch"), tiny_checkpoint("transformer")
    both = run_nmt("translate", "-c", a, "-c", b, "-i", source, "--beam", 2, "--max-len-a", 1)
    assert both.exit_code == 0, both.stderr
    assert len(both.stdout.split("\n")[:-1]) == 3
    # Two copies of one model are that model (the mean of equal distributions).
    once = run_nmt("translate", "-c", a, "-i", source, "--beam", 2, "--max-len-a", 1)
    twice = run_nmt("translate", "-c", a, "-c", a, "-i", source, "--beam", 2, "--max-len-a", 1)
    assert once.exit_code == twice.exit_code == 0
    assert once.stdout == twice.stdout


def test_translate_refuses_an_ensemble_of_different_vocabularies(tiny_checkpoint, other_vocabulary, tmp_path):
    out = tmp_path / "precious.txt"
    out.write_text("precious\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = run_nmt(
        "translate", "-c", tiny_checkpoint("rnn"), "-c", other_vocabulary, "-o", out, input="alba\n"
    )
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "different source vocabularies" in result.stderr
    assert snapshot(tmp_path) == before


def test_eval_translates_with_an_ensemble(tiny_checkpoint, tmp_path):
    source, reference = tmp_path / "test.src", tmp_path / "test.ref"
    source.write_text("alba bero\ncima\ndano eske fora\n", encoding="utf-8")
    reference.write_text("BERO ALBA\nCIMA\nFORA ESKE DANO\n", encoding="utf-8")
    pair = f"{tiny_checkpoint('rnnsearch')}+{tiny_checkpoint('transformer')}"
    result = run_nmt(
        "eval", "-s", source, "-r", reference, "--checkpoint", f"both={pair}",
        "--checkpoint", f"one={tiny_checkpoint('rnnsearch')}", "--beam", 1, "--device", "cpu",
        "--bootstrap", 0, "--json", tmp_path / "eval.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in report["systems"]] == ["both", "one"]


def test_eval_refuses_an_ensemble_of_different_vocabularies(tiny_checkpoint, other_vocabulary, tmp_path):
    source = tmp_path / "test.src"
    source.write_text("alba bero\n", encoding="utf-8")
    before = snapshot(tmp_path)
    pair = f"{tiny_checkpoint('rnn')}+{other_vocabulary}"
    result = run_nmt("eval", "-s", source, "-r", source, "--checkpoint", f"x={pair}", "--device", "cpu")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "different source vocabularies" in result.stderr
    assert snapshot(tmp_path) == before
