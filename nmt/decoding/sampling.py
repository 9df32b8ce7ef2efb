"""Ancestral sampling, written against the model contract like greedy and beam search (search.py).

Each sample is drawn token by token from the model's next-token distribution, reshaped by the usual knobs:
the log-probs are divided by the temperature, then top-k keeps the k likeliest tokens and top-p (nucleus
sampling, Holtzman et al. 2019) the smallest set of the likeliest tokens whose probability reaches p (at
least one token always stays). The length limit, EOS and the special tokens follow greedy search exactly:
PAD and BOS are never drawn, and at the length limit EOS is the only token left.

The N samples of a sentence are N rows of one batch, and finished rows leave the batch as in greedy search.

Reproducibility: every sample has its own stream of uniform numbers, a function of (seed, the sentence's
line number, the sample's number, the step) computed on the CPU (`uniform_streams`), and a token is picked
by inverting the cumulative distribution with that step's number. So a sentence gets the same samples
whatever else is in its batch, and its first sample does not change when more samples are asked for. (Rows
of a padded batch differ from a sentence alone only by rounding, which moves a draw only if its number falls
within rounding of a boundary between two tokens. The numbers are the same on every device; the model's
rounding is not, so the samples of one seed on a GPU and on the CPU agree only as far as their
probabilities do.)

A sample's `score` and `log_prob` are the model's log-probability of it (after the special-token mask, before
temperature and filtering), so that samples can be compared with each other and with beam search's output.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.search import Hypothesis, mask_specials, max_output_lengths
from nmt.models.base import Seq2Seq

NEG_INF = float("-inf")


def sample_seed(seed: int, sentence: int, sample: int) -> int:
    """The key of one sample of one sentence: a hash of the three numbers (64 bits)."""
    digest = hashlib.blake2b(f"{seed}/{sentence}/{sample}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def uniform_streams(keys: Sequence[int], width: int) -> Tensor:
    """(len(keys), width) float64 uniform numbers in [0, 1): row r is the SplitMix64 sequence (Steele, Lea and
    Flood 2014; the constants of Vigna's splitmix64.c) started from keys[r], so number t of a row depends on
    its key and t alone. Counter-based and vectorised: a stream costs nothing to start, where a seeded
    torch.Generator per sample costs tens of microseconds."""
    state = np.asarray(keys, dtype=np.uint64)[:, None] + np.arange(1, width + 1, dtype=np.uint64) * _GAMMA
    mixed = (state ^ (state >> np.uint64(30))) * _MIX_1  # uint64 arithmetic wraps, as SplitMix64 wants
    mixed = (mixed ^ (mixed >> np.uint64(27))) * _MIX_2
    mixed ^= mixed >> np.uint64(31)
    return torch.from_numpy((mixed >> np.uint64(11)).astype(np.float64) * 2.0**-53)  # the top 53 bits


_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def filtered_probabilities(log_probs: Tensor, temperature: float, top_k: int, top_p: float) -> Tensor:
    """(R, V) float64 weights to draw from, proportional to the probabilities: softmax(log_probs /
    temperature) over the top-k tokens (top_k > 0), then zero outside the top-p nucleus (top_p < 1) and not
    renormalised after that (`draw` scales by each row's total). A token the model gives no probability
    stays at zero."""
    logits = log_probs.double() / temperature
    if 0 < top_k < logits.size(-1):
        kept = logits.topk(top_k, dim=-1).indices  # exactly k, whatever the ties
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, kept, True)
        logits = logits.masked_fill(~keep, NEG_INF)
    probs = logits.softmax(dim=-1)
    if top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs  # what the likelier tokens already hold
        drop_sorted = mass_before >= top_p  # the first token has 0 before it: it always stays
        drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
        probs = probs.masked_fill(drop, 0.0)
    return probs


def draw(probs: Tensor, uniforms: Tensor) -> Tensor:
    """(R,) one token per row of `probs` (R, V), by inverting its cumulative distribution at uniforms (R,) in
    [0, 1): the token whose cumulative interval holds uniform * total mass. A zero-probability token has an
    empty interval, so it is never drawn."""
    cumulative = probs.cumsum(dim=-1)  # (R, V) float64
    targets = uniforms.to(cumulative) * cumulative[:, -1]  # (R,)
    tokens = torch.searchsorted(cumulative, targets[:, None], right=True).squeeze(1)
    return tokens.clamp_(max=probs.size(-1) - 1)


@torch.inference_mode()
def sample_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    *,
    sentence_ids: Sequence[int],
    seed: int,
    num_samples: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    max_len_a: float,
    max_len_b: int,
    max_output_len: int | None = None,
) -> list[list[Hypothesis]]:
    """`num_samples` samples of each of the B sentences of `src` (B, S), in the order drawn.

    `sentence_ids` (B) numbers the sentences for the random streams (the line numbers of the input), so that
    a sentence's samples depend only on (seed, its number, the options), never on the batch around it.
    With top_k=1 every sample is greedy search's output.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    if top_k < 0 or not 0 < top_p <= 1:
        raise ValueError(f"need top_k >= 0 and 0 < top_p <= 1, got {top_k} and {top_p}")
    device = src.device
    batch, n = src.size(0), num_samples
    rows = batch * n  # row b*N + j is sample j of sentence b
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b, max_output_len).repeat_interleave(n)
    steps = int(max_lens.max()) + 1 if batch else 0
    keys = [sample_seed(seed, sentence, j) for sentence in sentence_ids for j in range(n)]
    uniforms = uniform_streams(keys, steps).to(device)  # (R, L + 1)
    max_lens = max_lens.to(device)

    state = model.start(model.encode(src, src_lengths))
    state = model.reorder(state, torch.arange(batch, device=device).repeat_interleave(n))
    out_tokens = torch.full((rows, steps), PAD_ID, dtype=torch.long, device=device)  # (R, L + 1)
    out_lengths = torch.zeros(rows, dtype=torch.long, device=device)
    out_log_probs = torch.zeros(rows, dtype=torch.float32, device=device)

    active = torch.arange(rows, device=device)  # the row of each sample still being drawn
    total = torch.zeros(rows, dtype=torch.float32, device=device)  # (A,) log-prob so far
    prev = torch.full((rows,), BOS_ID, dtype=torch.long, device=device)
    for t in range(steps):
        log_probs, state = model.step(prev, state)
        log_probs = mask_specials(log_probs.float(), max_lens[active] == t)  # (A, V)
        token = draw(filtered_probabilities(log_probs, temperature, top_k, top_p), uniforms[active, t])
        total = total + log_probs.gather(1, token[:, None]).squeeze(1)  # as greedy adds its pick's log-prob
        out_tokens[active, t] = token
        finished = token == EOS_ID  # (A,)
        num_finished = int(finished.sum())  # one host-device sync per step
        if num_finished:
            out_lengths[active[finished]] = t
            out_log_probs[active[finished]] = total[finished]
            if num_finished == active.numel():
                break
            keep = (~finished).nonzero().squeeze(1)  # (A',)
            state = model.reorder(state, keep)
            active, total, token = active[keep], total[keep], token[keep]
        prev = token

    out_tokens, out_lengths, out_log_probs = out_tokens.cpu(), out_lengths.tolist(), out_log_probs.tolist()
    samples = [
        Hypothesis(
            tokens=out_tokens[r, : out_lengths[r]].tolist(), score=out_log_probs[r], log_prob=out_log_probs[r]
        )
        for r in range(rows)
    ]
    return [samples[b * n : (b + 1) * n] for b in range(batch)]


__all__ = ["draw", "filtered_probabilities", "sample_search", "sample_seed", "uniform_streams"]
