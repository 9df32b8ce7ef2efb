"""RNNsearch's six alignment models (nmt/models/scoring.py): each score is its equation, padding gets no
weight, decoding agrees with teacher forcing and with itself, checkpoints keep the form, and the default is
the model that checkpoints saved before the choice existed hold."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_checks import (
    assert_batched_equals_one_at_a_time,
    assert_beam_one_equals_greedy,
    padded_batch,
    run_steps,
    same_outputs,
    save_and_load,
    small_tokenizer,
)

from nmt.data.batching import pad_sources
from nmt.data.special import PAD_ID
from nmt.models import build_model, model_config
from nmt.models.configs import AttentionScore

FORMS = list(AttentionScore)
SRC_VOCAB, TGT_VOCAB = 23, 29
H, A = 3, 5  # the hand-checked model: decoder state 3, annotations 6, additive hidden size 5

pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(form: AttentionScore, perturb: bool = True, **overrides) -> torch.nn.Module:
    """A tiny RNNsearch scoring with `form`, in eval mode. With `perturb`, every weight is moved off its
    initial value (several forms start with uniform alignments), so that properties hold for a generic
    function."""
    values = {"src_vocab_size": SRC_VOCAB, "tgt_vocab_size": TGT_VOCAB, "dropout": 0.0, "attention": form}
    model = build_model("rnnsearch", model_config("rnnsearch", "tiny", {**values, **overrides}))
    if perturb:
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.2)
    return model.eval()


# ------------------------------------------------------------------------------------------------------------
# 1. Each score is its equation


def energy_by_hand(form: AttentionScore, model, s, h) -> float:
    """e_ij for one decoder state s (H,) and one annotation h (2H,), from the parameters by their meaning."""
    if form is AttentionScore.additive:  # v_a^T tanh(W_a s + U_a h), W_a = from_state's first A rows
        W_a, b_a = model.from_state.weight[:A], model.from_state.bias[:A]
        U_a, v_a = model.to_keys.weight, model.v_a.weight[0]
        return sum(float(v_a[k] * torch.tanh(W_a[k] @ s + b_a[k] + U_a[k] @ h)) for k in range(A))
    if form in (AttentionScore.dot, AttentionScore.scaled_dot):  # s^T (forward h + backward h) [/ sqrt(H)]
        dot = sum(float(s[k] * (h[k] + h[H + k])) for k in range(H))
        return dot / math.sqrt(H) if form is AttentionScore.scaled_dot else dot
    if form is AttentionScore.general:  # s^T W h
        W = model.to_keys.weight
        return sum(float(s[k] * W[k, m] * h[m]) for k in range(H) for m in range(2 * H))
    if form is AttentionScore.cosine:  # g s^T W h / (|s| |W h|)
        key = model.to_keys.weight @ h
        return float(model.scale * (s @ key) / (s.norm() * key.norm()))
    assert form is AttentionScore.linear  # w_s^T s + b + w_h^T h, w_s = from_state's first row
    w_s, b, w_h = model.from_state.weight[0], model.from_state.bias[0], model.to_keys.weight[0]
    return float(w_s @ s + b + w_h @ h)


def alignment_of(model, encoded, hidden):
    """alpha (B, S) of one decoder step from s_{i-1} = `hidden`, through the model's own step (`_cell`)."""
    prev_gates = model.from_prev(model.tgt_embed(torch.full((hidden.size(0),), 5)))
    _, _, alpha = model._cell(prev_gates, hidden, encoded.keys, encoded.annotations, encoded.pad_mask)
    return alpha


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_the_weights_are_the_softmax_of_the_equation(form):
    model = make_model(form, embed_dim=4, hidden_dim=H, attention_dim=A)
    src, src_lengths = pad_sources([[5, 6, 7], [8]])  # B = 2, S = 4: lengths 4 and 2
    encoded = model.encode(src, src_lengths)
    hidden = torch.randn(2, H)  # s_{i-1}
    alpha = alignment_of(model, encoded, hidden)
    energies = torch.tensor(
        [
            [energy_by_hand(form, model, hidden[b], encoded.annotations[b, j]) for j in range(4)]
            for b in range(2)
        ]
    )
    expected = torch.zeros(2, 4)
    for b, n in enumerate(src_lengths.tolist()):
        expected[b, :n] = energies[b, :n].softmax(dim=0)
    assert alpha.dtype == torch.float32
    torch.testing.assert_close(alpha, expected)
    query = model.scorer.query(model.from_state(hidden)[:, : model.scorer.query_dim], hidden)
    real = ~encoded.pad_mask
    torch.testing.assert_close(model.scorer.energies(model, query, encoded.keys)[real], energies[real])

    other_state = alignment_of(model, encoded, torch.randn(2, H) * 3)
    if form is AttentionScore.linear:  # its query term is the same for every j: the softmax removes it
        torch.testing.assert_close(other_state, alpha)
    else:
        assert not torch.allclose(other_state, alpha, atol=1e-4)


@pytest.mark.parametrize(
    ("form", "keys", "query_rows", "own"),
    [
        (AttentionScore.additive, (A, 2 * H), A, {"v_a": (1, A)}),
        (AttentionScore.dot, None, 0, {}),
        (AttentionScore.scaled_dot, None, 0, {}),
        (AttentionScore.general, (H, 2 * H), 0, {}),
        (AttentionScore.cosine, (H, 2 * H), 0, {"scale": ()}),
        (AttentionScore.linear, (1, 2 * H), 1, {}),
    ],
)
def test_each_form_has_only_its_own_parameters(form, keys, query_rows, own):
    """dot is parameter-free (no learned map to the decoder's size); the query side of each form is fused
    into the one product of s_{i-1} per step, which grows by exactly its rows."""
    model = make_model(form, perturb=False, embed_dim=4, hidden_dim=H, attention_dim=A)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    assert shapes.get("to_keys.weight") == keys
    assert shapes["from_state.weight"] == (query_rows + 3 * H, H)
    assert {name: shapes[name] for name in ("v_a.weight", "scale") if name in shapes} == {
        f"{name}.weight" if name == "v_a" else name: shape for name, shape in own.items()
    }


# ------------------------------------------------------------------------------------------------------------
# Initial values, and what learns from the first update


@pytest.mark.parametrize("form", FORMS)
def test_initial_alignments_and_first_gradients(form):
    """additive (v_a = 0), general (W = 0) and linear (w_h = 0) start uniform; additive's W_a, U_a wait for
    v_a to move, general's W and every other learned score parameter get a gradient at once, and linear's
    query weights w_s never do (the softmax removes them)."""
    model = make_model(form, perturb=False).train()
    src, src_lengths, tgt_in, _ = padded_batch()
    first = model.attention_maps(src, src_lengths, tgt_in).cross[0][:, 0, 0]  # (B, S) the first alignment
    if form in (AttentionScore.additive, AttentionScore.general, AttentionScore.linear):
        torch.testing.assert_close(first, (~src.eq(PAD_ID)).float() / src_lengths[:, None])
    else:
        assert first.max() - first[first > 0].min() > 1e-3
    if form is AttentionScore.cosine:
        assert model.scale.item() == pytest.approx(math.sqrt(model.config.hidden_dim))

    tgt = torch.cat([tgt_in[:, 1:], torch.full((3, 1), PAD_ID)], dim=1)
    logits = model(src, src_lengths, tgt_in)
    F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD_ID).backward()
    rows = model.scorer.query_dim
    query_grad = model.from_state.weight.grad[:rows]
    if form is AttentionScore.additive:
        assert model.v_a.weight.grad.abs().max() > 0
        assert (model.to_keys.weight.grad == 0).all() and (query_grad == 0).all()
    if form in (AttentionScore.general, AttentionScore.cosine, AttentionScore.linear):
        assert model.to_keys.weight.grad.abs().max() > 1e-6
    if form is AttentionScore.cosine:
        assert model.scale.grad.abs() > 0
    if form is AttentionScore.linear:
        scale = model.from_state.weight.grad[rows:].abs().max()
        assert query_grad.abs().max() < 1e-5 * scale
        assert model.from_state.bias.grad[:rows].abs().max() < 1e-5 * scale


# ------------------------------------------------------------------------------------------------------------
# 2. Padding, 3. step == forward


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_padding_gets_exactly_zero_weight(form):
    model = make_model(form)
    src, src_lengths, tgt_in, tgt_lengths = padded_batch()
    batched = model.attention_maps(src, src_lengths, tgt_in).cross[0][:, 0]  # (B, T, S)
    pad = src.eq(PAD_ID)[:, None, :].expand_as(batched)
    assert batched.dtype == torch.float32
    assert (batched[pad] == 0).all() and (batched[~pad] > 0).all()
    torch.testing.assert_close(batched.sum(-1), torch.ones(3, tgt_in.size(1)))
    for row in range(3):  # and the padding changes nothing on the real positions
        n, m = int(src_lengths[row]), int(tgt_lengths[row])
        alone = model.attention_maps(
            src[row : row + 1, :n], src_lengths[row : row + 1], tgt_in[row : row + 1, :m]
        )
        torch.testing.assert_close(batched[row, :m, :n], alone.cross[0][0, 0])


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_step_reproduces_forward(form):
    model = make_model(form)
    src, src_lengths, tgt_in, _ = padded_batch()
    expected = model(src, src_lengths, tgt_in).log_softmax(dim=-1)
    stepped, alignments, _ = run_steps(model, src, src_lengths, tgt_in)
    assert stepped.dtype == alignments.dtype == torch.float32
    torch.testing.assert_close(stepped, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alignments, model.attention_maps(src, src_lengths, tgt_in).cross[0][:, 0])


def check_under_autocast(form: AttentionScore, device: str, dtype: torch.dtype) -> None:
    """Steps under autocast give float32 log-probs and alignments, zero at padding, near the float32 ones."""
    model = make_model(form).to(device)
    src, src_lengths, tgt_in, _ = (t.to(device) for t in padded_batch())
    reference = model(src, src_lengths, tgt_in).log_softmax(-1)
    with torch.autocast(device, dtype=dtype):
        stepped, alignments, _ = run_steps(model, src, src_lengths, tgt_in)
    assert stepped.dtype == alignments.dtype == torch.float32
    assert (alignments[src.eq(PAD_ID)[:, None, :].expand_as(alignments)] == 0).all()
    assert (stepped - reference).abs().max() < 0.5  # bf16 keeps about 3 significant digits


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_step_under_bf16_autocast_stays_float32(form):
    check_under_autocast(form, "cpu", torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_step_on_cuda_under_autocast_stays_float32(form, dtype):
    check_under_autocast(form, "cuda", dtype)


# ------------------------------------------------------------------------------------------------------------
# 4. Search


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_beam_one_equals_greedy(form):
    assert_beam_one_equals_greedy(make_model(form))


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_batched_beam_search_equals_one_sentence_at_a_time(form):
    assert_batched_equals_one_at_a_time(make_model(form))


# ------------------------------------------------------------------------------------------------------------
# 5. Checkpoints


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()


@pytest.mark.parametrize("form", FORMS)
def test_checkpoint_round_trip_keeps_the_form(form, tokenizer, tmp_path):
    vocab = tokenizer.vocab_size
    model = make_model(form, src_vocab_size=vocab, tgt_vocab_size=vocab, share_embeddings=True)
    loaded, restored = save_and_load(model, tokenizer, tmp_path / "model.pt")
    assert loaded.model_config.attention is form
    assert loaded.model_config == model.config
    assert restored.scorer == model.scorer
    assert same_outputs(restored, model, tokenizer)


def test_a_checkpoint_saved_before_the_choice_loads_as_additive(tokenizer, tmp_path):
    vocab = tokenizer.vocab_size
    model = make_model(AttentionScore.additive, src_vocab_size=vocab, tgt_vocab_size=vocab)

    def forget_the_form(payload):
        del payload["model_config"]["attention"]

    loaded, restored = save_and_load(model, tokenizer, tmp_path / "old.pt", forget_the_form)
    assert loaded.model_config.attention is AttentionScore.additive
    assert same_outputs(restored, model, tokenizer)


def test_the_default_keeps_the_parameter_names_of_older_checkpoints():
    """The state-dict names (and shapes) of an RNNsearch saved before the scoring functions existed."""
    model = make_model(AttentionScore.additive, perturb=False, embed_dim=4, hidden_dim=H, attention_dim=A)
    shapes = {name: tuple(p.shape) for name, p in model.state_dict().items()}
    alignment_and_decoder = {
        "to_keys.weight": (A, 2 * H),
        "init_state.weight": (H, H),
        "init_state.bias": (H,),
        "from_prev.weight": (3 * H, 4),
        "from_prev.bias": (3 * H,),
        "from_context.weight": (3 * H, 2 * H),
        "from_state.weight": (A + 3 * H, H),
        "from_state.bias": (A + 3 * H,),
        "v_a.weight": (1, A),
    }
    assert {name: shapes[name] for name in alignment_and_decoder} == alignment_and_decoder
    others = {name for name in shapes if name not in alignment_and_decoder}
    assert all(name.startswith(("src_embed.", "tgt_embed.", "encoder.", "output.")) for name in others)


# ------------------------------------------------------------------------------------------------------------
# 6. The attention reads the encoder states


@pytest.mark.parametrize("form", FORMS)
@torch.no_grad()
def test_changing_one_source_token_changes_the_alignment(form):
    """Every form reads the source (linear too: w_h^T h_j depends on it), and only in its own sentence."""
    model = make_model(form)
    src, src_lengths, tgt_in, _ = padded_batch()
    before = model.attention_maps(src, src_lengths, tgt_in).cross[0][:, 0]  # (B, T, S)
    changed = src.clone()
    changed[1, 0] = 20  # sentence 1's first word
    after = model.attention_maps(changed, src_lengths, tgt_in).cross[0][:, 0]
    assert not torch.allclose(after[1, 0], before[1, 0], atol=1e-4)  # already at the first step
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
