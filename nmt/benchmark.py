"""Speed and memory benchmarks: what `make bench` measures and writes to docs/bench/*.json.

    report = run_benchmark(quick_settings("cpu"), command="python -m cli.bench --quick")

Every number is measured in the run that reports it, on random token ids of a fixed batch shape:

- training throughput: one full update, exactly as the trainer does it (forward under bf16 autocast on CUDA,
  the label-smoothed summed loss of `nmt.training.token_loss`, backward, gradient clipping, the learning
  rate of the schedule, AdamW, fused on CUDA), in target tokens per second; on CUDA also the model FLOP
  utilisation against the device's dense bf16 peak;
- decoding speed of greedy and beam search (`nmt.decoding`), in sentences and generated tokens per second;
- peak memory of each measurement;
- the padding share of the trainer's length-bucketed token batches (`nmt.batching.token_batches`);
- references of the same shape that a user might otherwise pick (Hugging Face's MarianMTModel; a
  straightforward step-loop RNNsearch) and fast-path ablations, each as the ratio of two timings.

Timings exclude warmup runs, synchronise CUDA before reading the clock, and are reported as median, min and
max over the repeats. CPU threads are torch's default (recorded). Nothing here prints: the results are
dataclasses, `format_report` renders them as a table and `report_dict` as JSON.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import logging
import math
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import nmt.models.transformer as transformer_module
from nmt.batching import Batch, TokenizedPairs, filter_lengths, padding_stats, token_batches
from nmt.config import DecodeConfig, RNNSearchConfig, TrainConfig, model_config, train_config
from nmt.decoding import Hypothesis, beam_search, greedy_search, max_output_lengths
from nmt.models import build_model
from nmt.models.base import Seq2Seq, reorder_tree, source_pad_mask
from nmt.models.layers import embeddings
from nmt.models.rnn import RNNEncoderDecoder, RNNState
from nmt.models.rnnsearch import RNNSearch
from nmt.models.transformer import Transformer, TransformerEncoded, attend_mask
from nmt.schedules import LRState, learning_rate
from nmt.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.training import adamw, clip_gradients, step_unless_nonfinite, token_loss

logger = logging.getLogger(__name__)

FIRST_WORD_ID = 4  # random tokens avoid PAD, UNK, BOS and EOS

# Dense (no sparsity) bf16 tensor-core peak in FLOP/s, from the vendors' data sheets, keyed by a part of
# torch.cuda.get_device_name(). The first match wins, so the more specific names come first.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM (HBM3)
    ("H200", 989e12),
    ("A100", 312e12),
)

SMALL_PRESETS = {"rnn": "small", "rnnsearch": "small", "transformer": "small"}
PAPER_PRESETS = {"rnn": "rnnencdec-paper", "rnnsearch": "rnnsearch-paper", "transformer": "transformer-base"}


# ------------------------------------------------------------------------------------------------------------
# Settings


@dataclass
class BenchSettings:
    """What to measure, and at which sizes."""

    device: str = "cpu"
    quick: bool = True
    vocab_size: int = 8000  # joint vocabulary, one shared embedding table (as `nmt prepare` makes by default)
    source_len: int = 32  # tokens per source sentence, EOS included
    target_len: int = 32  # target tokens per sentence (the loss counts all of them), EOS included
    # Training
    small_presets: dict[str, str] = field(default_factory=lambda: dict(SMALL_PRESETS))
    paper_presets: dict[str, str] = field(default_factory=lambda: dict(PAPER_PRESETS))
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


# ------------------------------------------------------------------------------------------------------------
# Results


@dataclass
class Timing:
    """Seconds per run over the timed repeats (warmup runs excluded)."""

    median_s: float
    min_s: float
    max_s: float
    runs_s: list[float]

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds), max(seconds), list(seconds))


@dataclass
class TrainingResult:
    model: str  # architecture, or the reference's name
    preset: str
    parameters: int
    sentences: int  # batch shape: sentences x source_len / target_len tokens
    source_len: int
    target_len: int
    target_tokens: int  # per update
    bf16_autocast: bool
    fused_adamw: bool
    compiled: bool
    seconds: Timing  # per update
    tokens_per_s: float  # target tokens / median seconds
    tokens_per_s_min: float  # at the slowest update
    tokens_per_s_max: float  # at the fastest update
    model_flops: int  # forward + backward FLOPs of one update, counted by torch.utils.flop_counter
    achieved_tflops: float  # model_flops / median seconds / 1e12
    mfu: float | None  # achieved / the device's dense bf16 peak (CUDA with a known device only)
    peak_memory_mb: float


@dataclass
class DecodingResult:
    model: str
    preset: str
    search: str  # "greedy" or "beam"
    beam_size: int
    sentences: int
    source_len: int
    max_output_len: int  # the length limit (tokens without EOS): floor(max_len_a * words + max_len_b)
    mean_output_len: float  # generated tokens per sentence, EOS included (the best hypothesis of a beam)
    generated_tokens: int  # per run
    seconds: Timing  # per run (the whole batch)
    sentences_per_s: float
    tokens_per_s: float
    peak_memory_mb: float


@dataclass
class Comparison:
    """Two ways to do the same work, timed in turn; speedup = baseline median / candidate median."""

    name: str
    candidate: str  # ours / the fast path
    baseline: str  # the reference / the path without the optimisation
    work: str  # what one timed run does
    candidate_s: Timing
    baseline_s: Timing
    speedup: float  # > 1: the candidate is faster
    candidate_tokens_per_s: float | None  # target tokens (training) or generated tokens (decoding) per second
    baseline_tokens_per_s: float | None
    agreement: float | None  # decoding: the share of sentences with identical output (same weights only)


@dataclass
class PaddingResult:
    corpus: str
    unit: str  # what a token is: "subwords" or "words"
    pairs: int  # training pairs batched
    batch_tokens: int  # the token budget: B * max(source, target length) <= batch_tokens
    batches: int
    source_padding: float  # share of padding positions in the padded source tensors
    target_padding: float
    padding: float  # both together (nmt.batching.padding_stats)


@dataclass
class Machine:
    platform: str
    cpu: str
    cpu_count: int | None
    usable_cpus: int | None  # this process's CPU affinity
    torch_threads: int
    load_average_start: list[float] | None  # 1, 5 and 15 minutes, before the first measurement
    load_average_end: list[float] | None  # after the last one: a busy machine makes every number slower
    device: str
    gpu: str | None
    gpu_memory_gb: float | None
    bf16_peak_tflops: float | None


@dataclass
class BenchReport:
    command: str
    mode: str  # "quick" or "full"
    started: str  # local time, ISO 8601
    seconds: float  # the whole run
    machine: Machine
    versions: dict[str, str | None]
    settings: dict[str, Any]
    memory_measure: str  # what peak_memory_mb means on this device
    training: list[TrainingResult]
    decoding: list[DecodingResult]
    padding: list[PaddingResult]
    references: list[Comparison]
    ablations: list[Comparison]
    notes: list[str]


# ------------------------------------------------------------------------------------------------------------
# Machine, versions, timing, memory


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device from `BF16_PEAK_FLOPS`, or None for a device not in the table."""
    for key, flops in BF16_PEAK_FLOPS:
        if key in device_name:
            return flops
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(device: torch.device, load_start: list[float] | None) -> Machine:
    gpu = memory = peak = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        gpu, memory = properties.name, properties.total_memory / 2**30
        peak = bf16_peak_flops(gpu)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return Machine(
        platform=platform.platform(),
        cpu=_cpu_name(),
        cpu_count=os.cpu_count(),
        usable_cpus=usable,
        torch_threads=torch.get_num_threads(),
        load_average_start=load_start,
        load_average_end=load_average(),
        device=str(device),
        gpu=gpu,
        gpu_memory_gb=None if memory is None else round(memory, 1),
        bf16_peak_tflops=None if peak is None else peak / 1e12,
    )


def library_versions() -> dict[str, str | None]:
    """Versions of Python, torch and the libraries around it; None for one that is not installed."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "sentencepiece", "sacrebleu", "datasets", "transformers", "psutil"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None
    return versions


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(run: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Call `run` warmup times untimed, then `repeats` times timed one by one (CUDA synchronised)."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return Timing.of(seconds)


def time_interleaved(
    runs: Sequence[Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> list[Timing]:
    """Warm every run up, then time them in turn, `repeats` rounds of A B C ..., so that a change in the
    machine's load during the measurement affects them all alike."""
    for run in runs:
        for _ in range(warmup):
            run()
    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, times in zip(runs, seconds, strict=True):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times.append(time.perf_counter() - start)
    return [Timing.of(times) for times in seconds]


_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.MULTILINE)


def _resettable_rss() -> bool:
    """Whether Linux lets this process reset its peak resident set size (/proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _HWM.search(Path("/proc/self/status").read_text()) is not None
    except OSError:
        return False


def memory_measure(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated during the measurement (tensors only, MiB)"
    if _resettable_rss():
        return "peak resident set size of the process during the measurement (VmHWM, reset before each; MiB)"
    return "peak resident set size of the process so far (getrusage ru_maxrss; not reset; MiB)"


def _reset_peak_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _resettable_rss()


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        match = _HWM.search(Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------------------------------------------------
# Inputs and models


def random_batch(
    sentences: int, source_len: int, target_len: int, vocab_size: int, generator: torch.Generator
) -> Batch:
    """A batch of random word ids with no padding: every source has `source_len` tokens (EOS last) and every
    target `target_len` (BOS + ids as input, ids + EOS as output)."""
    src_ids = torch.randint(FIRST_WORD_ID, vocab_size, (sentences, source_len - 1), generator=generator)
    tgt_ids = torch.randint(FIRST_WORD_ID, vocab_size, (sentences, target_len - 1), generator=generator)
    return Batch(
        src=torch.cat([src_ids, torch.full((sentences, 1), EOS_ID)], dim=1),  # (B, S)
        src_lengths=torch.full((sentences,), source_len, dtype=torch.long),  # (B,)
        tgt_in=torch.cat([torch.full((sentences, 1), BOS_ID), tgt_ids], dim=1),  # (B, T)
        tgt_out=torch.cat([tgt_ids, torch.full((sentences, 1), EOS_ID)], dim=1),  # (B, T)
        num_tokens=sentences * target_len,
    )


def bench_model_config(arch: str, preset: str, vocab_size: int):
    """The preset's model config with a joint vocabulary of `vocab_size` (one shared embedding table)."""
    overrides = {"src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, "share_embeddings": True}
    return model_config(arch, preset, overrides)


@dataclass
class LoopEncoded:
    annotations: Tensor  # (B, S, 2H)
    pad_mask: Tensor  # (B, S) True at padding
    backward_first: Tensor  # (B, H)


@dataclass
class LoopState:
    hidden: Tensor  # (B, H)
    annotations: Tensor  # (B, S, 2H)
    pad_mask: Tensor  # (B, S) True at padding
    attention: Tensor | None = None  # (B, S)


class StepLoopRNNSearch(Seq2Seq):
    """The straightforward RNNsearch, the reference for ours: the same sizes and equations (Bahdanau et al.
    2014, App. A), written as a `GRUCell` loop that recomputes U_a h_j at every step, projects each input of
    every step separately (W_a s, the GRU's input and recurrent products, U_o s, V_o E y, C_o c) and
    applies the output layer step by step."""

    has_attention = True

    def __init__(self, config: RNNSearchConfig):
        super().__init__(config)
        E, H, A = config.embed_dim, config.hidden_dim, config.attention_dim
        self.src_embed, self.tgt_embed = embeddings(
            config.src_vocab_size, config.tgt_vocab_size, E, config.share_embeddings
        )
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(H, H)
        self.W_a = nn.Linear(H, A, bias=False)
        self.U_a = nn.Linear(2 * H, A, bias=False)
        self.v_a = nn.Linear(A, 1, bias=False)
        self.cell = nn.GRUCell(E + 2 * H, H)
        self.maxout = config.maxout_dim > 0
        pre = 2 * config.maxout_dim if self.maxout else E
        self.U_o = nn.Linear(H, pre)
        self.V_o = nn.Linear(E, pre, bias=False)
        self.C_o = nn.Linear(2 * H, pre, bias=False)
        self.W_o = nn.Linear(config.maxout_dim if self.maxout else E, config.tgt_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> LoopEncoded:
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        embedded = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.encoder(packed)
        annotations, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, 2H)
        return LoopEncoded(annotations, source_pad_mask(src), last[1])

    def start(self, encoded: LoopEncoded) -> LoopState:
        hidden = torch.tanh(self.init_state(encoded.backward_first))  # (B, H)
        return LoopState(hidden, encoded.annotations, encoded.pad_mask)

    def _step(self, embedded: Tensor, state: LoopState) -> tuple[Tensor, LoopState]:
        """Logits (B, V) and the next state from E y_{i-1} (B, E)."""
        keys = self.U_a(state.annotations)  # (B, S, A): recomputed at every step
        energy = torch.tanh(self.W_a(state.hidden)[:, None, :] + keys)  # (B, S, A)
        scores = self.v_a(energy).squeeze(-1).masked_fill(state.pad_mask, float("-inf"))  # (B, S)
        alpha = scores.softmax(dim=-1)  # (B, S)
        context = torch.bmm(alpha[:, None, :].to(state.annotations.dtype), state.annotations)[:, 0]  # (B, 2H)
        hidden = self.cell(torch.cat([embedded, context.to(embedded.dtype)], dim=-1), state.hidden)  # (B, H)
        pre = self.U_o(hidden) + self.V_o(embedded) + self.C_o(context)  # (B, 2l)
        readout = pre.unflatten(-1, (-1, 2)).amax(dim=-1) if self.maxout else torch.tanh(pre)
        logits = self.W_o(self.dropout(readout))  # (B, V)
        return logits, replace(state, hidden=hidden, attention=alpha)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(self.encode(src, src_lengths))
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        logits = []
        for i in range(tgt_in.size(1)):
            step_logits, state = self._step(embedded[:, i], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)

    def step(self, prev: Tensor, state: LoopState) -> tuple[Tensor, LoopState]:
        logits, state = self._step(self.dropout(self.tgt_embed(prev)), state)
        return logits.float().log_softmax(dim=-1), state


@dataclass
class PrefixState:
    prefix: Tensor  # (B, t) the tokens fed so far, BOS first
    cross_keys: list[Tensor]  # per decoder layer (B, H, S, Dh)
    cross_values: list[Tensor]
    pad_mask: Tensor  # (B, S) True at padding
    attention: None = None


class TransformerWithoutCache(Seq2Seq):
    """A Transformer decoded without its key/value cache: every step runs the decoder over the whole prefix
    again (the encoder output and its cross-attention keys/values are still computed once)."""

    def __init__(self, model: Transformer):
        super().__init__(model.config)
        self.model = model

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerEncoded:
        return self.model.encode(src, src_lengths)

    def start(self, encoded: TransformerEncoded) -> PrefixState:
        cross = [layer.cross_attn.keys_values(encoded.memory) for layer in self.model.decoder_layers]
        prefix = torch.zeros(encoded.memory.size(0), 0, dtype=torch.long, device=encoded.memory.device)
        return PrefixState(prefix, [k for k, _ in cross], [v for _, v in cross], encoded.pad_mask)

    def step(self, prev: Tensor, state: PrefixState) -> tuple[Tensor, PrefixState]:
        prefix = torch.cat([state.prefix, prev[:, None]], dim=1)  # (B, t + 1)
        x = self.model._embed(self.model.tgt_embed, prefix, 0)  # (B, t + 1, D)
        mask = attend_mask(state.pad_mask)
        for layer, keys, values in zip(
            self.model.decoder_layers, state.cross_keys, state.cross_values, strict=True
        ):
            x = layer(x, keys, values, mask)
        log_probs = self.model._logits(x[:, -1:])[:, 0].float().log_softmax(dim=-1)  # (B, V)
        return log_probs, replace(state, prefix=prefix)


class TanhRNNSearch(RNNSearch):
    """RNNsearch with eq. 6 computed as written, v_a^T tanh(W_a s_{i-1} + U_a h_j), instead of the model's
    sigmoid form (same alignments)."""

    def align(self, query: Tensor, keys: Tensor, pad_mask: Tensor) -> Tensor:
        scores = self.v_a(torch.tanh(query[:, None, :] + keys)).squeeze(-1)  # (B, S)
        return scores.masked_fill(pad_mask, float("-inf")).softmax(dim=-1, dtype=torch.float32)


class ContextEveryStepRNN(RNNEncoderDecoder):
    """The rnn model stepping its decoder GRU on [E y_{i-1}; c], so that c is multiplied again at every step
    (the model's own `step` takes c's products from `start`)."""

    def step(self, prev: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        embedded = self.dropout(self.tgt_embed(prev))[:, None, :]  # (B, 1, E)
        states = self._decode(embedded, state.hidden, state.summary)  # (B, 1, H)
        logits = self.output(states[:, 0], embedded[:, 0], state.summary)  # (B, V)
        return logits.float().log_softmax(dim=-1), replace(state, hidden=states[:, 0].float())


class ReorderEverything(Seq2Seq):
    """A model whose `reorder` copies every row of the state, the source side included, at every step."""

    def __init__(self, model: Seq2Seq):
        super().__init__(model.config)
        self.model = model

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any:
        return self.model.encode(src, src_lengths)

    def start(self, encoded: Any) -> Any:
        return self.model.start(encoded)

    def step(self, prev: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(prev, state)

    def reorder(self, state: Any, index: Tensor, same_sources: bool = False) -> Any:
        return reorder_tree(state, index)


def marian_available() -> bool:
    try:
        importlib.import_module("transformers")
    except ImportError:
        return False
    return True


def marian_model(config) -> nn.Module:
    """A Hugging Face MarianMTModel of the same shape as our Transformer `config` (no download)."""
    from transformers import MarianConfig, MarianMTModel

    marian = MarianConfig(
        vocab_size=config.tgt_vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.num_heads,
        decoder_attention_heads=config.num_heads,
        encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim,
        activation_function="relu",
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=0.0,
        max_position_embeddings=config.max_positions,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        forced_eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    return MarianMTModel(marian)


def _marian_logits(model: nn.Module, batch: Batch) -> Tensor:
    mask = batch.src.ne(PAD_ID).long()  # (B, S) 1 at real tokens, Hugging Face's convention
    return model(input_ids=batch.src, attention_mask=mask, decoder_input_ids=batch.tgt_in).logits


def _our_logits(model: nn.Module, batch: Batch) -> Tensor:
    return model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)


# ------------------------------------------------------------------------------------------------------------
# FLOP counting


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flops(
    grad_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kw
) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    return sdpa_backward_flop_count(grad_shape, query_shape, key_shape, value_shape)


def count_training_flops(
    model: nn.Module, logits_of: Callable[[nn.Module, Batch], Tensor], batch: Batch, label_smoothing: float
) -> int:
    """FLOPs of one forward and backward pass of `model` (on the CPU, float32) over `batch`.

    torch.utils.flop_counter counts matrix products and attention (SDPA, causal masks counted in full);
    element-wise work is left out, as is usual for model FLOP utilisation.
    """
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # not in torch's own table
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_sdpa_backward_flops
    model.train()
    with FlopCounterMode(display=False, custom_mapping=custom) as counter:
        loss = token_loss(logits_of(model, batch), batch.tgt_out, label_smoothing)
        loss.backward()
    return counter.get_total_flops()


# ------------------------------------------------------------------------------------------------------------
# Training throughput


@dataclass
class TrainingSetup:
    """One model, its optimizer and the batch it trains on, as the trainer would set them up."""

    name: str
    preset: str
    model: nn.Module
    train_model: nn.Module  # the model, or its compiled wrapper
    logits_of: Callable[[nn.Module, Batch], Tensor]
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    batch: Batch
    device: torch.device
    bf16: bool
    fused: bool
    compiled: bool
    updates: int = 0

    def update(self) -> None:
        """One update: the same steps, in the same order, as `nmt.training.Trainer._update`."""
        optimizer, config, batch = self.optimizer, self.config, self.batch
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.logits_of(self.train_model, batch)  # (B, T, V)
        loss = token_loss(logits, batch.tgt_out, config.label_smoothing)
        (loss / batch.num_tokens).backward()
        self.updates += 1
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config, self.updates, LRState(plateau_lr=config.lr))
        step_unless_nonfinite(optimizer, clip_gradients(self.model, config.clip_norm), self.fused)


def training_setup(
    name: str,
    preset: str,
    model: nn.Module,
    logits_of: Callable[[nn.Module, Batch], Tensor],
    config: TrainConfig,
    batch: Batch,
    device: torch.device,
    bf16: bool,
    fused: bool,
    compiled: bool,
) -> TrainingSetup:
    model = model.to(device).train()
    optimizer = adamw(model, config, fused)
    train_model = torch.compile(model, dynamic=True) if compiled else model  # as the trainer compiles
    return TrainingSetup(
        name,
        preset,
        model,
        train_model,
        logits_of,
        optimizer,
        config,
        batch.to(device),
        device,
        bf16,
        fused,
        compiled,
    )


def measure_training(
    setup: TrainingSetup, warmup: int, repeats: int, model_flops: int, peak_flops: float | None
) -> TrainingResult:
    """Time `repeats` updates of `setup` after `warmup` ones; the peak memory covers them all."""
    _reset_peak_memory(setup.device)
    seconds = time_runs(setup.update, setup.device, warmup, repeats)
    tokens = setup.batch.num_tokens
    achieved = model_flops / seconds.median_s
    return TrainingResult(
        model=setup.name,
        preset=setup.preset,
        parameters=sum(p.numel() for p in setup.model.parameters()),
        sentences=setup.batch.src.size(0),
        source_len=setup.batch.src.size(1),
        target_len=setup.batch.tgt_in.size(1),
        target_tokens=tokens,
        bf16_autocast=setup.bf16,
        fused_adamw=setup.fused,
        compiled=setup.compiled,
        seconds=seconds,
        tokens_per_s=tokens / seconds.median_s,
        tokens_per_s_min=tokens / seconds.max_s,
        tokens_per_s_max=tokens / seconds.min_s,
        model_flops=model_flops,
        achieved_tflops=achieved / 1e12,
        mfu=None if peak_flops is None or setup.device.type != "cuda" else achieved / peak_flops,
        peak_memory_mb=_peak_memory_mb(setup.device),
    )


# ------------------------------------------------------------------------------------------------------------
# Decoding speed


def decode(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int) -> list[Hypothesis]:
    """The best hypothesis of each sentence: greedy search for beam size 1, else batched beam search,
    with the default length limit and normalisation (`DecodeConfig`)."""
    config = DecodeConfig()
    if beam_size == 1:
        return greedy_search(model, src, src_lengths, max_len_a=config.max_len_a, max_len_b=config.max_len_b)
    found = beam_search(
        model,
        src,
        src_lengths,
        beam_size=beam_size,
        length_penalty=config.length_penalty,
        normalization=config.normalization,
        max_len_a=config.max_len_a,
        max_len_b=config.max_len_b,
    )
    return [hypotheses[0] for hypotheses in found]


def decode_one_at_a_time(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int
) -> list[Hypothesis]:
    """The same search, one sentence per call."""
    return [decode(model, src[i : i + 1], src_lengths[i : i + 1], beam_size)[0] for i in range(src.size(0))]


def _output_tokens(found: list[Hypothesis]) -> int:
    return sum(len(h.tokens) + 1 for h in found)  # + EOS


def measure_decoding(
    name: str,
    preset: str,
    model: Seq2Seq,
    batch: Batch,
    beam_size: int,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> DecodingResult:
    """Time decoding `batch.src` in one batch (float32, as `nmt translate` does)."""
    model.to(device).eval()
    src, src_lengths = batch.src.to(device), batch.src_lengths.to(device)
    _reset_peak_memory(device)
    found: list[Hypothesis] = []

    def run() -> None:
        found[:] = decode(model, src, src_lengths, beam_size)

    seconds = time_runs(run, device, warmup, repeats)
    tokens = _output_tokens(found)
    config = DecodeConfig()
    limit = int(max_output_lengths(batch.src_lengths, config.max_len_a, config.max_len_b).max())
    return DecodingResult(
        model=name,
        preset=preset,
        search="greedy" if beam_size == 1 else "beam",
        beam_size=beam_size,
        sentences=src.size(0),
        source_len=src.size(1),
        max_output_len=limit,
        mean_output_len=tokens / src.size(0),
        generated_tokens=tokens,
        seconds=seconds,
        sentences_per_s=src.size(0) / seconds.median_s,
        tokens_per_s=tokens / seconds.median_s,
        peak_memory_mb=_peak_memory_mb(device),
    )


# ------------------------------------------------------------------------------------------------------------
# Comparisons: two ways to do the same work, timed in turn


@dataclass
class Contender:
    """One side of a comparison: a label, a run, and what one run produced (tokens, and the outputs for
    decoding)."""

    label: str
    run: Callable[[], Any]
    tokens: Callable[[], int] | None = None  # target (training) or generated (decoding) tokens of one run
    outputs: Callable[[], list[Hypothesis]] | None = None


def compare(
    name: str,
    work: str,
    candidate: Contender,
    baseline: Contender,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> Comparison:
    """Time `candidate` and `baseline` interleaved (see `time_interleaved`); speedup > 1: candidate faster."""
    fast, slow = time_interleaved([candidate.run, baseline.run], device, warmup, repeats)
    agreement = None
    if candidate.outputs is not None and baseline.outputs is not None:
        a, b = candidate.outputs(), baseline.outputs()
        agreement = sum(x.tokens == y.tokens for x, y in zip(a, b, strict=True)) / max(1, len(a))
    return Comparison(
        name=name,
        candidate=candidate.label,
        baseline=baseline.label,
        work=work,
        candidate_s=fast,
        baseline_s=slow,
        speedup=slow.median_s / fast.median_s,
        candidate_tokens_per_s=None if candidate.tokens is None else candidate.tokens() / fast.median_s,
        baseline_tokens_per_s=None if baseline.tokens is None else baseline.tokens() / slow.median_s,
        agreement=agreement,
    )


def training_contender(label: str, setup: TrainingSetup) -> Contender:
    return Contender(label, setup.update, tokens=lambda: setup.batch.num_tokens)


def decoding_contender(label: str, search: Callable[[], list[Hypothesis]], same_model: bool) -> Contender:
    """A decoding run; its token count is that of the last run. With `same_model` (both sides decode with
    the same weights) the comparison also reports how often the two outputs agree."""
    found: list[Hypothesis] = []

    def run() -> None:
        found[:] = search()

    return Contender(
        label, run, tokens=lambda: _output_tokens(found), outputs=(lambda: found) if same_model else None
    )


# ------------------------------------------------------------------------------------------------------------
# Attention alone: SDPA against the explicit softmax(Q K^T / sqrt(d)) V


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V spelled out (Vaswani et al. 2017, eq. 1); `mask` True where allowed."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))  # (B, H, T, S)
    if causal:
        future = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).triu(1)  # True: later
        scores = scores.masked_fill(future, float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v  # (B, H, T, Dh)


def attention_contenders(
    config, sentences: int, source_len: int, target_len: int, device: torch.device, bf16: bool
) -> tuple[Contender, Contender]:
    """Forward and backward of the three attentions of a layer pair (encoder self-attention, decoder causal
    self-attention, cross-attention with padding) at the model's shapes: through SDPA, and spelled out."""
    heads, head_dim = config.num_heads, config.d_model // config.num_heads
    dtype = torch.bfloat16 if bf16 else torch.float32

    def tensor(length: int) -> Tensor:
        return torch.randn(sentences, heads, length, head_dim, device=device, dtype=dtype, requires_grad=True)

    q_src, k_src, v_src = tensor(source_len), tensor(source_len), tensor(source_len)
    q_tgt, k_tgt, v_tgt = tensor(target_len), tensor(target_len), tensor(target_len)
    pad_mask = torch.zeros(sentences, source_len, dtype=torch.bool, device=device)  # True at padding
    pad_mask[: sentences // 2, -(source_len // 4) :] = True  # half the sentences end in padding
    mask = attend_mask(pad_mask)  # (B, 1, 1, S)

    def sdpa() -> None:
        out = F.scaled_dot_product_attention(q_src, k_src, v_src, mask).sum()
        out = out + F.scaled_dot_product_attention(q_tgt, k_tgt, v_tgt, is_causal=True).sum()
        (out + F.scaled_dot_product_attention(q_tgt, k_src, v_src, mask).sum()).backward()

    def explicit() -> None:
        out = explicit_attention(q_src, k_src, v_src, mask, causal=False).sum()
        out = out + explicit_attention(q_tgt, k_tgt, v_tgt, None, causal=True).sum()
        (out + explicit_attention(q_tgt, k_src, v_src, mask, causal=False).sum()).backward()

    return Contender("SDPA", sdpa), Contender("explicit softmax(QK^T)V", explicit)


# ------------------------------------------------------------------------------------------------------------
# Padding of the trainer's batches


def measure_padding(
    corpus: str, unit: str, pairs: TokenizedPairs, batch_tokens: int, seed: int
) -> PaddingResult:
    """The padding of epoch 1's training batches of `pairs` at the token budget `batch_tokens`."""
    kept = filter_lengths(pairs, None, None, batch_tokens).kept
    batches = token_batches(pairs, kept, batch_tokens, seed, epoch=1)
    src_len, tgt_len = pairs.src_lengths, pairs.tgt_lengths
    src_real = sum(int(src_len[b].sum()) for b in batches)
    src_padded = sum(len(b) * int(src_len[b].max()) for b in batches)
    tgt_real = sum(int(tgt_len[b].sum()) for b in batches)
    tgt_padded = sum(len(b) * int(tgt_len[b].max()) for b in batches)
    return PaddingResult(
        corpus=corpus,
        unit=unit,
        pairs=len(kept),
        batch_tokens=batch_tokens,
        batches=len(batches),
        source_padding=1 - src_real / max(1, src_padded),
        target_padding=1 - tgt_real / max(1, tgt_padded),
        padding=padding_stats(pairs, batches).fraction,
    )


def synthetic_pairs(n: int, seed: int) -> TokenizedPairs:
    """The synthetic corpus as word ids (its two languages translate word for word; lengths are in words)."""
    from nmt.synthetic import generate_pairs

    vocabulary: dict[str, int] = {}

    def ids(text: str) -> list[int]:
        return [vocabulary.setdefault(word, FIRST_WORD_ID + len(vocabulary)) for word in text.split()]

    found = generate_pairs(n, seed)
    return TokenizedPairs.from_lists([ids(s) for s, _ in found], [ids(t) for _, t in found])


def _corpus_name(data_dir: Path) -> str:
    """The directory's name and its language pair, e.g. "m30k (en-de)"."""
    from nmt.prepared import PreparedData

    data = PreparedData.open(data_dir)
    return f"{Path(data_dir).name} ({data.source_lang}-{data.target_lang})"


def prepared_pairs(data_dir: Path) -> TokenizedPairs:
    from nmt.prepared import PreparedData

    return TokenizedPairs.from_dataset(PreparedData.open(data_dir).split("train"))


# ------------------------------------------------------------------------------------------------------------
# The whole run


class _Run:
    """One benchmark run: the settings, the device, and the results so far."""

    def __init__(self, settings: BenchSettings):
        from nmt.devices import resolve_device

        self.settings = settings
        self.device = resolve_device(settings.device)
        self.cuda = self.device.type == "cuda"
        self.peak = bf16_peak_flops(torch.cuda.get_device_name(self.device)) if self.cuda else None
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.notes: list[str] = []
        self.training: list[TrainingResult] = []
        self.decoding: list[DecodingResult] = []
        self.references: list[Comparison] = []
        self.ablations: list[Comparison] = []
        self.decode_batch = self.batch(settings.decode_sentences)  # every decoding measurement decodes it

    def batch(self, sentences: int) -> Batch:
        s = self.settings
        return random_batch(sentences, s.source_len, s.target_len, s.vocab_size, self.generator)

    def build(self, arch: str, preset: str) -> nn.Module:
        torch.manual_seed(self.settings.seed)
        return build_model(arch, bench_model_config(arch, preset, self.settings.vocab_size))

    def build_variant(self, variant: type[nn.Module], arch: str, preset: str) -> nn.Module:
        """`variant` (a subclass of `arch`'s model computing something another way) with `build`'s weights."""
        model = variant(bench_model_config(arch, preset, self.settings.vocab_size))
        model.load_state_dict(self.build(arch, preset).state_dict())
        return model

    def maker(self, arch: str, preset: str) -> Callable[[], nn.Module]:
        return lambda: self.build(arch, preset)

    def setup(
        self,
        name: str,
        arch: str,
        preset: str,
        make: Callable[[], nn.Module],
        logits_of: Callable[[nn.Module, Batch], Tensor],
        batch: Batch,
        bf16: bool | None = None,
        fused: bool | None = None,
        compiled: bool = False,
    ) -> TrainingSetup:
        """A model `name` trained like `arch` at `preset` (its training config), with the trainer's choices
        unless told otherwise: bf16 autocast and fused AdamW on CUDA."""
        bf16 = self.cuda if bf16 is None else bf16
        fused = self.cuda if fused is None else fused
        config = train_config(arch, preset)
        setup = training_setup(
            name, preset, make(), logits_of, config, batch, self.device, bf16, fused, compiled
        )
        for _ in range(self.settings.compile_warmup if compiled else 0):
            setup.update()  # the first updates compile
        return setup

    def sizes(self, preset: str) -> tuple[int, int]:
        """(sentences, timed repeats) of a training measurement at `preset`."""
        s = self.settings
        if preset in s.paper_presets.values():
            return s.paper_train_sentences, s.paper_train_repeats
        return s.train_sentences, s.train_repeats

    def flops(self, make: Callable[[], nn.Module], logits_of, label_smoothing: float, sentences: int) -> int:
        """Model FLOPs of one update of `sentences` sentences, counted on two and scaled (they are linear in
        the batch size at fixed lengths)."""
        return count_training_flops(make(), logits_of, self.batch(2), label_smoothing) * sentences // 2

    def compare_training(self, name: str, candidate: TrainingSetup, baseline: TrainingSetup) -> Comparison:
        s, batch = self.settings, candidate.batch
        work = f"one update of {batch.src.size(0)} x {batch.tgt_in.size(1)} target tokens"
        logger.info("comparing %s", name)
        return compare(
            name,
            work,
            training_contender(_setup_label(candidate), candidate),
            training_contender(_setup_label(baseline), baseline),
            self.device,
            s.train_warmup,
            self.sizes(candidate.preset)[1],
        )

    def compare_decoding(
        self,
        name: str,
        work: str,
        candidate: tuple[str, Callable[[], list[Hypothesis]]],
        baseline: tuple[str, Callable[[], list[Hypothesis]]],
    ) -> Comparison:
        """Two (label, search) pairs with the same weights, timed in turn; `agreement`: outputs that match."""
        s = self.settings
        logger.info("comparing %s", name)
        return compare(
            name,
            work,
            decoding_contender(*candidate, same_model=True),
            decoding_contender(*baseline, same_model=True),
            self.device,
            s.decode_warmup,
            s.decode_repeats,
        )

    def compare_beam_search(
        self, name: str, candidate: tuple[str, Seq2Seq], baseline: tuple[str, Seq2Seq]
    ) -> Comparison:
        """Beam search over the decoding batch with two (label, model) pairs of the same weights."""
        s, batch = self.settings, self.decode_batch
        src, src_lengths = batch.src.to(self.device), batch.src_lengths.to(self.device)
        return self.compare_decoding(
            name,
            f"beam {s.beam_size} over {src.size(0)} sentences",
            *(
                (label, partial(decode, model, src, src_lengths, s.beam_size))
                for label, model in (candidate, baseline)
            ),
        )


def _setup_label(setup: TrainingSetup) -> str:
    return {"marian": "transformers MarianMTModel", STEP_LOOP: "step-loop RNNsearch"}.get(
        setup.name, f"nmt {setup.name}"
    )


STEP_LOOP = "rnnsearch-step-loop"


def run_benchmark(settings: BenchSettings, command: str) -> BenchReport:
    """Run every measurement that `settings` asks for and return them with the machine and versions."""
    from nmt.prepared import PreparedData

    for data_dir in settings.data_dirs:  # a wrong directory is an error now, not after the measurements
        PreparedData.open(data_dir)
    started, clock, load = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter(), load_average()
    run = _Run(settings)
    measure = memory_measure(run.device)
    _training(run)
    _decoding(run)
    if settings.references:
        _references(run)
    if settings.ablations:
        _ablations(run)
    padding = _padding(run)
    notes = run.notes
    if settings.quick:
        notes.insert(
            0,
            f"quick mode: the small presets train on {settings.train_sentences} sentences x "
            f"{settings.target_len} target tokens with {settings.train_repeats} timed updates; the paper "
            f"presets on {settings.paper_train_sentences} sentences with {settings.paper_train_repeats}",
        )
    notes.append(
        "decoding uses random weights: outputs run to the length limit floor(1.5 * source words + 10) "
        "(mean_output_len says how long they were)"
    )
    notes.append(
        "each comparison times its two sides in turn (A B A B ...) after warming both up, so that a change "
        "in the machine's load affects both alike; its timings are separate from the tables'"
    )
    return BenchReport(
        command=command,
        mode="quick" if settings.quick else "full",
        started=started,
        seconds=time.perf_counter() - clock,
        machine=describe_machine(run.device, load),
        versions=library_versions(),
        settings=_jsonable(dataclasses.asdict(settings)),
        memory_measure=measure,
        training=run.training,
        decoding=run.decoding,
        padding=padding,
        references=run.references,
        ablations=run.ablations,
        notes=notes,
    )


def _training(run: _Run) -> None:
    s = run.settings
    for arch, preset in [*s.small_presets.items(), *s.paper_presets.items()]:
        sentences, repeats = run.sizes(preset)
        logger.info("training %s %s: %d x %d target tokens", arch, preset, sentences, s.target_len)
        make = run.maker(arch, preset)
        flops = run.flops(make, _our_logits, train_config(arch, preset).label_smoothing, sentences)
        setup = run.setup(arch, arch, preset, make, _our_logits, run.batch(sentences))
        run.training.append(measure_training(setup, s.train_warmup, repeats, flops, run.peak))


def _decoding(run: _Run) -> None:
    s = run.settings
    for arch, preset in s.small_presets.items():
        model = run.build(arch, preset)
        for beam_size in (1, s.beam_size):
            logger.info("decoding %s %s: %d sentences, beam %d", arch, preset, s.decode_sentences, beam_size)
            run.decoding.append(
                measure_decoding(
                    arch,
                    preset,
                    model,
                    run.decode_batch,
                    beam_size,
                    run.device,
                    s.decode_warmup,
                    s.decode_repeats,
                )
            )


def _references(run: _Run) -> None:
    s = run.settings
    # RNNsearch: ours (keys U_a h_j once per sentence, the input products of all steps in one go) against
    # the straightforward step loop of the same sizes.
    presets = [p for p in (s.small_presets.get("rnnsearch"), s.paper_presets.get("rnnsearch")) if p]
    for preset in presets:
        batch = run.batch(run.sizes(preset)[0])

        def make_loop(preset=preset) -> nn.Module:
            torch.manual_seed(s.seed)
            return StepLoopRNNSearch(bench_model_config("rnnsearch", preset, s.vocab_size))

        ours = run.setup("rnnsearch", "rnnsearch", preset, run.maker("rnnsearch", preset), _our_logits, batch)
        loop = run.setup(STEP_LOOP, "rnnsearch", preset, make_loop, _our_logits, batch)
        run.references.append(run.compare_training(f"rnnsearch {preset} training", ours, loop))
        del ours, loop
    if presets:
        preset = presets[0]
        ours_model = run.build("rnnsearch", preset).to(run.device).eval()
        torch.manual_seed(s.seed)
        loop_model = StepLoopRNNSearch(bench_model_config("rnnsearch", preset, s.vocab_size))
        loop_model = loop_model.to(run.device).eval()
        src, src_lengths = run.decode_batch.src.to(run.device), run.decode_batch.src_lengths.to(run.device)
        logger.info("comparing rnnsearch %s greedy decoding", preset)
        run.references.append(
            compare(
                f"rnnsearch {preset} greedy decoding",
                f"greedy search of {src.size(0)} sentences",
                decoding_contender(
                    "nmt rnnsearch", partial(decode, ours_model, src, src_lengths, 1), same_model=False
                ),
                decoding_contender(
                    "step-loop RNNsearch", partial(decode, loop_model, src, src_lengths, 1), same_model=False
                ),
                run.device,
                s.decode_warmup,
                s.decode_repeats,
            )
        )
    if not marian_available():
        run.notes.append(
            "transformers is not importable: the MarianMTModel reference was skipped "
            "(pip install -e '.[bench]')"
        )
        return
    presets = [p for p in (s.small_presets.get("transformer"), s.paper_presets.get("transformer")) if p]
    for preset in presets:
        batch = run.batch(run.sizes(preset)[0])
        shape = bench_model_config("transformer", preset, s.vocab_size)

        def make_marian(shape=shape) -> nn.Module:
            torch.manual_seed(s.seed)
            return marian_model(shape)

        ours = run.setup(
            "transformer", "transformer", preset, run.maker("transformer", preset), _our_logits, batch
        )
        theirs = run.setup("marian", "transformer", preset, make_marian, _marian_logits, batch)
        run.references.append(run.compare_training(f"transformer {preset} training", ours, theirs))
        del ours, theirs
    if presets:
        _compare_generate(run, presets[0])


def _compare_generate(run: _Run, preset: str) -> None:
    """Our beam search against MarianMTModel.generate: same sentences, beam size and length limit."""
    s = run.settings
    ours = run.build("transformer", preset).to(run.device).eval()
    torch.manual_seed(s.seed)
    theirs = marian_model(bench_model_config("transformer", preset, s.vocab_size)).to(run.device).eval()
    src, src_lengths = run.decode_batch.src.to(run.device), run.decode_batch.src_lengths.to(run.device)
    mask = src.ne(PAD_ID).long()  # (B, S) 1 at real tokens, Hugging Face's convention
    config = DecodeConfig()
    limit = int(max_output_lengths(src_lengths, config.max_len_a, config.max_len_b).max())

    @torch.inference_mode()
    def generate() -> list[Hypothesis]:
        # At most `limit` tokens and then EOS (forced at the last position), like ours: limit + 1 new tokens.
        out = theirs.generate(
            input_ids=src,
            attention_mask=mask,
            num_beams=s.beam_size,
            max_new_tokens=limit + 1,
            length_penalty=config.length_penalty,
            do_sample=False,
            suppress_tokens=[PAD_ID, BOS_ID],  # ours never produces them either
        )[:, 1:]  # (B, L) without the decoder start token, PAD after EOS
        return [
            Hypothesis(tokens=[t for t in row if t not in (PAD_ID, EOS_ID)], score=0.0, log_prob=0.0)
            for row in out.tolist()
        ]

    logger.info("comparing transformer %s beam search with MarianMTModel.generate", preset)
    run.references.append(
        compare(
            f"transformer {preset} beam search",
            f"beam {s.beam_size} over {src.size(0)} sentences, up to {limit} tokens + EOS",
            decoding_contender(
                "nmt beam_search", partial(decode, ours, src, src_lengths, s.beam_size), same_model=False
            ),
            decoding_contender("transformers MarianMTModel.generate", generate, same_model=False),
            run.device,
            s.decode_warmup,
            s.decode_repeats,
        )
    )


def _ablations(run: _Run) -> None:
    s = run.settings
    if "transformer" in s.small_presets:
        preset = s.small_presets["transformer"]
        model = run.build("transformer", preset).to(run.device).eval()
        uncached = TransformerWithoutCache(model)
        few = run.batch(s.ablation_sentences)
        src, src_lengths = few.src.to(run.device), few.src_lengths.to(run.device)
        run.ablations.append(
            run.compare_decoding(
                f"transformer {preset} greedy: key/value cache",
                f"greedy search of {src.size(0)} sentences",
                ("with the cache", partial(decode, model, src, src_lengths, 1)),
                ("decoder re-run on the prefix", partial(decode, uncached, src, src_lengths, 1)),
            )
        )
    for arch, preset in s.small_presets.items():
        model = run.build(arch, preset).to(run.device).eval()
        few = run.batch(s.one_at_a_time_sentences)
        src, src_lengths = few.src.to(run.device), few.src_lengths.to(run.device)
        run.ablations.append(
            run.compare_decoding(
                f"{arch} {preset} beam search: batched",
                f"beam {s.beam_size} over {src.size(0)} sentences",
                ("one batch", partial(decode, model, src, src_lengths, s.beam_size)),
                (
                    "one sentence at a time",
                    partial(decode_one_at_a_time, model, src, src_lengths, s.beam_size),
                ),
            )
        )
    presets = [p for p in (s.small_presets.get("transformer"), s.paper_presets.get("transformer")) if p]
    for preset in dict.fromkeys(presets):
        sentences = run.sizes(preset)[0]
        shape = bench_model_config("transformer", preset, s.vocab_size)
        sdpa, explicit = attention_contenders(
            shape, sentences, s.source_len, s.target_len, run.device, run.cuda
        )
        logger.info("comparing transformer %s attention: SDPA and explicit", preset)
        run.ablations.append(
            compare(
                f"transformer {preset} attention: SDPA",
                f"forward + backward of encoder self-, decoder causal self- and cross-attention, {sentences} "
                f"sentences at the model's heads and sizes{' in bf16' if run.cuda else ''}",
                sdpa,
                explicit,
                run.device,
                2,
                10,
            )
        )
    _source_side_ablations(run)
    _context_once_ablations(run)
    if run.cuda:
        _cuda_ablations(run)
    else:
        _sigmoid_form_ablation(run)
        _one_query_attention_ablation(run)
        run.notes.append("the bf16 autocast, fused AdamW and torch.compile ablations run on CUDA only")


def _source_side_ablations(run: _Run) -> None:
    """Beam search leaving the source-side state in place between steps, against reordering all of it."""
    for arch, preset in run.settings.small_presets.items():
        model = run.build(arch, preset).to(run.device).eval()
        run.ablations.append(
            run.compare_beam_search(
                f"{arch} {preset} beam search: source side left in place",
                ("source-side state left in place", model),
                ("whole state reordered every step", ReorderEverything(model)),
            )
        )


def _context_once_ablations(run: _Run) -> None:
    """The rnn decoder's products with the fixed vector c made once per sentence, against at every step."""
    s = run.settings
    for preset in dict.fromkeys(p for p in (s.small_presets.get("rnn"), s.paper_presets.get("rnn")) if p):
        model = run.build("rnn", preset).to(run.device).eval()
        every_step = run.build_variant(ContextEveryStepRNN, "rnn", preset).to(run.device).eval()
        run.ablations.append(
            run.compare_beam_search(
                f"rnn {preset} beam search: c projected once",
                ("c's products once per sentence", model),
                ("[E y; c] through the GRU every step", every_step),
            )
        )


def _sigmoid_form_ablation(run: _Run) -> None:
    """RNNsearch's alignment energies on the CPU through sigmoid against through tanh: training and beam."""
    s = run.settings
    for presets in (s.small_presets, s.paper_presets):
        preset = presets.get("rnnsearch")
        if preset is None:
            continue
        sigmoid_form = run.maker("rnnsearch", preset)

        tanh_form = partial(run.build_variant, TanhRNNSearch, "rnnsearch", preset)

        batch = run.batch(run.sizes(preset)[0])
        candidate = run.setup("rnnsearch", "rnnsearch", preset, sigmoid_form, _our_logits, batch)
        baseline = run.setup("rnnsearch", "rnnsearch", preset, tanh_form, _our_logits, batch)
        comparison = run.compare_training(
            f"rnnsearch {preset} training: sigmoid form of eq. 6", candidate, baseline
        )
        run.ablations.append(replace(comparison, candidate="2 v_a^T sigmoid(2x)", baseline="v_a^T tanh(x)"))
        del candidate, baseline
        if presets is not s.small_presets:
            continue
        sigmoid_model, tanh_model = (make().to(run.device).eval() for make in (sigmoid_form, tanh_form))
        run.ablations.append(
            run.compare_beam_search(
                f"rnnsearch {preset} beam search: sigmoid form of eq. 6",
                ("2 v_a^T sigmoid(2x)", sigmoid_model),
                ("v_a^T tanh(x)", tanh_model),
            )
        )


def _decode_with_sdpa_for_one_query(model: Seq2Seq, src: Tensor, src_lengths: Tensor, beam_size: int):
    """`decode` with every decoding step's attention through SDPA, as on CUDA."""
    transformer_module.SDPA_FOR_ONE_QUERY_ON_CPU = True
    try:
        return decode(model, src, src_lengths, beam_size)
    finally:
        transformer_module.SDPA_FOR_ONE_QUERY_ON_CPU = False


def _one_query_attention_ablation(run: _Run) -> None:
    """The Transformer's decoding steps on the CPU: attention as two batched products against SDPA."""
    s = run.settings
    preset = s.small_presets.get("transformer")
    if preset is None:
        return
    model = run.build("transformer", preset).to(run.device).eval()
    src, src_lengths = run.decode_batch.src.to(run.device), run.decode_batch.src_lengths.to(run.device)
    for beam_size in dict.fromkeys((1, s.beam_size)):
        search = "greedy" if beam_size == 1 else f"beam {beam_size}"
        run.ablations.append(
            run.compare_decoding(
                f"transformer {preset} {search} on the CPU: one-query attention",
                f"{search} over {src.size(0)} sentences",
                ("two batched products", partial(decode, model, src, src_lengths, beam_size)),
                ("SDPA", partial(_decode_with_sdpa_for_one_query, model, src, src_lengths, beam_size)),
            )
        )


def _cuda_ablations(run: _Run) -> None:
    """Training with each CUDA fast path against without it: bf16 autocast, fused AdamW, torch.compile."""
    s = run.settings
    for arch, preset in s.paper_presets.items():
        batch, make = run.batch(run.sizes(preset)[0]), run.maker(arch, preset)
        base = run.setup(arch, arch, preset, make, _our_logits, batch)
        fp32 = run.setup(arch, arch, preset, make, _our_logits, batch, bf16=False)
        comparison = run.compare_training(f"{arch} {preset} training: bf16 autocast", base, fp32)
        run.ablations.append(replace(comparison, candidate="bf16 autocast", baseline="float32"))
        del fp32
        if arch == "transformer":
            unfused = run.setup(arch, arch, preset, make, _our_logits, batch, fused=False)
            comparison = run.compare_training(f"{arch} {preset} training: fused AdamW", base, unfused)
            run.ablations.append(replace(comparison, candidate="fused AdamW", baseline="foreach AdamW"))
            del unfused
        del base
    presets = [p for p in (s.small_presets.get("transformer"), s.paper_presets.get("transformer")) if p]
    for preset in dict.fromkeys(presets):
        batch, make = run.batch(run.sizes(preset)[0]), run.maker("transformer", preset)
        compiled = run.setup("transformer", "transformer", preset, make, _our_logits, batch, compiled=True)
        eager = run.setup("transformer", "transformer", preset, make, _our_logits, batch)
        comparison = run.compare_training(f"transformer {preset} training: torch.compile", compiled, eager)
        run.ablations.append(replace(comparison, candidate="torch.compile(dynamic=True)", baseline="eager"))
        del compiled, eager


def _padding(run: _Run) -> list[PaddingResult]:
    s = run.settings
    results = []
    corpora: list[tuple[str, str, Callable[[], TokenizedPairs]]] = [
        (
            f"synthetic ({s.synthetic_pairs} pairs)",
            "words",
            lambda: synthetic_pairs(s.synthetic_pairs, s.seed),
        )
    ]
    for data_dir in s.data_dirs:
        corpora.append(
            (_corpus_name(data_dir), "subwords", lambda data_dir=data_dir: prepared_pairs(data_dir))
        )
    for name, unit, load in corpora:
        logger.info("padding of %s", name)
        pairs = load()
        for budget in s.padding_budgets:
            results.append(measure_padding(name, unit, pairs, budget, s.seed))
    return results


# ------------------------------------------------------------------------------------------------------------
# Output


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def report_dict(report: BenchReport) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    return _jsonable(dataclasses.asdict(report))


def write_report(report: BenchReport, path: Path) -> None:
    """Write the report as JSON, atomically (a temporary file renamed over `path`)."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(report_dict(report), indent=2) + "\n", encoding="utf-8")
    temporary.replace(path)


def _ms(timing: Timing) -> str:
    return f"{1000 * timing.median_s:,.1f} [{1000 * timing.min_s:,.1f}-{1000 * timing.max_s:,.1f}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns padded to their widest cell: the first left-aligned, the others right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)]


def format_report(report: BenchReport) -> str:
    """A readable table of the whole report."""
    m, v = report.machine, report.versions
    out = [
        f"nmt benchmark ({report.mode}) on {m.device}: {report.command}",
        f"machine: {m.cpu}, {m.usable_cpus or m.cpu_count} usable CPUs, torch threads {m.torch_threads}"
        + (f"; GPU {m.gpu} ({m.gpu_memory_gb} GB)" if m.gpu else "")
        + f"; load average {m.load_average_start} before, {m.load_average_end} after",
        "versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x is not None),
        f"started {report.started}, took {report.seconds / 60:.1f} min; memory: {report.memory_measure}",
        "",
        "Training: one full update (forward, smoothed loss, backward, clip, AdamW); ms median [min-max]",
    ]
    out += _table(
        [
            "model",
            "preset",
            "params",
            "batch",
            "bf16",
            "fused",
            "compile",
            "ms/update",
            "tok/s",
            "TFLOP/s",
            "MFU",
            "peak MiB",
        ],
        [
            [
                r.model,
                r.preset,
                f"{r.parameters / 1e6:.1f}M",
                f"{r.sentences}x{r.target_len}",
                _yes(r.bf16_autocast),
                _yes(r.fused_adamw),
                _yes(r.compiled),
                _ms(r.seconds),
                f"{r.tokens_per_s:,.0f}",
                f"{r.achieved_tflops:.3f}",
                "-" if r.mfu is None else f"{100 * r.mfu:.1f}%",
                f"{r.peak_memory_mb:,.0f}",
            ]
            for r in report.training
        ],
    )
    out += ["", "Decoding: one batch, float32; ms median [min-max] per batch"]
    out += _table(
        ["model", "preset", "search", "sentences", "out len", "ms/batch", "sent/s", "tok/s", "peak MiB"],
        [
            [
                r.model,
                r.preset,
                "greedy" if r.beam_size == 1 else f"beam {r.beam_size}",
                str(r.sentences),
                f"{r.mean_output_len:.1f}/{r.max_output_len + 1}",
                _ms(r.seconds),
                f"{r.sentences_per_s:,.1f}",
                f"{r.tokens_per_s:,.0f}",
                f"{r.peak_memory_mb:,.0f}",
            ]
            for r in report.decoding
        ],
    )
    for title, comparisons in (
        (
            "References: ours against what a user might otherwise pick (ratio > 1: ours faster)",
            report.references,
        ),
        (
            "Ablations: with the fast path against without it (ratio > 1: the fast path is faster)",
            report.ablations,
        ),
    ):
        if comparisons:
            out += ["", title, *_comparison_table(comparisons)]
    out += ["", "Padding of the trainer's length-bucketed batches (nmt.batching.token_batches, epoch 1)"]
    out += _table(
        ["corpus", "unit", "pairs", "budget", "batches", "source", "target", "all"],
        [
            [
                p.corpus,
                p.unit,
                str(p.pairs),
                str(p.batch_tokens),
                str(p.batches),
                f"{100 * p.source_padding:.1f}%",
                f"{100 * p.target_padding:.1f}%",
                f"{100 * p.padding:.1f}%",
            ]
            for p in report.padding
        ],
    )
    if report.notes:
        out += ["", "Notes:", *(f"- {note}" for note in report.notes)]
    return "\n".join(out)


def _comparison_table(comparisons: list[Comparison]) -> list[str]:
    def rate(value: float | None) -> str:
        return "-" if value is None else f"{value:,.0f}"

    return _table(
        ["comparison", "ours / fast", "ms", "tok/s", "theirs / slow", "ms", "tok/s", "ratio", "same out"],
        [
            [
                c.name,
                c.candidate,
                f"{1000 * c.candidate_s.median_s:,.1f}",
                rate(c.candidate_tokens_per_s),
                c.baseline,
                f"{1000 * c.baseline_s.median_s:,.1f}",
                rate(c.baseline_tokens_per_s),
                f"{c.speedup:.2f}x",
                "-" if c.agreement is None else f"{100 * c.agreement:.0f}%",
            ]
            for c in comparisons
        ],
    )


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


__all__ = [
    "BF16_PEAK_FLOPS",
    "BenchReport",
    "BenchSettings",
    "Comparison",
    "Contender",
    "DecodingResult",
    "Machine",
    "PaddingResult",
    "StepLoopRNNSearch",
    "Timing",
    "TrainingResult",
    "TransformerWithoutCache",
    "bench_model_config",
    "bf16_peak_flops",
    "compare",
    "count_training_flops",
    "explicit_attention",
    "format_report",
    "full_settings",
    "marian_available",
    "marian_model",
    "measure_decoding",
    "measure_padding",
    "measure_training",
    "quick_settings",
    "random_batch",
    "report_dict",
    "synthetic_pairs",
    "time_interleaved",
    "time_runs",
    "run_benchmark",
    "write_report",
]
