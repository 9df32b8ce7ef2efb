"""What a benchmark run measures and at which sizes: `BenchSettings`, the quick and the full run, and the
presets they time, one of each size for every architecture in the registry (`nmt.models.ARCHITECTURES`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from nmt.models import ARCHITECTURES

#: The size every architecture is measured at in full (training, decoding, ablations).
SMALL_PRESET = "small"


def small_presets() -> dict[str, str]:
    """{architecture: the small preset} for every registered architecture, in the registry's order."""
    for name, architecture in ARCHITECTURES.items():
        if SMALL_PRESET not in architecture.presets:
            raise ValueError(f"architecture '{name}' has no '{SMALL_PRESET}' preset to benchmark")
    return {name: SMALL_PRESET for name in ARCHITECTURES}


def paper_presets() -> dict[str, str]:
    """{architecture: the preset of its paper's size} for every registered architecture, in the registry's
    order (RNNencdec and RNNsearch of Bahdanau et al. 2014, the Transformer base of Vaswani et al. 2017)."""
    return {name: architecture.paper_preset for name, architecture in ARCHITECTURES.items()}


@dataclass
class BenchSettings:
    """What to measure, and at which sizes."""

    device: str = "cpu"
    quick: bool = True
    vocab_size: int = 8000  # joint vocabulary, one shared embedding table (as `nmt prepare` makes by default)
    source_len: int = 32  # tokens per source sentence, EOS included
    target_len: int = 32  # target tokens per sentence (the loss counts all of them), EOS included
    # Training
    small_presets: dict[str, str] = field(default_factory=small_presets)  # architecture -> preset
    paper_presets: dict[str, str] = field(default_factory=paper_presets)
    train_sentences: int = 64  # batch size of the small presets
    paper_train_sentences: int = 16  # batch size of the paper presets
    train_warmup: int = 1
    train_repeats: int = 5
    paper_train_repeats: int = 3
    # Decoding (small presets, random weights)
    decode_sentences: int = 64
    decode_warmup: int = 1
    decode_repeats: int = 3
    beam_size: int = 5
    one_at_a_time_sentences: int = 8  # the unbatched beam search ablation decodes this many
    ablation_sentences: int = 16  # the key/value cache ablation decodes this many
    # Padding
    data_dirs: tuple[Path, ...] = ()
    padding_budgets: tuple[int, ...] = (2048, 4096, 8192)
    synthetic_pairs: int = 20_000
    # Comparisons
    references: bool = True  # MarianMTModel (when `transformers` is importable) and the step-loop RNNsearch
    ablations: bool = True
    compile_warmup: int = 3  # CUDA: steps run before timing a compiled model (the first ones compile)
    seed: int = 1


def quick_settings(device: str = "cpu") -> BenchSettings:
    """The `--quick` run: every small preset fully; the paper presets at batch 16 with 3 repeats."""
    return BenchSettings(device=device, quick=True)


def full_settings(device: str = "cuda") -> BenchSettings:
    """The full run: every preset at batch 256 x 32 tokens, 20 timed updates after 3 warmup ones."""
    return BenchSettings(
        device=device,
        quick=False,
        train_sentences=256,
        paper_train_sentences=256,
        train_warmup=3,
        train_repeats=20,
        paper_train_repeats=20,
        decode_sentences=256,
        decode_warmup=2,
        decode_repeats=5,
        one_at_a_time_sentences=32,
        ablation_sentences=64,
    )
