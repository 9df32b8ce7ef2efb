"""Inputs and loops that the model tests share (test_models, test_scoring, test_transformer_variants)."""

from __future__ import annotations

import pytest
import torch

from nmt.config import LengthNormalization
from nmt.data.batching import pad_sources
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.search import beam_search, greedy_search


def padded_batch():
    """Three pairs, all lengths different: src = ids + EOS, tgt_in = BOS + ids, right-padded.

    Returns (src (3, 7), src_lengths, tgt_in (3, 8), tgt_lengths); lengths count EOS and BOS."""
    sources = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
    targets = [[4, 5, 6], [7, 8, 9, 10, 11, 12, 13], [14, 15]]
    src, src_lengths = pad_sources(sources)
    tgt_in = torch.full((3, 8), PAD_ID)
    for row, t in enumerate(targets):
        tgt_in[row, : len(t) + 1] = torch.tensor([BOS_ID, *t])
    return src, src_lengths, tgt_in, torch.tensor([len(t) + 1 for t in targets])


def run_steps(model, src, src_lengths, tgt_in):
    """Feed `tgt_in` one token at a time: log-probs (B, T, V), `state.attention` stacked (B, T, S) or None
    for a model without attention, and the last state."""
    state = model.start(model.encode(src, src_lengths))
    log_probs, attention = [], []
    for t in range(tgt_in.size(1)):
        step_log_probs, state = model.step(tgt_in[:, t], state)
        log_probs.append(step_log_probs)
        attention.append(state.attention)
    stacked = None if attention[0] is None else torch.stack(attention, dim=1)
    return torch.stack(log_probs, dim=1), stacked, state


SRC_VOCAB, TGT_VOCAB = 23, 29  # different sizes, so that a source/target mix-up fails loudly


def perturbed_model(arch: str, seed: int | None = None, **overrides) -> torch.nn.Module:
    """A tiny model in eval mode with every weight moved off its initial value (biases, and RNNsearch's v_a,
    start at zero: attention would be uniform), so that properties are tested on a generic function. With
    `seed`, the random numbers are seeded first."""
    from nmt.models import build_model, model_config

    if seed is not None:
        torch.manual_seed(seed)
    values = {"src_vocab_size": SRC_VOCAB, "tgt_vocab_size": TGT_VOCAB, "dropout": 0.0, **overrides}
    model = build_model(arch, model_config(arch, "tiny", values))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.2)
    return model.eval()


SENTENCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18]]  # source ids of four lengths


def assert_beam_one_equals_greedy(model, sentences=SENTENCES) -> None:
    """Beam search with one beam and no normalisation finds greedy's tokens, log-probs, scores and (for a
    model with attention) attention rows."""
    src, lengths = pad_sources(sentences)
    with_attention = model.has_attention
    greedy = greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=4, return_attention=with_attention)
    beam = beam_search(
        *(model, src, lengths),
        beam_size=1,
        max_len_a=1.5,
        max_len_b=4,
        normalization=LengthNormalization.none,
        return_attention=with_attention,
    )
    for g, (b,) in zip(greedy, beam, strict=True):
        assert g.tokens == b.tokens
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5)
        assert g.score == pytest.approx(b.score, abs=1e-5)
        if with_attention:
            torch.testing.assert_close(g.attention, b.attention)


def assert_batched_equals_one_at_a_time(model, sentences=SENTENCES, **options) -> None:
    """Beam search over a padded batch gives each sentence the n-best it gets alone."""
    options = {"beam_size": 3, "nbest": 2, "max_len_a": 1.0, "max_len_b": 3, **options}
    batched = beam_search(model, *pad_sources(sentences), **options)
    for sentence, together in zip(sentences, batched, strict=True):
        alone = beam_search(model, *pad_sources([sentence]), **options)[0]
        assert [h.tokens for h in together] == [h.tokens for h in alone]
        assert [h.score for h in together] == pytest.approx([h.score for h in alone], abs=1e-4)


# ------------------------------------------------------------------------------------------------------------
# Checkpoints


def small_tokenizer():
    """A SentencePiece model of 40 pieces over a few English sentences."""
    from nmt.data.tokenizer import SentencePieceSettings, Tokenizer, train_sentencepiece

    sentences = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song", "cats and dogs"]
    return Tokenizer(train_sentencepiece(sentences * 5, SentencePieceSettings(vocab_size=40)))


def save_and_load(model, tokenizer, path, edit_payload=None):
    """Save `model` as a checkpoint (optionally editing the saved dict), load it and rebuild the model."""
    from nmt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from nmt.data.tokenizer import TokenizerPair
    from nmt.models.registry import ARCHITECTURES

    arch = next(name for name, a in ARCHITECTURES.items() if type(model.config) is a.config)
    languages = {"source": "xx", "target": "yy"}
    pair = TokenizerPair(tokenizer, tokenizer)
    save_checkpoint(path, Checkpoint(arch, model.config, model.state_dict(), pair, languages))
    if edit_payload is not None:
        payload = torch.load(path, weights_only=True)
        edit_payload(payload)
        torch.save(payload, path)
    loaded = load_checkpoint(path)
    return loaded, loaded.build_model()


def same_outputs(a, b, tokenizer) -> bool:
    """Whether two models give bitwise the same logits (and attention, where they have it) on one pair."""
    src = torch.tensor([tokenizer.encode("the cat ran") + [EOS_ID]])
    tgt_in = torch.tensor([[BOS_ID] + tokenizer.encode("a dog sat")])
    src_lengths = torch.tensor([src.size(1)])
    with torch.no_grad():
        same = torch.equal(a(src, src_lengths, tgt_in), b(src, src_lengths, tgt_in))
        if a.has_attention:
            same = same and torch.equal(
                a.attention_maps(src, src_lengths, tgt_in).cross[0],
                b.attention_maps(src, src_lengths, tgt_in).cross[0],
            )
    return same
