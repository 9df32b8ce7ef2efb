"""Ablations: each fast path of our models and searches against the same work without it, with the same
weights on both sides (so that decoding comparisons also report how often the outputs agree).

Everywhere: the Transformer's key/value cache, batched beam search, SDPA against the explicit attention
formula, beam search leaving the source side of the state in place, and the rnn decoder's products with c
taken once per sentence. On the CPU: RNNsearch's sigmoid form of eq. 6 and the Transformer's one-query
attention. On CUDA: bf16 autocast, fused AdamW and torch.compile.
"""

from __future__ import annotations

import logging
import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from nmt.benchmark.comparisons import Contender, compare
from nmt.benchmark.decoding import decode, decode_one_at_a_time
from nmt.benchmark.session import BenchSession
from nmt.benchmark.variants import (
    ContextEveryStepRNN,
    ReorderEverything,
    TanhRNNSearch,
    TransformerWithOneQuerySDPA,
    TransformerWithoutCache,
)
from nmt.models import ARCHITECTURES
from nmt.models.configs import TransformerConfig
from nmt.models.transformer import attend_mask

logger = logging.getLogger(__name__)

RNN, RNNSEARCH, TRANSFORMER = "rnn", "rnnsearch", "transformer"  # the architectures of the named variants


def add_ablations(session: BenchSession) -> None:
    """Every ablation that runs on the session's device, added to `session.ablations`."""
    _key_value_cache(session)
    _batched_beam_search(session)
    _sdpa_attention(session)
    _source_side_in_place(session)
    _context_once(session)
    if session.cuda:
        _bf16_autocast(session)
        _fused_adamw(session)
        _torch_compile(session)
    else:
        _sigmoid_form(session)
        _one_query_attention(session)
        session.notes.append("the bf16 autocast, fused AdamW and torch.compile ablations run on CUDA only")


def _presets(session: BenchSession, arch: str) -> list[str]:
    """`arch`'s small and paper presets that the settings ask for, each once."""
    s = session.settings
    return list(dict.fromkeys(p for p in (s.small_presets.get(arch), s.paper_presets.get(arch)) if p))


# ------------------------------------------------------------------------------------------------------------
# Decoding


def _key_value_cache(session: BenchSession) -> None:
    """Transformer greedy search with its key/value cache against re-running the decoder on the prefix."""
    preset = session.settings.small_presets.get(TRANSFORMER)
    if preset is None:
        return
    model = session.build(TRANSFORMER, preset).to(session.device).eval()
    uncached = TransformerWithoutCache(model)
    src, src_lengths = session.on_device(session.batch(session.settings.ablation_sentences))
    session.ablations.append(
        session.compare_decoding(
            f"transformer {preset} greedy: key/value cache",
            f"greedy search of {src.size(0)} sentences",
            ("with the cache", partial(decode, model, src, src_lengths, 1)),
            ("decoder re-run on the prefix", partial(decode, uncached, src, src_lengths, 1)),
        )
    )


def _batched_beam_search(session: BenchSession) -> None:
    """Beam search over a batch of sentences against one sentence per call, for every architecture."""
    s = session.settings
    for arch, preset in s.small_presets.items():
        model = session.build(arch, preset).to(session.device).eval()
        src, src_lengths = session.on_device(session.batch(s.one_at_a_time_sentences))
        session.ablations.append(
            session.compare_decoding(
                f"{arch} {preset} beam search: batched",
                f"beam {s.beam_size} over {src.size(0)} sentences",
                ("one batch", partial(decode, model, src, src_lengths, s.beam_size)),
                (
                    "one sentence at a time",
                    partial(decode_one_at_a_time, model, src, src_lengths, s.beam_size),
                ),
            )
        )


def _source_side_in_place(session: BenchSession) -> None:
    """Beam search leaving the source-side state in place between steps, against reordering all of it."""
    for arch, preset in session.settings.small_presets.items():
        model = session.build(arch, preset).to(session.device).eval()
        session.ablations.append(
            session.compare_beam_search(
                f"{arch} {preset} beam search: source side left in place",
                ("source-side state left in place", model),
                ("whole state reordered every step", ReorderEverything(model)),
            )
        )


def _context_once(session: BenchSession) -> None:
    """The rnn decoder's products with the fixed vector c made once per sentence, against at every step."""
    for preset in _presets(session, RNN):
        model = session.build(RNN, preset).to(session.device).eval()
        every_step = session.build_variant(ContextEveryStepRNN, RNN, preset).to(session.device).eval()
        session.ablations.append(
            session.compare_beam_search(
                f"rnn {preset} beam search: c projected once",
                ("c's products once per sentence", model),
                ("[E y; c] through the GRU every step", every_step),
            )
        )


def _one_query_attention(session: BenchSession) -> None:
    """The Transformer's decoding steps on the CPU: attention as two batched products against SDPA."""
    s = session.settings
    preset = s.small_presets.get(TRANSFORMER)
    if preset is None:
        return
    model = session.build(TRANSFORMER, preset).to(session.device).eval()
    through_sdpa = session.build_variant(TransformerWithOneQuerySDPA, TRANSFORMER, preset)
    through_sdpa = through_sdpa.to(session.device).eval()
    src, src_lengths = session.on_device(session.decode_batch)
    for beam_size in dict.fromkeys((1, s.beam_size)):
        search = "greedy" if beam_size == 1 else f"beam {beam_size}"
        session.ablations.append(
            session.compare_decoding(
                f"transformer {preset} {search} on the CPU: one-query attention",
                f"{search} over {src.size(0)} sentences",
                ("two batched products", partial(decode, model, src, src_lengths, beam_size)),
                ("SDPA", partial(decode, through_sdpa, src, src_lengths, beam_size)),
            )
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
    config: TransformerConfig,
    sentences: int,
    source_len: int,
    target_len: int,
    device: torch.device,
    bf16: bool,
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


def _sdpa_attention(session: BenchSession) -> None:
    """The Transformer's attention through SDPA against spelled out, at each preset's shapes."""
    s = session.settings
    for preset in _presets(session, TRANSFORMER):
        sentences = session.sizes(preset)[0]
        sdpa, explicit = attention_contenders(
            session.model_config(TRANSFORMER, preset),
            sentences,
            s.source_len,
            s.target_len,
            session.device,
            session.cuda,
        )
        logger.info("comparing transformer %s attention: SDPA and explicit", preset)
        session.ablations.append(
            compare(
                f"transformer {preset} attention: SDPA",
                f"forward + backward of encoder self-, decoder causal self- and cross-attention, {sentences} "
                f"sentences at the model's heads and sizes{' in bf16' if session.cuda else ''}",
                sdpa,
                explicit,
                session.device,
                2,
                10,
            )
        )


# ------------------------------------------------------------------------------------------------------------
# Training


def _sigmoid_form(session: BenchSession) -> None:
    """RNNsearch's alignment energies on the CPU through sigmoid against through tanh: training at each
    preset, and beam search at the small one."""
    s = session.settings
    candidate_label, baseline_label = "2 v_a^T sigmoid(2x)", "v_a^T tanh(x)"
    for presets in (s.small_presets, s.paper_presets):
        preset = presets.get(RNNSEARCH)
        if preset is None:
            continue
        sigmoid_form = session.maker(RNNSEARCH, preset)
        tanh_form = partial(session.build_variant, TanhRNNSearch, RNNSEARCH, preset)
        batch = session.batch(session.sizes(preset)[0])
        candidate = session.setup(candidate_label, RNNSEARCH, preset, sigmoid_form, batch)
        baseline = session.setup(baseline_label, RNNSEARCH, preset, tanh_form, batch)
        session.ablations.append(
            session.compare_training(
                f"rnnsearch {preset} training: sigmoid form of eq. 6", candidate, baseline
            )
        )
        del candidate, baseline
        if presets is not s.small_presets:
            continue
        sigmoid_model, tanh_model = (make().to(session.device).eval() for make in (sigmoid_form, tanh_form))
        session.ablations.append(
            session.compare_beam_search(
                f"rnnsearch {preset} beam search: sigmoid form of eq. 6",
                (candidate_label, sigmoid_model),
                (baseline_label, tanh_model),
            )
        )


def _bf16_autocast(session: BenchSession) -> None:
    """Training under bf16 autocast against float32, at every paper preset."""
    for arch, preset in session.settings.paper_presets.items():
        batch, make = session.batch(session.sizes(preset)[0]), session.maker(arch, preset)
        bf16 = session.setup("bf16 autocast", arch, preset, make, batch)
        fp32 = session.setup("float32", arch, preset, make, batch, bf16=False)
        session.ablations.append(
            session.compare_training(f"{arch} {preset} training: bf16 autocast", bf16, fp32)
        )
        del bf16, fp32


def _fused_adamw(session: BenchSession) -> None:
    """Training with fused AdamW against foreach AdamW, on the Transformer at its paper preset: the
    optimizer's cost depends on the parameters, not on how the model computes; one architecture shows it."""
    preset = session.settings.paper_presets.get(TRANSFORMER)
    if preset is None:
        return
    batch, make = session.batch(session.sizes(preset)[0]), session.maker(TRANSFORMER, preset)
    fused = session.setup("fused AdamW", TRANSFORMER, preset, make, batch)
    foreach = session.setup("foreach AdamW", TRANSFORMER, preset, make, batch, fused=False)
    session.ablations.append(
        session.compare_training(f"transformer {preset} training: fused AdamW", fused, foreach)
    )


def _torch_compile(session: BenchSession) -> None:
    """Training compiled (as `nmt train --compile` does) against eager, for the models that compile well."""
    s = session.settings
    for arch in dict.fromkeys([*s.small_presets, *s.paper_presets]):
        if not ARCHITECTURES[arch].model.compiles_well:
            continue
        for preset in _presets(session, arch):
            batch, make = session.batch(session.sizes(preset)[0]), session.maker(arch, preset)
            compiled = session.setup("torch.compile(dynamic=True)", arch, preset, make, batch, compiled=True)
            eager = session.setup("eager", arch, preset, make, batch)
            session.ablations.append(
                session.compare_training(f"{arch} {preset} training: torch.compile", compiled, eager)
            )
            del compiled, eager
