"""int8 decoding on the CPU (nmt/models/quantization.py): the converted models keep the contract, stay close
to float32, and `nmt translate --int8` works end to end.

How close: every int8 product rounds its input to 1/127 of that tensor's largest magnitude and each weight to
1/127 of its row's. The tests compare next-token distributions by their total variation distance (half the
L1 distance between the two probability vectors, 0 for the same distribution, 1 for disjoint ones), averaged
over the real target positions. Measured on the perturbed tiny models of all three architectures over eight
seeds, int8 moved it from float32 by at most 0.04, and int8 stepping from int8 teacher forcing by at most 0.03
(they quantize different tensors: one position, or all positions at once); a real bug moves it far more
(stepping with another sentence's state: at least 0.22; another model's weights: at least 0.55). `TV_BOUND`
keeps a margin of two over the first and stays well under the second.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import run_nmt
from model_checks import (
    assert_beam_one_equals_greedy,
    padded_batch,
    perturbed_model,
    run_steps,
)
from torch import nn

from nmt.decoding.loading import load_translator
from nmt.errors import UserError
from nmt.models import Ensemble
from nmt.models.ensemble import mean_probabilities
from nmt.models.quantization import (
    FLOAT32_MODULES,
    INT8_TYPES,
    MIN_OUTPUTS,
    int8_device,
    is_int8,
    quantize_int8,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ["rnn", "rnnsearch", "transformer"]
TV_BOUND = 0.08  # mean total variation distance between next-token distributions (module docstring)


def converted(arch: str, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(float32 model, its int8 copy) of a perturbed tiny `arch`."""
    model = perturbed_model(arch, seed)
    return model, quantize_int8(copy.deepcopy(model))


def mean_total_variation(a: torch.Tensor, b: torch.Tensor, real: torch.Tensor) -> float:
    """Mean over the `real` positions (B, T) of the total variation between log-prob rows a, b (B, T, V)."""
    return float((0.5 * (a.exp() - b.exp()).abs().sum(-1))[real].mean())


@pytest.mark.parametrize("arch", ARCHS)
def test_every_weight_product_is_int8_except_the_documented_ones(arch):
    model, int8 = converted(arch)
    kept = {id(getattr(int8, name)) for name in FLOAT32_MODULES.get(type(int8), ())}
    floats = [
        name
        for name, module in int8.named_modules()
        if type(module) in (nn.Linear, nn.GRU) and id(module) not in kept
        if not (type(module) is nn.Linear and module.out_features < MIN_OUTPUTS)
    ]
    assert floats == []
    quantized = [module for module in int8.modules() if isinstance(module, INT8_TYPES)]
    linears = [m for m in quantized if isinstance(m, INT8_TYPES[0])]
    assert linears and all(m.weight().dtype == torch.qint8 for m in linears)
    if arch != "transformer":  # the encoder's GRU
        assert any(isinstance(m, INT8_TYPES[1]) for m in quantized)
    assert is_int8(int8) and not is_int8(model)
    if arch == "transformer":  # the tied output projection has its own int8 copy; lookups stay float32
        assert isinstance(int8.project, INT8_TYPES[0]) and model.project is None
        assert type(int8.tgt_embed) is nn.Embedding
    if arch == "rnn":  # its decoder GRU is read in slices by `step`, so it stays float32
        assert type(int8.decoder) is nn.GRU


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_int8_stepping_reproduces_int8_teacher_forcing(arch):
    _, int8 = converted(arch)
    src, src_lengths, tgt_in, _ = padded_batch()
    stepped, _, _ = run_steps(int8, src, src_lengths, tgt_in)
    forced = int8(src, src_lengths, tgt_in).float().log_softmax(-1)
    assert stepped.dtype == torch.float32
    assert mean_total_variation(stepped, forced, tgt_in.ne(0)) < TV_BOUND


@pytest.mark.parametrize("arch", ARCHS)
@torch.no_grad()
def test_int8_distributions_are_close_to_float32(arch):
    model, int8 = converted(arch)
    src, src_lengths, tgt_in, _ = padded_batch()
    ours, ours_attention, _ = run_steps(int8, src, src_lengths, tgt_in)
    theirs, theirs_attention, _ = run_steps(model, src, src_lengths, tgt_in)
    real = tgt_in.ne(0)
    assert mean_total_variation(ours, theirs, real) < TV_BOUND
    if model.has_attention:  # attention rows are distributions too
        distance = 0.5 * (ours_attention - theirs_attention).abs().sum(-1)  # (B, T)
        assert float(distance[real].mean()) < TV_BOUND


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_one_equals_greedy_under_int8(arch):
    assert_beam_one_equals_greedy(converted(arch)[1])


@torch.no_grad()
def test_an_ensemble_of_int8_members_averages_their_probabilities():
    members = [converted(arch, seed)[1] for seed, arch in enumerate(ARCHS)]
    ensemble = Ensemble(members).eval()
    src, src_lengths, tgt_in, _ = padded_batch()
    together, _, _ = run_steps(ensemble, src, src_lengths, tgt_in)
    alone = [run_steps(member, src, src_lengths, tgt_in)[0] for member in members]
    torch.testing.assert_close(together, mean_probabilities(alone))
    assert_beam_one_equals_greedy(ensemble)
    # Converting an ensemble converts each member.
    floats = Ensemble([perturbed_model(arch, seed) for seed, arch in enumerate(ARCHS)]).eval()
    assert is_int8(quantize_int8(floats))


def test_load_translator_converts_every_member(tiny_checkpoint):
    paths = [tiny_checkpoint("rnnsearch"), tiny_checkpoint("transformer")]
    model, _ = load_translator(paths, torch.device("cpu"), int8=True)
    assert isinstance(model, Ensemble) and is_int8(model)
    single, _ = load_translator(paths[0], torch.device("cpu"), int8=True)
    assert is_int8(single)


def test_int8_refuses_any_device_but_the_cpu(tiny_checkpoint):
    with pytest.raises(UserError, match="CPU only"):
        quantize_int8(perturbed_model("rnn", 0).to("meta"))
    with pytest.raises(UserError, match="CPU only"):
        load_translator(tiny_checkpoint("rnn"), torch.device("meta"), int8=True)
    assert int8_device("auto") == int8_device("cpu") == "cpu"
    with pytest.raises(UserError, match="--int8"):
        int8_device("cuda")


@pytest.mark.parametrize("arch", ARCHS)
def test_translate_and_score_with_int8_end_to_end(arch, tiny_checkpoint, tmp_path):
    lines = ["alba bero cima", "", "bero"]
    source = tmp_path / "in.txt"
    source.write_text("".join(line + "\n" for line in lines))
    out = tmp_path / "out.txt"
    options = ["-c", tiny_checkpoint(arch), "--device", "cpu", "--int8"]
    result = run_nmt("translate", *options, "-i", source, "-o", out, "--beam", "3")
    assert result.exit_code == 0, result.stderr
    translations = out.read_text().split("\n")[:-1]
    assert len(translations) == len(lines) and translations[1] == ""
    result = run_nmt("score", *options, "-s", source, "-t", out)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(lines)
    assert all(float(line) <= 0 for line in result.stdout.splitlines())


def test_the_benchmark_times_int8_beside_float32():
    from nmt.benchmark import run
    from nmt.benchmark.session import BenchSession
    from nmt.benchmark.settings import BenchSettings

    # RNNsearch at its "small" slot and the Transformer at its "paper" one, both tiny.
    small, paper = {"rnnsearch": "tiny"}, {"transformer": "tiny"}
    settings = BenchSettings(
        vocab_size=64,
        source_len=4,
        target_len=4,
        small_presets=small,
        paper_presets=paper,
        decode_sentences=2,
        decode_warmup=0,
        decode_repeats=2,
    )
    session = BenchSession(settings)
    run._decode_int8(session)
    rows = {(r.model, r.preset, r.beam_size, r.precision) for r in session.decoding}
    for arch, preset in [*small.items(), *paper.items()]:
        for beam_size in (1, settings.beam_size):
            assert {(arch, preset, beam_size, p) for p in ("float32", "int8")} <= rows
    assert all(r.peak_memory_mb > 0 and len(r.seconds.runs_s) == 2 for r in session.decoding)
    compared = [c for c in session.ablations if c.name.endswith("int8 weights")]
    assert len(compared) == 2 * 2
    assert all(c.candidate == "nmt int8" and c.agreement is not None for c in compared)
