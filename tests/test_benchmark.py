"""The benchmark: its quick mode end to end at a tiny size, and the pieces its numbers rest on."""

from __future__ import annotations

import ast
import copy
import json
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nmt.benchmark
from nmt.benchmark import settings as bench_settings
from nmt.benchmark.ablations import explicit_attention
from nmt.benchmark.decoding import decode
from nmt.benchmark.inputs import bench_model_config, random_batch
from nmt.benchmark.padding import measure_padding, synthetic_pairs
from nmt.benchmark.settings import BenchSettings
from nmt.benchmark.timing import Timing, bf16_peak_flops
from nmt.benchmark.training import count_training_flops, training_setup
from nmt.benchmark.variants import (
    ContextEveryStepRNN,
    ReorderEverything,
    StepLoopRNNSearch,
    TanhRNNSearch,
    TransformerWithOneQuerySDPA,
    TransformerWithoutCache,
    marian_available,
)
from nmt.models import ARCHITECTURES, build_model, train_config
from nmt.models.transformer import attend_mask
from nmt.training.schedules import LRState, learning_rate
from nmt.training.update import Updater, adamw, teacher_forced_logits

TINY = {"rnn": "tiny", "rnnsearch": "tiny", "transformer": "tiny"}


def tiny_settings(device: str = "cpu") -> BenchSettings:
    """The quick mode's structure at a size that runs in seconds."""
    return BenchSettings(
        device=device,
        quick=True,
        vocab_size=64,
        source_len=6,
        target_len=6,
        small_presets=dict(TINY),
        paper_presets={"transformer": "small"},
        train_sentences=4,
        paper_train_sentences=2,
        train_repeats=2,
        paper_train_repeats=2,
        decode_sentences=3,
        decode_repeats=2,
        one_at_a_time_sentences=2,
        synthetic_pairs=300,
        padding_budgets=(256,),
    )


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_timing(timing: dict, repeats: int) -> None:
    assert len(timing["runs_s"]) == repeats
    assert all(positive(t) for t in timing["runs_s"])
    assert timing["min_s"] <= timing["median_s"] <= timing["max_s"]


@pytest.mark.slow
def test_quick_mode_writes_measured_numbers(tmp_path, monkeypatch, one_thread):
    from typer.testing import CliRunner

    from nmt.cli.bench import app

    monkeypatch.setattr(bench_settings, "quick_settings", tiny_settings)
    out = tmp_path / "bench.json"
    argv = ["--quick", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["cli/bench.py", *argv])
    result = CliRunner().invoke(app, argv, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Training" in result.stdout and "Padding" in result.stdout
    report = json.loads(out.read_text())

    assert report["command"] == "python -m nmt.cli.bench --quick --out " + str(out)
    assert report["mode"] == "quick" and positive(report["seconds"])
    assert report["machine"]["torch_threads"] == torch.get_num_threads()
    assert report["machine"]["cpu"] and report["machine"]["device"] == "cpu"
    assert len(report["machine"]["load_average_start"]) == 3
    assert report["versions"]["torch"] == torch.__version__ and report["versions"]["python"]

    trained = {(r["model"], r["preset"]) for r in report["training"]}
    assert {(arch, "tiny") for arch in TINY} <= trained
    for r in report["training"]:
        check_timing(r["seconds"], 2)
        assert r["target_tokens"] == r["sentences"] * r["target_len"]
        for key in ("parameters", "tokens_per_s", "model_flops", "achieved_tflops", "peak_memory_mb"):
            assert positive(r[key]), key
        assert r["tokens_per_s_min"] <= r["tokens_per_s"] <= r["tokens_per_s_max"]
        assert r["mfu"] is None  # no peak for a CPU

    searches = {(r["model"], r["beam_size"]) for r in report["decoding"]}
    assert {(arch, b) for arch in TINY for b in (1, 5)} <= searches
    for r in report["decoding"]:
        check_timing(r["seconds"], 2)
        for key in (
            "sentences_per_s",
            "tokens_per_s",
            "generated_tokens",
            "mean_output_len",
            "peak_memory_mb",
        ):
            assert positive(r[key]), key
        assert r["mean_output_len"] <= r["max_output_len"] + 1

    for c in report["references"] + report["ablations"]:
        assert positive(c["speedup"]) and positive(c["candidate_s"]["median_s"])
        assert c["speedup"] == pytest.approx(c["baseline_s"]["median_s"] / c["candidate_s"]["median_s"])
    names = [c["name"] for c in report["ablations"]]
    assert any("key/value cache" in n for n in names) and any("batched" in n for n in names)
    assert any("SDPA" in n for n in names)
    cache = next(c for c in report["ablations"] if "key/value cache" in c["name"])
    assert cache["agreement"] == 1.0  # decoding with and without the cache finds the same outputs
    source_side = [c for c in report["ablations"] if "source side left in place" in c["name"]]
    assert len(source_side) == len(TINY) and all(c["agreement"] == 1.0 for c in source_side)
    assert any("sigmoid form" in n for n in names) and any("one-query attention" in n for n in names)
    context_once = next(c for c in report["ablations"] if "c projected once" in c["name"])
    assert context_once["agreement"] >= 0.9  # the same function, rounded differently: a near-tie may flip
    assert any("step-loop" in c["baseline"] for c in report["references"])
    if not marian_available():
        assert any("MarianMTModel reference was skipped" in note for note in report["notes"])
    else:
        assert any("Marian" in c["baseline"] for c in report["references"])

    assert report["padding"] and report["padding"][0]["corpus"].startswith("synthetic")
    for p in report["padding"]:
        assert 0 <= p["source_padding"] < 1 and 0 <= p["target_padding"] < 1 and 0 <= p["padding"] < 1
        assert positive(p["batches"]) and positive(p["pairs"])


def test_a_missing_data_directory_fails_before_measuring(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from nmt.cli.bench import app

    monkeypatch.setattr(bench_settings, "quick_settings", tiny_settings)
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(app, ["--quick", "--out", str(out), "--data", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "data directory not found" in result.output
    assert not out.exists()


def test_timing_statistics():
    timing = Timing.of([0.3, 0.1, 0.2, 0.5])
    assert (timing.min_s, timing.max_s) == (0.1, 0.5)
    assert timing.median_s == pytest.approx(0.25)


def test_bf16_peaks_come_from_the_table():
    assert bf16_peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert bf16_peak_flops("NVIDIA H100 PCIe") < bf16_peak_flops("NVIDIA H100 80GB HBM3")
    assert bf16_peak_flops("NVIDIA H200") == 989e12
    assert bf16_peak_flops("Some Future GPU") is None


def test_synthetic_padding_is_under_ten_percent():
    pairs = synthetic_pairs(2000, seed=1)
    result = measure_padding("synthetic", "words", pairs, batch_tokens=2048, seed=1)
    assert result.pairs == 2000 and result.batches > 1
    assert result.padding < 0.10
    assert min(result.source_padding, result.target_padding) <= result.padding
    assert result.padding <= max(result.source_padding, result.target_padding)


@pytest.mark.parametrize("causal", [False, True])
def test_explicit_attention_matches_sdpa(causal):
    q, k, v = (torch.randn(3, 2, 5, 4) for _ in range(3))
    pad_mask = torch.zeros(3, 5, dtype=torch.bool)
    pad_mask[0, 3:] = True
    mask = None if causal else attend_mask(pad_mask)
    expected = F.scaled_dot_product_attention(q, k, v, mask, is_causal=causal)
    torch.testing.assert_close(explicit_attention(q, k, v, mask, causal), expected)


def test_step_loop_rnnsearch_steps_reproduce_forward():
    config = bench_model_config("rnnsearch", "tiny", 40)
    model = StepLoopRNNSearch(config).eval()
    batch = random_batch(3, 5, 4, 40, torch.Generator().manual_seed(0))
    batch.src[0, 3:] = torch.tensor([3, 0])  # a shorter sentence: ids + EOS + PAD
    batch.src_lengths[0] = 4
    logits = model(batch.src, batch.src_lengths, batch.tgt_in).log_softmax(-1)  # (B, T, V)
    state = model.start(model.encode(batch.src, batch.src_lengths))
    for t in range(batch.tgt_in.size(1)):
        log_probs, state = model.step(batch.tgt_in[:, t], state)
        torch.testing.assert_close(log_probs, logits[:, t])
    assert state.attention[0, 4] == 0  # no attention on padding


def test_transformer_without_cache_steps_like_the_cached_one():
    model = build_model("transformer", bench_model_config("transformer", "tiny", 40)).eval()
    uncached = TransformerWithoutCache(model)
    batch = random_batch(2, 5, 4, 40, torch.Generator().manual_seed(0))
    with torch.no_grad():
        cached_state = model.start(model.encode(batch.src, batch.src_lengths))
        state = uncached.start(uncached.encode(batch.src, batch.src_lengths))
        for t in range(batch.tgt_in.size(1)):
            expected, cached_state = model.step(batch.tgt_in[:, t], cached_state)
            log_probs, state = uncached.step(batch.tgt_in[:, t], state)
            torch.testing.assert_close(log_probs, expected)


@pytest.mark.parametrize("arch", ["rnnsearch", "transformer"])
def test_training_flops_are_linear_in_the_batch(arch, one_thread):
    """The benchmark counts FLOPs on 2 sentences and scales: that needs them linear in the batch size."""
    model = build_model(arch, bench_model_config(arch, "tiny", 40))
    generator = torch.Generator().manual_seed(0)

    def flops(sentences: int) -> int:
        batch = random_batch(sentences, 6, 5, 40, generator)
        return count_training_flops(model, teacher_forced_logits, batch, label_smoothing=0.1)

    two = flops(2)
    assert two > 0
    assert flops(6) == 3 * two


def test_presets_come_from_the_registry():
    assert bench_settings.small_presets() == {arch: "small" for arch in ARCHITECTURES}
    paper = bench_settings.paper_presets()
    assert list(paper) == list(ARCHITECTURES)
    for arch, preset in paper.items():
        assert preset in ARCHITECTURES[arch].presets
    settings = BenchSettings()
    assert (settings.small_presets, settings.paper_presets) == (bench_settings.small_presets(), paper)


def test_a_training_setup_updates_as_the_trainer_does(one_thread):
    """`TrainingSetup.update` is the trainer's `Updater` at the schedule's learning rate, nothing else."""
    config = train_config("transformer", "tiny")
    batch = random_batch(3, 5, 4, 40, torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = build_model("transformer", bench_model_config("transformer", "tiny", 40))
    twin = copy.deepcopy(model)
    cpu = torch.device("cpu")
    setup = training_setup(
        "transformer",
        "nmt transformer",
        "tiny",
        model,
        teacher_forced_logits,
        config,
        batch,
        cpu,
        False,
        False,
        False,
    )
    updater = Updater(twin.train(), adamw(twin, config, False), config.label_smoothing, config.clip_norm)
    for step in (1, 2, 3):
        setup.update()
        updater.accumulate([batch], batch.num_tokens, load=lambda b: b)
        updater.apply(learning_rate(config, step, LRState(plateau_lr=config.lr)))
        assert setup.updater.optimizer.param_groups[0]["lr"] == updater.optimizer.param_groups[0]["lr"]
    assert setup.updates == 3
    for ours, theirs in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def _stepped_log_probs(model, batch) -> list[torch.Tensor]:
    with torch.no_grad():
        state = model.start(model.encode(batch.src, batch.src_lengths))
        found = []
        for t in range(batch.tgt_in.size(1)):
            log_probs, state = model.step(batch.tgt_in[:, t], state)
            found.append(log_probs)
    return found


@pytest.mark.parametrize(
    ("arch", "variant"),
    [
        ("transformer", TransformerWithOneQuerySDPA),
        ("rnnsearch", TanhRNNSearch),
        ("rnn", ContextEveryStepRNN),
    ],
)
def test_an_ablation_variant_steps_like_its_model(arch, variant):
    """Each variant computes what the model computes, another way: with the same weights, the same steps."""
    config = bench_model_config(arch, "tiny", 40)
    model = build_model(arch, config).eval()
    other = variant(config).eval()
    other.load_state_dict(model.state_dict())
    batch = random_batch(2, 5, 4, 40, torch.Generator().manual_seed(0))
    batch.src[0, 3:] = torch.tensor([3, 0])  # a shorter sentence: ids + EOS + PAD
    batch.src_lengths[0] = 4
    for expected, found in zip(
        _stepped_log_probs(model, batch), _stepped_log_probs(other, batch), strict=True
    ):
        torch.testing.assert_close(found, expected)


def test_reorder_everything_keeps_the_outputs():
    model = build_model("rnnsearch", bench_model_config("rnnsearch", "tiny", 40)).eval()
    batch = random_batch(3, 5, 4, 40, torch.Generator().manual_seed(0))
    ours = decode(model, batch.src, batch.src_lengths, beam_size=3)
    everything = decode(ReorderEverything(model), batch.src, batch.src_lengths, beam_size=3)
    assert [h.tokens for h in ours] == [h.tokens for h in everything]


def test_each_benchmark_module_imports_only_those_listed_before_it():
    """The order of nmt/benchmark/__init__.py's list is the import order: no module reaches up or sideways."""
    package = Path(nmt.benchmark.__file__).parent
    order = [
        "settings",
        "timing",
        "report",
        "inputs",
        "variants",
        "training",
        "decoding",
        "padding",
        "comparisons",
        "session",
        "references",
        "ablations",
        "run",
        "prepare_scaling",
    ]
    assert sorted(order) == sorted(p.stem for p in package.glob("*.py") if p.stem != "__init__")
    for index, name in enumerate(order):
        tree = ast.parse((package / f"{name}.py").read_text())
        imported = {
            node.module.removeprefix("nmt.benchmark.")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nmt.benchmark.")
        }
        assert imported <= set(order[:index]), name
