"""The recurrent models as their papers write them, and the earlier forms beside them.

- The rnn model's candidate state reads c inside the reset gate (Cho et al. 2014, App. A.2),
  tanh(W e + r * (U h + C c)); `context_in_reset: false` puts it beside the gate, tanh(W e + C c + r * U h),
  which is what a GRU fed [e; c] computes.
- RNNsearch's deep output reads s_{i-1} (Bahdanau et al. 2014, App. A.2.2); `output_state: new` reads s_i.

Each form is checked against its equation by hand, and for the contract every model keeps (step == forward,
beam 1 == greedy, batched == alone). Checkpoints saved before the choice existed load as the form they were
trained with."""

from __future__ import annotations

import pytest
import torch
from model_checks import (
    assert_batched_equals_one_at_a_time,
    assert_beam_one_equals_greedy,
    padded_batch,
    perturbed_model,
    run_steps,
    same_outputs,
    save_and_load,
    small_tokenizer,
)

from nmt.models import model_config
from nmt.models.configs import OutputState
from nmt.models.registry import architecture

pytestmark = pytest.mark.usefixtures("one_thread")

# (arch, config key, the paper's value, the earlier value)
FORMS = [
    ("rnn", "context_in_reset", True, False),
    ("rnnsearch", "output_state", OutputState.previous, OutputState.new),
]
VARIANTS = [(arch, key, value) for arch, key, paper, earlier in FORMS for value in (paper, earlier)]


def make_model(arch: str, seed: int = 0, **overrides):
    return perturbed_model(arch, seed, **overrides)


def sigmoid(x):
    return torch.sigmoid(x)


# ------------------------------------------------------------------------------------------------------------
# Each form is its equation


@pytest.mark.parametrize("inside", [True, False])
@torch.no_grad()
def test_rnn_decoder_step_is_cho_app_a2_by_hand(inside):
    model = make_model("rnn", context_in_reset=inside)
    E, H = model.config.embed_dim, model.config.hidden_dim
    src, src_lengths, tgt_in, _ = padded_batch()
    c = model.encode(src, src_lengths).summary  # (B, H)
    h = torch.tanh(model.init_state(c))  # h'_0 = tanh(V' c)
    e = model.tgt_embed(tgt_in[:, 0])  # e(y_0)
    weights = model.decoder.weight_ih_l0
    W, C = weights[:, :E], weights[:, E:]  # the word's and c's columns, rows (reset, update, candidate)
    U, b_i, b_h = model.decoder.weight_hh_l0, model.decoder.bias_ih_l0, model.decoder.bias_hh_l0

    def part(matrix_or_bias, gate):  # gate 0: reset, 1: update, 2: candidate
        return matrix_or_bias[gate * H : (gate + 1) * H]

    def product(gate, matrix, x):
        return x @ part(matrix, gate).T

    r = sigmoid(product(0, W, e) + product(0, C, c) + part(b_i, 0) + product(0, U, h) + part(b_h, 0))
    z = sigmoid(product(1, W, e) + product(1, C, c) + part(b_i, 1) + product(1, U, h) + part(b_h, 1))
    if inside:  # tanh(W e + r * (U h + C c)), with the biases where torch's GRU keeps them
        candidate = torch.tanh(
            product(2, W, e) + part(b_i, 2) + r * (product(2, U, h) + part(b_h, 2) + product(2, C, c))
        )
    else:  # tanh(W e + C c + r * U h)
        candidate = torch.tanh(
            product(2, W, e) + product(2, C, c) + part(b_i, 2) + r * (product(2, U, h) + part(b_h, 2))
        )
    expected = z * h + (1 - z) * candidate

    _, state = model.step(tgt_in[:, 0], model.start(model.encode(src, src_lengths)))
    torch.testing.assert_close(state.hidden, expected, rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_rnn_with_c_beside_the_reset_gate_is_torch_gru_over_e_and_c():
    """The earlier form is exactly a GRU whose input is [e(y_{t-1}); c]: the two decoder paths of
    `decoder_states` agree with `torch.nn.GRU` itself."""
    model = make_model("rnn", context_in_reset=False)
    src, src_lengths, tgt_in, _ = padded_batch()
    state = model.start(model.encode(src, src_lengths))
    embedded = model.tgt_embed(tgt_in)
    inputs = torch.cat([embedded, state.summary[:, None].expand(-1, tgt_in.size(1), -1)], -1)
    expected, _ = model.decoder(inputs, state.hidden[None])
    stepped = run_steps(model, src, src_lengths, tgt_in)[2]  # the last state
    torch.testing.assert_close(model.decoder_states(embedded, state), expected)
    torch.testing.assert_close(stepped.hidden, expected[:, -1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", list(OutputState))
@torch.no_grad()
def test_rnnsearch_deep_output_reads_the_state_its_form_names(form):
    """logits_i = W_o maxout(U_o s + V_o E y_{i-1} + C_o c_i) with s = s_{i-1} (App. A.2.2) or s_i."""
    model = make_model("rnnsearch", output_state=form)
    src, src_lengths, tgt_in, _ = padded_batch()
    state = model.start(model.encode(src, src_lengths))
    for i in range(3):
        log_probs, after = model.step(tgt_in[:, i], state)
        context = torch.bmm(after.attention[:, None, :], state.annotations)[:, 0]  # c_i = sum_j alpha_ij h_j
        read = state.hidden if form is OutputState.previous else after.hidden
        expected = model.output(read, model.tgt_embed(tgt_in[:, i]), context).log_softmax(-1)
        torch.testing.assert_close(log_probs, expected, rtol=1e-5, atol=1e-5)
        state = after


@torch.no_grad()
def test_the_first_word_of_rnnsearch_paper_form_reads_s0():
    """With s_{i-1}, p(y_1) reads s_0 = tanh(W_s backward-h_1): changing the decoder GRU's candidate weights
    (which only make s_1) leaves the first distribution alone; the s_i form sees the change."""
    for form, changes in ((OutputState.previous, False), (OutputState.new, True)):
        model = make_model("rnnsearch", output_state=form)
        src, src_lengths, tgt_in, _ = padded_batch()
        before = model(src, src_lengths, tgt_in)[:, 0]
        model.from_prev.weight.add_(1.0)  # W, W_z, W_r on E y_{i-1}: used by the GRU update only
        after = model(src, src_lengths, tgt_in)[:, 0]
        assert (not torch.equal(before, after)) is changes


@pytest.mark.parametrize(("arch", "key", "paper", "earlier"), FORMS)
@torch.no_grad()
def test_the_two_forms_compute_different_functions(arch, key, paper, earlier):
    src, src_lengths, tgt_in, _ = padded_batch()
    a = make_model(arch, **{key: paper})
    b = make_model(arch, **{key: earlier})
    b.load_state_dict(a.state_dict())  # the same weights: only the equation differs
    assert not torch.allclose(a(src, src_lengths, tgt_in), b(src, src_lengths, tgt_in), atol=1e-3)


# ------------------------------------------------------------------------------------------------------------
# The contract, in both forms


@pytest.mark.parametrize(("arch", "key", "value"), VARIANTS)
@torch.no_grad()
def test_step_reproduces_forward(arch, key, value):
    model = make_model(arch, **{key: value})
    src, src_lengths, tgt_in, _ = padded_batch()
    expected = model(src, src_lengths, tgt_in).log_softmax(dim=-1)
    stepped, _, _ = run_steps(model, src, src_lengths, tgt_in)
    torch.testing.assert_close(stepped, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "key", "value"), VARIANTS)
def test_beam_one_equals_greedy(arch, key, value):
    assert_beam_one_equals_greedy(make_model(arch, **{key: value}))


@pytest.mark.parametrize(("arch", "key", "value"), VARIANTS)
def test_batched_equals_one_at_a_time(arch, key, value):
    assert_batched_equals_one_at_a_time(make_model(arch, **{key: value}))


@pytest.mark.parametrize(("arch", "key", "value"), VARIANTS)
def test_both_forms_learn(arch, key, value):
    """A few hundred updates on a copying task bring the loss well down in either form."""
    torch.manual_seed(0)
    model = make_model(arch, **{key: value}).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    src, src_lengths, tgt_in, tgt_lengths = padded_batch()
    tgt_out = torch.cat([tgt_in[:, 1:], torch.zeros_like(tgt_in[:, :1])], 1)
    losses = []
    for _ in range(150):
        logits = model(src, src_lengths, tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), tgt_out, ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


# ------------------------------------------------------------------------------------------------------------
# Presets and checkpoints


@pytest.mark.parametrize(("arch", "key", "paper", "earlier"), FORMS)
def test_the_paper_presets_use_the_papers_forms(arch, key, paper, earlier):
    preset = architecture(arch).paper_preset
    assert getattr(model_config(arch, preset), key) == paper


@pytest.fixture(scope="module")
def tokenizer():
    return small_tokenizer()


@pytest.mark.parametrize(("arch", "key", "value"), VARIANTS)
def test_checkpoint_round_trip_keeps_the_form(arch, key, value, tokenizer, tmp_path):
    vocab = tokenizer.vocab_size
    model = make_model(arch, src_vocab_size=vocab, tgt_vocab_size=vocab, **{key: value})
    loaded, restored = save_and_load(model, tokenizer, tmp_path / "model.pt")
    assert getattr(loaded.model_config, key) == value
    assert same_outputs(restored, model, tokenizer)


@pytest.mark.parametrize(("arch", "key", "paper", "earlier"), FORMS)
def test_a_checkpoint_saved_before_the_choice_loads_as_the_earlier_form(
    arch, key, paper, earlier, tokenizer, tmp_path
):
    vocab = tokenizer.vocab_size
    model = make_model(arch, src_vocab_size=vocab, tgt_vocab_size=vocab, **{key: earlier})

    def forget_the_form(payload):
        del payload["model_config"][key]

    loaded, restored = save_and_load(model, tokenizer, tmp_path / "old.pt", forget_the_form)
    assert getattr(loaded.model_config, key) == earlier
    assert same_outputs(restored, model, tokenizer)
