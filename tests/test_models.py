"""Properties every model in the registry must have, plus each architecture's defining property."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from model_checks import TGT_VOCAB, padded_batch, perturbed_model, run_steps

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.models import ARCHITECTURES, build_model, model_config
from nmt.models.base import is_source_side, reorder_tree
from nmt.models.rnnsearch import additive_attention
from nmt.models.transformer import attend

ARCHS = sorted(ARCHITECTURES)


pytestmark = pytest.mark.usefixtures("one_thread")


make_model = perturbed_model


def state_tensors(state) -> list[torch.Tensor]:
    """Every tensor in a (nested) state, in a fixed order."""
    if isinstance(state, torch.Tensor):
        return [state]
    if dataclasses.is_dataclass(state):
        return [t for f in dataclasses.fields(state) for t in state_tensors(getattr(state, f.name))]
    if isinstance(state, (list, tuple)):
        return [t for item in state for t in state_tensors(item)]
    return []


# ------------------------------------------------------------------------------------------------------------
# The contract, for every architecture


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_step_reproduces_forward(arch):
    model = make_model(arch)
    src, src_lengths, tgt_in, _ = padded_batch()
    expected = model(src, src_lengths, tgt_in).log_softmax(dim=-1)
    stepped, _, state = run_steps(model, src, src_lengths, tgt_in)
    assert stepped.dtype == torch.float32
    assert expected.shape == (3, tgt_in.size(1), TGT_VOCAB)
    torch.testing.assert_close(stepped, expected)
    if model.has_attention:
        assert state.attention.shape == src.shape
        torch.testing.assert_close(state.attention.sum(-1), torch.ones(3))
        assert (state.attention[src == PAD_ID] == 0).all()
    else:
        assert state.attention is None


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_output_does_not_depend_on_padding(arch):
    model = make_model(arch)
    src, src_lengths, tgt_in, tgt_lengths = padded_batch()
    batched = model(src, src_lengths, tgt_in)
    for row in range(3):
        n, m = int(src_lengths[row]), int(tgt_lengths[row])
        alone = model(src[row : row + 1, :n], src_lengths[row : row + 1], tgt_in[row : row + 1, :m])
        torch.testing.assert_close(batched[row : row + 1, :m], alone)
    stepped, _, _ = run_steps(model, src[1:2, :4], src_lengths[1:2], tgt_in[1:2])
    torch.testing.assert_close(stepped, batched[1:2].log_softmax(-1))


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_reorder_commutes_with_step(arch):
    model = make_model(arch)
    src, src_lengths, tgt_in, _ = padded_batch()
    state = model.start(model.encode(src, src_lengths))
    for t in range(2):
        _, state = model.step(tgt_in[:, t], state)
    index = torch.tensor([2, 0, 0, 1, 2])  # a permutation with repeats, as beam expansion makes
    prev = tgt_in[:, 2]
    log_probs, after = model.step(prev, state)
    reordered_log_probs, reordered_after = model.step(prev[index], model.reorder(state, index))
    torch.testing.assert_close(reordered_log_probs, log_probs[index])
    expected, actual = state_tensors(reorder_tree(after, index)), state_tensors(reordered_after)
    assert len(expected) == len(actual) > 0
    for a, b in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_reorder_within_sentences_leaves_the_source_side_in_place(arch):
    """Beam search's `same_sources=True`: the fields declared `source_side()` are kept (not copied), and the
    next step is what a full reorder gives. A per-hypothesis field declared source-side by mistake fails."""
    model = make_model(arch)
    src, src_lengths, _, _ = padded_batch()
    state = model.start(model.encode(src, src_lengths))
    state = model.reorder(state, torch.arange(3).repeat_interleave(2))  # two beams per sentence
    _, state = model.step(torch.tensor([4, 5, 6, 7, 8, 9]), state)  # every beam its own word: they part
    index = torch.tensor([1, 1, 2, 3, 5, 4])  # each new row reads a beam of its own sentence
    prev = torch.tensor([10, 11, 12, 13, 14, 15])
    expected_log_probs, expected = model.step(prev, model.reorder(state, index))
    kept = model.reorder(state, index, same_sources=True)
    log_probs, after = model.step(prev, kept)
    torch.testing.assert_close(log_probs, expected_log_probs)
    for a, b in zip(state_tensors(after), state_tensors(expected), strict=True):
        torch.testing.assert_close(a, b)
    source_side = [f.name for f in dataclasses.fields(state) if is_source_side(f)]
    assert source_side  # every model has a source side: the encoder's output or a summary of it
    for name in source_side:
        assert getattr(kept, name) is getattr(state, name)


def reversal_batch(generator: torch.Generator, batch_size: int = 32, symbols: int = 12):
    """A reversal task over the ids 4..symbols-1, 2 to 5 tokens per sentence."""
    lengths = torch.randint(2, 6, (batch_size,), generator=generator)
    width = int(lengths.max()) + 1
    src = torch.full((batch_size, width), PAD_ID)
    tgt = torch.full((batch_size, width), PAD_ID)
    for row, n in enumerate(lengths.tolist()):
        words = torch.randint(4, symbols, (n,), generator=generator)
        src[row, : n + 1] = torch.cat([words, torch.tensor([EOS_ID])])
        tgt[row, : n + 1] = torch.cat([words.flip(0), torch.tensor([EOS_ID])])
    tgt_in = torch.cat([torch.full((batch_size, 1), BOS_ID), tgt[:, :-1]], dim=1).masked_fill(
        torch.cat([torch.zeros(batch_size, 1, dtype=torch.bool), tgt[:, :-1] == EOS_ID], dim=1), PAD_ID
    )
    return src, lengths + 1, tgt_in, tgt


@pytest.mark.parametrize("arch", ARCHS)
def test_learns_to_reverse(arch):
    config = model_config(arch, "tiny", {"src_vocab_size": 12, "tgt_vocab_size": 12, "dropout": 0.0})
    model = build_model(arch, config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(200):
        src, src_lengths, tgt_in, tgt = reversal_batch(generator)
        logits = model(src, src_lengths, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # A uniform guess over the 9 possible next tokens costs ln 9 = 2.2 nats.
    assert sum(losses[:10]) / 10 > 1.5
    assert sum(losses[-20:]) / 20 < 0.6


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip(arch, tmp_path):
    from nmt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from nmt.data.tokenizer import SentencePieceSettings, Tokenizer, TokenizerPair, train_sentencepiece

    sentences = ["the cat sat on the mat", "a dog ran in the park", "the bird sang a song", "cats and dogs"]
    tokenizer = Tokenizer(train_sentencepiece(sentences * 5, SentencePieceSettings(vocab_size=40)))
    vocab = tokenizer.vocab_size
    model = make_model(arch, src_vocab_size=vocab, tgt_vocab_size=vocab, share_embeddings=True)
    path = tmp_path / "model.pt"
    save_checkpoint(
        path,
        Checkpoint(
            arch=arch,
            model_config=model.config,
            model_state=model.state_dict(),
            tokenizers=TokenizerPair(tokenizer, tokenizer),
            languages={"source": "xx", "target": "yy"},
        ),
    )
    loaded = load_checkpoint(path)  # torch.load(..., weights_only=True) inside
    assert loaded.model_config == model.config
    assert loaded.tokenizers.joint
    restored = loaded.build_model()
    src = torch.tensor([tokenizer.encode("the cat ran") + [EOS_ID]])
    tgt_in = torch.tensor([[BOS_ID] + tokenizer.encode("a dog sat")])
    src_lengths = torch.tensor([src.size(1)])
    with torch.no_grad():
        assert torch.equal(restored(src, src_lengths, tgt_in), model(src, src_lengths, tgt_in))


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_step_under_bf16_autocast_returns_float32(arch):
    model = make_model(arch)
    src, src_lengths, tgt_in, _ = padded_batch()
    reference = model(src, src_lengths, tgt_in).log_softmax(-1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, src_lengths, tgt_in)
        state = model.start(model.encode(src, src_lengths))
        outputs = []
        for t in range(tgt_in.size(1)):
            log_probs, state = model.step(tgt_in[:, t], state)
            assert log_probs.dtype == torch.float32
            outputs.append(log_probs)
            state = model.reorder(state, torch.arange(3))  # beam search reorders between steps
    assert torch.isfinite(logits).all()
    assert (torch.stack(outputs, 1) - reference).abs().max() < 0.5  # bf16 keeps about 3 significant digits
    if hasattr(state, "hidden"):
        assert state.hidden.dtype == torch.float32


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_embeddings_need_one_vocabulary(arch):
    with pytest.raises(ValueError, match="joint vocabulary"):
        make_model(arch, share_embeddings=True)


# ------------------------------------------------------------------------------------------------------------
# RNN Encoder-Decoder: the decoder sees the source only through the fixed vector c


@torch.no_grad()
def test_rnn_decoder_sees_the_source_only_through_c():
    model = make_model("rnn")
    tgt_in = torch.tensor([[BOS_ID, 5, 6, 7]])
    src_a, src_b = torch.tensor([[5, 6, 7, EOS_ID]]), torch.tensor([[9, 10, 11, 12, 13, EOS_ID]])
    c_a = model.encode(src_a, torch.tensor([4])).summary
    c_b = model.encode(src_b, torch.tensor([6])).summary
    assert not torch.allclose(c_a, c_b)
    out_a = model(src_a, torch.tensor([4]), tgt_in)
    assert not torch.allclose(model(src_b, torch.tensor([6]), tgt_in), out_a)
    # Force source b's summary to be a's: the decoder's output becomes a's exactly.
    pre_a = model.summarize(model.encoder(model.src_embed(src_a))[1][0])
    handle = model.summarize.register_forward_hook(lambda module, inputs, output: pre_a)
    try:
        torch.testing.assert_close(model(src_b, torch.tensor([6]), tgt_in), out_a)
    finally:
        handle.remove()
    stepped, _, _ = run_steps(model, src_a, torch.tensor([4]), tgt_in)
    state = model.start(type(model.encode(src_b, torch.tensor([6])))(summary=c_a))
    forced = []
    for t in range(tgt_in.size(1)):
        log_probs, state = model.step(tgt_in[:, t], state)
        forced.append(log_probs)
    torch.testing.assert_close(torch.stack(forced, 1), stepped)


# ------------------------------------------------------------------------------------------------------------
# RNNsearch: attention reads the annotations, scored against the previous decoder state


@torch.no_grad()
def test_rnnsearch_context_reads_every_real_annotation():
    model = make_model("rnnsearch")
    src, src_lengths, tgt_in, _ = padded_batch()
    encoded = model.encode(src, src_lengths)
    state = model.start(encoded)
    _, state = model.step(tgt_in[:, 0], state)
    hidden = state.hidden
    prev_gates = model.from_prev(model.tgt_embed(tgt_in[:, 1]))

    def step_with(annotations):
        keys = model.to_keys(annotations)
        _, context, alpha = model._cell(prev_gates, hidden, keys, annotations, encoded.pad_mask)
        perturbed_state = dataclasses.replace(state, annotations=annotations, keys=keys)
        log_probs, _ = model.step(tgt_in[:, 1], perturbed_state)
        return context, alpha, log_probs

    context, alpha, log_probs = step_with(encoded.annotations)
    assert (alpha[encoded.pad_mask] == 0).all() and (alpha[~encoded.pad_mask] > 0).all()
    torch.testing.assert_close(context, torch.einsum("bs,bsh->bh", alpha, encoded.annotations))
    row = 1  # 4 real positions, 3 padding
    for j in range(src.size(1)):
        perturbed = encoded.annotations.clone()
        perturbed[row, j] += 1.0
        new_context, _, new_log_probs = step_with(perturbed)
        changed = not torch.allclose(new_context[row], context[row]) and not torch.allclose(
            new_log_probs[row], log_probs[row]
        )
        assert changed == bool(j < src_lengths[row]), f"position {j}"
        torch.testing.assert_close(new_log_probs[[0, 2]], log_probs[[0, 2]])  # other sentences untouched


def test_additive_attention_is_eq_6_with_tanh():
    """The sigmoid form gives the alignments of e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j), gradients too."""
    torch.manual_seed(0)
    v_a = torch.nn.Linear(16, 1, bias=False)
    query = torch.randn(3, 16, requires_grad=True)
    keys = torch.randn(3, 7, 16, requires_grad=True)
    pad_mask = torch.arange(7)[None, :] >= torch.tensor([[7], [4], [1]])
    alpha = additive_attention(query, keys, v_a, pad_mask)
    energies = v_a(torch.tanh(query[:, None, :] + keys)).squeeze(-1)  # (B, S) eq. 6 as written
    expected = energies.masked_fill(pad_mask, float("-inf")).softmax(dim=-1)
    torch.testing.assert_close(alpha, expected)
    assert (alpha[pad_mask] == 0).all()
    weights = torch.randn(3, 7)  # any downstream use of the alignments
    grads = torch.autograd.grad((alpha * weights).sum(), [query, keys, v_a.weight])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [query, keys, v_a.weight])
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad)


@torch.no_grad()
def test_rnnsearch_aligns_with_the_previous_state():
    """alpha_i depends on s_{i-1} (App. A.1.2), not on y_{i-1}: two different previous words give the same
    alignment, while the prediction differs."""
    model = make_model("rnnsearch")
    src, src_lengths, tgt_in, _ = padded_batch()
    state = model.start(model.encode(src, src_lengths))
    _, state = model.step(tgt_in[:, 0], state)
    log_probs_a, after_a = model.step(torch.tensor([5, 6, 7]), state)
    log_probs_b, after_b = model.step(torch.tensor([8, 9, 10]), state)
    torch.testing.assert_close(after_a.attention, after_b.attention)
    assert not torch.allclose(log_probs_a, log_probs_b)


@pytest.mark.parametrize("maxout_dim", [0, 8])
@torch.no_grad()
def test_rnn_models_with_and_without_maxout(maxout_dim):
    src, src_lengths, tgt_in, _ = padded_batch()
    for arch in ("rnn", "rnnsearch"):
        model = make_model(arch, maxout_dim=maxout_dim)
        stepped, _, _ = run_steps(model, src, src_lengths, tgt_in)
        torch.testing.assert_close(stepped, model(src, src_lengths, tgt_in).log_softmax(-1))


# ------------------------------------------------------------------------------------------------------------
# Transformer: the key/value cache


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"norm_first": False},
        {"tie_output": False, "alignment_layer": 0},
    ],
    ids=["pre-norm", "post-norm", "untied"],
)
@torch.no_grad()
def test_transformer_cached_step_equals_recomputing_the_prefix(overrides):
    model = make_model("transformer", **overrides)
    src, src_lengths, tgt_in, _ = padded_batch()
    stepped, _, _ = run_steps(model, src, src_lengths, tgt_in)
    for t in range(tgt_in.size(1)):
        prefix = model(src, src_lengths, tgt_in[:, : t + 1]).log_softmax(-1)  # no cache: the whole prefix
        torch.testing.assert_close(stepped[:, t], prefix[:, -1])
    torch.testing.assert_close(stepped, model(src, src_lengths, tgt_in).log_softmax(-1))


@pytest.mark.parametrize("heads", [1, 4])
def test_one_query_attention_on_the_cpu_equals_sdpa(heads):
    """A decoding step's attention skips SDPA on the CPU (`attend`); the result must not change."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, heads, 1, 8), torch.randn(3, heads, 5, 8), torch.randn(3, heads, 5, 8)
    mask = (torch.arange(5)[None, :] < torch.tensor([[5], [3], [1]]))[:, None, None, :]  # (B, 1, 1, S)
    torch.testing.assert_close(attend(q, k, v, mask, 0.0), F.scaled_dot_product_attention(q, k, v, mask))
    torch.testing.assert_close(attend(q, k, v, None, 0.0), F.scaled_dot_product_attention(q, k, v))


@torch.no_grad()
def test_transformer_shared_embeddings_and_attention_layer():
    model = make_model("transformer", src_vocab_size=TGT_VOCAB, share_embeddings=True, alignment_layer=0)
    assert model.src_embed is model.tgt_embed
    src, src_lengths, tgt_in, _ = padded_batch()
    stepped, _, state = run_steps(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(stepped, model(src, src_lengths, tgt_in).log_softmax(-1))
    assert (state.attention[src == PAD_ID] == 0).all()
    last_layer = make_model("transformer", src_vocab_size=TGT_VOCAB, share_embeddings=True)
    last_layer.load_state_dict(model.state_dict())
    _, _, other = run_steps(last_layer, src, src_lengths, tgt_in)
    assert not torch.allclose(other.attention, state.attention)  # a different layer's attention
