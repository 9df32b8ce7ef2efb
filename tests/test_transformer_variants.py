"""The Transformer's variants: position encodings (sinusoidal, learned, none, rotary), the 1/sqrt(d_k) switch,
and its attention maps. Each variant keeps the model contract (step == forward, search, checkpoints), and each
has the property that defines it, checked on small hand-built tensors where there is an equation."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from model_checks import (
    assert_batched_equals_one_at_a_time,
    assert_beam_one_equals_greedy,
    padded_batch,
    run_steps,
)

from nmt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nmt.config import to_dict
from nmt.data.batching import pad_sources
from nmt.data.prepared import PreparedData
from nmt.data.special import BOS_ID, PAD_ID
from nmt.decoding.search import beam_search
from nmt.models import build_model, transformer_attention
from nmt.models.base import AttentionMaps
from nmt.models.configs import Positions, TransformerConfig
from nmt.models.positions import RotaryPositions, rotate_pairs
from nmt.models.transformer import Transformer, attend, sinusoids
from nmt.models.transformer_attention import CrossAttention, attention_weights, split_heads

pytestmark = pytest.mark.usefixtures("one_thread")

VOCAB = 20
POSITIONS = list(Positions)
VARIANTS = list(itertools.product(POSITIONS, [True, False]))  # (positions, scale_attention)
VARIANT_IDS = [f"{p.value}-{'scaled' if s else 'unscaled'}" for p, s in VARIANTS]


def tiny_config(positions=Positions.sinusoidal, scale_attention=True, **overrides) -> TransformerConfig:
    values = {
        "src_vocab_size": VOCAB,
        "tgt_vocab_size": VOCAB,
        "d_model": 16,
        "num_heads": 2,
        "ffn_dim": 32,
        "encoder_layers": 2,
        "decoder_layers": 2,
        "dropout": 0.0,
        "max_positions": 64,
        "positions": positions,
        "scale_attention": scale_attention,
        **overrides,
    }
    return TransformerConfig(**values)


def tiny_model(positions=Positions.sinusoidal, scale_attention=True, **overrides) -> Transformer:
    """A tiny Transformer in eval mode with every weight moved off its initial value, so that attention is far
    from uniform and the properties are checked on a generic function."""
    model = build_model("transformer", tiny_config(positions, scale_attention, **overrides))
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
    return model.eval()


# ------------------------------------------------------------------------------------------------------------
# The contract, for every variant


@pytest.mark.parametrize("one_query_sdpa", [False, True], ids=["two-products", "sdpa"])
@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_step_reproduces_forward_on_a_padded_batch(positions, scale, one_query_sdpa):
    model = tiny_model(positions, scale)
    model.one_query_sdpa = one_query_sdpa  # the decoding step's one-query attention through either path
    src, src_lengths, tgt_in, _ = padded_batch()
    expected = model(src, src_lengths, tgt_in).float().log_softmax(dim=-1)
    stepped, _, _ = run_steps(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(stepped, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
def test_beam_one_equals_greedy_and_batched_equals_one_at_a_time(positions, scale):
    model = tiny_model(positions, scale)
    assert_beam_one_equals_greedy(model)
    assert_batched_equals_one_at_a_time(model)


@pytest.mark.parametrize("positions", POSITIONS)
def test_decoding_under_bf16_autocast(positions):
    model = tiny_model(positions)
    src, lengths = pad_sources([[5, 6, 7, 8], [9, 10]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        hyps = beam_search(
            model, src, lengths, beam_size=2, max_len_a=1.0, max_len_b=3, return_attention=True
        )
    for (h,) in hyps:
        assert math.isfinite(h.score) and h.attention.dtype == torch.float32


def checkpoint_of(model: Transformer, data_dir) -> Checkpoint:
    tokenizers = PreparedData.open(data_dir).tokenizers
    return Checkpoint(
        "transformer", model.config, model.state_dict(), tokenizers, {"source": "s", "target": "t"}
    )


@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_checkpoint_round_trip(positions, scale, toy_data, tmp_path):
    model = tiny_model(positions, scale)
    save_checkpoint(tmp_path / "model.pt", checkpoint_of(model, toy_data))
    loaded = load_checkpoint(tmp_path / "model.pt")
    assert loaded.model_config == model.config
    rebuilt = loaded.build_model()
    src, src_lengths, tgt_in, _ = padded_batch()
    assert torch.equal(rebuilt(src, src_lengths, tgt_in), model(src, src_lengths, tgt_in))


@torch.no_grad()
def test_a_checkpoint_saved_before_these_options_loads_as_sinusoidal_and_scaled(toy_data, tmp_path):
    model = tiny_model()
    assert not any("position" in key or "rotary" in key for key in model.state_dict())  # nothing new saved
    path = tmp_path / "old.pt"
    save_checkpoint(path, checkpoint_of(model, toy_data))
    payload = torch.load(path, weights_only=True)
    del payload["model_config"]["positions"], payload["model_config"]["scale_attention"]  # as written before
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.model_config.positions == Positions.sinusoidal and loaded.model_config.scale_attention
    src, src_lengths, tgt_in, _ = padded_batch()
    assert torch.equal(loaded.build_model()(src, src_lengths, tgt_in), model(src, src_lengths, tgt_in))


def test_learned_positions_are_saved_and_the_fixed_ones_are_not():
    learned = tiny_model(Positions.learned).state_dict()
    assert learned["positions.table"].shape == (64, 16)
    for positions in (Positions.sinusoidal, Positions.none, Positions.rotary):
        keys = set(tiny_model(positions).state_dict())
        assert keys == set(learned) - {"positions.table"}
    assert to_dict(tiny_config(Positions.rotary))["positions"] == "rotary"


# ------------------------------------------------------------------------------------------------------------
# Positions


def test_sinusoids_follow_section_3_5():
    table = sinusoids(50, 8)
    for pos, i in itertools.product([0, 1, 7, 49], range(4)):
        angle = pos / 10000 ** (2 * i / 8)
        assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@torch.no_grad()
def test_without_positions_the_encoder_is_permutation_equivariant():
    model = tiny_model(Positions.none)
    generator = torch.Generator().manual_seed(1)
    for length in (3, 5, 8):
        src = torch.randint(4, VOCAB, (2, length), generator=generator)  # no padding
        lengths = torch.full((2,), length)
        memory = model.encode(src, lengths).memory
        for _ in range(4):
            perm = torch.randperm(length, generator=generator)
            permuted = model.encode(src[:, perm], lengths).memory
            torch.testing.assert_close(permuted, memory[:, perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", [Positions.sinusoidal, Positions.learned, Positions.rotary])
@torch.no_grad()
def test_with_positions_the_encoder_is_not_permutation_equivariant(positions):
    model = tiny_model(positions)
    generator = torch.Generator().manual_seed(1)
    for length in (3, 5, 8):
        src = (torch.randperm(VOCAB - 4, generator=generator)[:length] + 4)[None]  # distinct tokens
        lengths = torch.tensor([length])
        memory = model.encode(src, lengths).memory
        for _ in range(4):
            perm = torch.randperm(length, generator=generator)
            if torch.equal(perm, torch.arange(length)):
                continue
            permuted = model.encode(src[:, perm], lengths).memory
            assert (permuted - memory[:, perm]).abs().max() > 1e-2


@torch.no_grad()
def test_without_positions_the_decoder_sees_order_only_through_its_causal_mask():
    """A position's first-layer output depends on the set of tokens up to it; a second layer reads the
    earlier positions' outputs, each of which saw a different prefix, so order matters from then on."""
    src, lengths = pad_sources([[5, 6, 7]])
    tgt_in = torch.tensor([[BOS_ID, 8, 9, 10, 11]])
    reordered = tgt_in[:, [2, 0, 3, 1, 4]]  # the same tokens before the last one, in another order
    for layers, order_matters in ((1, False), (2, True)):
        model = tiny_model(Positions.none, decoder_layers=layers)
        last, last_reordered = model(src, lengths, tgt_in)[0, -1], model(src, lengths, reordered)[0, -1]
        assert torch.allclose(last, last_reordered, atol=1e-5) != order_matters


def test_learned_positions_start_as_large_as_the_scaled_token_embeddings():
    model = build_model("transformer", tiny_config(Positions.learned, d_model=64, num_heads=4))
    table = model.positions(0, 64)  # (L, D) what is added
    assert 0.8 < table.std().item() < 1.2
    assert model.positions.table.requires_grad


def test_rotation_is_the_block_diagonal_rotation_matrix_of_roformer_eq_15():
    rotary = RotaryPositions(max_positions=10, head_dim=4)
    x = torch.tensor([[[[1.0, 2.0, -3.0, 0.5]]]])  # (1, 1, 1, 4)
    for m in (0, 1, 7):
        blocks = []
        for theta in (1.0, 10000 ** (-2 / 4)):  # theta_i = 10000^(-2(i-1)/d), i = 1, 2
            c, s = math.cos(m * theta), math.sin(m * theta)
            blocks.append(torch.tensor([[c, -s], [s, c]]))
        expected = torch.block_diag(*blocks) @ x[0, 0, 0]
        torch.testing.assert_close(rotary.rotation(m, 1).apply(x)[0, 0, 0], expected)
    assert torch.equal(rotate_pairs(x), torch.tensor([[[[-2.0, 1.0, -0.5, -3.0]]]]))


def test_rotated_dot_products_depend_only_on_the_relative_position():
    """RoFormer eq. 16: (R_m q) . (R_n k) = q^T R_{n-m} k, a function of m - n alone."""
    rotary = RotaryPositions(max_positions=40, head_dim=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> float:
        return (rotary.rotation(m, 1).apply(q) * rotary.rotation(n, 1).apply(k)).sum().item()

    for offset in (0, 1, 4, -3):
        same = [score(m, m - offset) for m in range(max(offset, 0), 30, 7)]
        assert max(same) - min(same) < 1e-4
    assert abs(score(5, 2) - score(2, 5)) > 1e-3  # it does depend on m - n, and on its sign
    assert score(0, 0) == pytest.approx((q * k).sum().item(), abs=1e-6)  # no rotation at position 0


@torch.no_grad()
def test_rotary_decoding_caches_the_rotated_keys():
    model = tiny_model(Positions.rotary)
    src, src_lengths, tgt_in, _ = padded_batch()
    _, _, state = run_steps(model, src, src_lengths, tgt_in)
    layer = model.decoder_layers[0]
    x = model.tgt_embed(tgt_in) * model.embed_scale  # rotary adds nothing to the embeddings
    _, raw_keys, _ = layer.self_attn.project(layer.res_self.before(x))
    rotated = model.rotary.rotation(0, tgt_in.size(1)).apply(raw_keys)
    torch.testing.assert_close(state.self_keys[0], rotated)
    assert not torch.allclose(state.self_keys[0][:, :, 1:], raw_keys[:, :, 1:], atol=1e-3)


def test_rotary_positions_need_an_even_head_size():
    with pytest.raises(ValueError, match="odd"):
        build_model("transformer", tiny_config(Positions.rotary, d_model=18, num_heads=2))


# ------------------------------------------------------------------------------------------------------------
# The 1/sqrt(d_k) switch (Section 3.2.1)

Q = torch.tensor([[[[1.0, 2.0, 0.0, -1.0], [0.5, -1.0, 1.0, 2.0]]]])  # (1, 1, 2, 4)
K = torch.tensor([[[[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, -1.0, 1.0], [2.0, 1.0, 0.0, -1.0]]]])  # (1, 1, 3, 4)
V = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [3.0, -2.0]]]])  # (1, 1, 3, 2)
MASK = torch.tensor([True, True, False])[None, None, None, :]  # the third key is padding


def hand_attention(scale: float, rows: list[int]) -> torch.Tensor:
    """softmax(s * q . k) v over the two unmasked keys, written out element by element."""
    out = []
    for i in rows:
        scores = [scale * sum(Q[0, 0, i, d].item() * K[0, 0, j, d].item() for d in range(4)) for j in (0, 1)]
        exps = [math.exp(s) for s in scores]
        weights = [e / sum(exps) for e in exps]
        out.append(
            [sum(w * V[0, 0, j, c].item() for w, j in zip(weights, (0, 1), strict=True)) for c in (0, 1)]
        )
    return torch.tensor(out)[None, None]


@pytest.mark.parametrize(("scale", "factor"), [(None, 0.5), (1.0, 1.0)], ids=["scaled", "unscaled"])
def test_scores_are_q_dot_k_times_the_scale(scale, factor):
    """scale None: q . k / sqrt(d_k) = q . k / 2 for d_k = 4; scale 1.0: q . k alone."""
    torch.testing.assert_close(
        attend(Q, K, V, MASK, 0.0, scale=scale), hand_attention(factor, [0, 1])
    )  # SDPA
    one_query = attend(Q[:, :, 1:], K, V, MASK, 0.0, scale=scale)  # the CPU one-query path
    torch.testing.assert_close(one_query, hand_attention(factor, [1]))
    weights = attention_weights(Q, K, MASK, scale=scale)
    torch.testing.assert_close(weights[..., :2], ((Q @ K.transpose(-1, -2)) * factor)[..., :2].softmax(-1))
    assert torch.equal(weights[..., 2], torch.zeros(1, 1, 2))


@pytest.mark.parametrize(("scale", "factor"), [(None, 0.5), (1.0, 1.0)], ids=["scaled", "unscaled"])
def test_cross_attention_weights_use_the_scale(scale, factor):
    attention = CrossAttention(d_model=8, heads=2, dropout=0.0, scale=scale)
    x, memory = torch.randn(1, 2, 8), torch.randn(1, 3, 8)
    keys, values = attention.keys_values(memory)
    _, weights = attention.forward_with_weights(x, keys, values, MASK)
    q = split_heads(attention.q(x), 2)  # (1, 2, 2, 4): d_k = 4
    expected = ((q @ keys.transpose(-1, -2))[..., :2] * factor).softmax(-1)
    torch.testing.assert_close(weights[..., :2], expected)


def test_the_switch_reaches_every_attention_and_changes_the_model():
    scaled, unscaled = tiny_model(scale_attention=True), tiny_model(scale_attention=False)
    unscaled.load_state_dict(scaled.state_dict())
    layers = [*unscaled.encoder_layers, *unscaled.decoder_layers]
    attentions = [m for layer in layers for m in layer.children() if hasattr(m, "scale")]
    assert len(attentions) == 2 + 2 * 2 and all(m.scale == 1.0 for m in attentions)
    assert all(m.scale is None for m in scaled.modules() if hasattr(m, "scale") and hasattr(m, "heads"))
    src, src_lengths, tgt_in, _ = padded_batch()
    with torch.no_grad():
        assert not torch.allclose(scaled(src, src_lengths, tgt_in), unscaled(src, src_lengths, tgt_in))


# ------------------------------------------------------------------------------------------------------------
# Attention maps


@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_attention_maps_are_distributions_over_what_each_query_may_see(positions, scale):
    model = tiny_model(positions, scale)
    src, src_lengths, tgt_in, tgt_lengths = padded_batch()
    maps = model.attention_maps(src, src_lengths, tgt_in)
    (B, S), T, H = src.shape, tgt_in.size(1), 2
    assert [m.shape for m in maps.encoder] == [(B, H, S, S)] * 2
    assert [m.shape for m in maps.decoder] == [(B, H, T, T)] * 2
    assert [m.shape for m in maps.cross] == [(B, H, T, S)] * 2
    assert all(m.dtype == torch.float32 for m in maps.encoder + maps.decoder + maps.cross)
    padded_source = src.eq(PAD_ID)[:, None, None, :]  # (B, 1, 1, S)
    for m in maps.encoder + maps.cross:
        assert torch.all(m.masked_select(padded_source) == 0)
    above_diagonal = torch.ones(T, T, dtype=torch.bool).triu(1)
    for m in maps.decoder:
        assert torch.all(m[..., above_diagonal] == 0)
    for row in range(B):
        s, t = int(src_lengths[row]), int(tgt_lengths[row])
        for m in maps.encoder:
            torch.testing.assert_close(m[row, :, :s].sum(-1), torch.ones(H, s))
        for m in maps.decoder + maps.cross:
            torch.testing.assert_close(m[row, :, :t].sum(-1), torch.ones(H, t))


@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_the_maps_pass_has_the_hidden_states_of_forward(positions, scale):
    model = tiny_model(positions, scale)
    src, src_lengths, tgt_in, _ = padded_batch()
    maps = AttentionMaps()
    with_maps = model(src, src_lengths, tgt_in, maps)
    torch.testing.assert_close(with_maps, model(src, src_lengths, tgt_in), atol=1e-5, rtol=1e-5)
    assert len(maps.encoder) == len(maps.decoder) == len(maps.cross) == 2


@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_the_first_maps_are_the_softmax_of_the_scaled_masked_scores(positions, scale):
    """Layer 0's maps recomputed from the model's own projections: softmax(q . k * s) with s = 1/sqrt(d_k)
    (or 1), rotary positions applied to q and k, padding and the future hidden."""
    model = tiny_model(positions, scale)
    src, src_lengths, tgt_in, _ = padded_batch()
    maps = model.attention_maps(src, src_lengths, tgt_in)
    factor = 8**-0.5 if scale else 1.0  # d_k = 16 / 2 heads
    for layer, ids, embedding, key_hidden, got in (
        (model.encoder_layers[0], src, model.src_embed, src.eq(PAD_ID), maps.encoder[0]),
        (model.decoder_layers[0], tgt_in, model.tgt_embed, None, maps.decoder[0]),
    ):
        norm = layer.res_attn if hasattr(layer, "res_attn") else layer.res_self
        x = model._embed(embedding, ids, 0)
        q, k, _ = layer.self_attn.project(norm.before(x), model._rotation(0, ids.size(1)))
        scores = (q @ k.transpose(-1, -2)) * factor
        if key_hidden is None:  # the decoder: key j > query i is the future
            key_hidden = torch.ones(ids.size(1), ids.size(1), dtype=torch.bool).triu(1)
        else:
            key_hidden = key_hidden[:, None, None, :]
        torch.testing.assert_close(got, scores.masked_fill(key_hidden, -math.inf).softmax(-1))


@pytest.mark.parametrize("alignment_layer", [0, -1])
@pytest.mark.parametrize(("positions", "scale"), VARIANTS, ids=VARIANT_IDS)
@torch.no_grad()
def test_the_alignment_layer_map_is_the_attention_that_decoding_exposes(positions, scale, alignment_layer):
    model = tiny_model(positions, scale, alignment_layer=alignment_layer)
    src, src_lengths, tgt_in, _ = padded_batch()
    maps = model.attention_maps(src, src_lengths, tgt_in)
    _, attention, _ = run_steps(model, src, src_lengths, tgt_in)
    expected = maps.cross[model.alignment_layer].mean(dim=1)  # (B, T, S)
    torch.testing.assert_close(attention, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_training_and_decoding_compute_no_attention_weights(monkeypatch):
    """Only `attention_maps` spells the weights out; forward runs SDPA, and a decoding step computes only the
    alignment layer's cross-attention weights (the `state.attention` it exposes)."""
    calls = []
    original = transformer_attention.attend_with_weights

    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(transformer_attention, "attend_with_weights", counted)
    model = tiny_model(Positions.rotary)
    src, src_lengths, tgt_in, _ = padded_batch()
    model(src, src_lengths, tgt_in)
    assert calls == []
    state = model.start(model.encode(src, src_lengths))
    model.step(tgt_in[:, 0], state)
    assert len(calls) == 1  # the alignment layer's cross-attention, as before
    model.attention_maps(src, src_lengths, tgt_in)
    assert len(calls) == 1 + 2 + 2 + 2  # encoder, decoder self and cross, per layer


@pytest.mark.parametrize("positions", POSITIONS)
def test_sequences_beyond_max_positions_are_refused(positions):
    model = tiny_model(positions, max_positions=4)
    with pytest.raises(ValueError, match="max_positions=4"):
        model.encode(*pad_sources([[5, 6, 7, 8]]))  # 5 tokens with the EOS
