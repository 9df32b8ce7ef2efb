"""Greedy and batched beam search, written once against the model contract in `nmt/models/base.py`.

Both searches drive any `Seq2Seq` through `encode`, `start`, `step` and `reorder` only: they never look at the
architecture. Each step feeds one token per row; the Transformer answers from its key/value cache, the RNNs
from their hidden state, so the prefix is never run again.

Conventions:
- A hypothesis holds target ids without BOS/EOS; |y| (its length for normalisation) counts EOS too, so an
  empty output has length 1.
- The source length is the number of source subwords (`src_lengths - 1`, without the EOS). A sentence may
  produce at most `floor(a * source_length + b)` tokens (capped by `max_output_len`); at that point EOS is
  the only token allowed, so every hypothesis ends.
- PAD and BOS are never produced.
- Sentences that are done leave the batch (their rows are dropped with `reorder`), so a long sentence does
  not keep short ones busy.
- The log-probs that `step` returns are masked in place (they are a fresh tensor each step).
- Both run under `torch.inference_mode()` and work inside `torch.autocast` (fp16/bf16): scores are kept in
  float32 and attention weights are returned as float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.config import BeamStop, LengthNormalization
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.models.base import Seq2Seq

NEG_INF = float("-inf")
UNLIMITED_MAX_SOURCE_TOKENS = 1024  # for models without a position limit: keeps a runaway line affordable


@dataclass
class Hypothesis:
    """One translation of one sentence."""

    tokens: list[int]  # target ids without BOS/EOS
    score: float  # the ranking score: length-normalised log-prob (beam search) or the log-prob (greedy)
    log_prob: float  # the total log-probability of tokens + EOS
    attention: Tensor | None = None  # (len(tokens) + 1, S_real) on CPU, the last row for EOS; or None


# ------------------------------------------------------------------------------------------------------------
# Pure pieces


def length_normalize(
    log_probs: Tensor, lengths: Tensor | int, normalization: LengthNormalization, alpha: float
) -> Tensor:
    """The ranking score of hypotheses of total log-probability `log_probs` and `lengths` tokens (with EOS).

    GNMT (Wu et al. 2016, eq. 14): lp(y) = ((5 + |y|) / 6) ** alpha, score = log P / lp(y).
    """
    lengths = torch.as_tensor(lengths, dtype=log_probs.dtype, device=log_probs.device)
    if normalization == LengthNormalization.gnmt:
        return log_probs / ((5.0 + lengths) / 6.0) ** alpha
    if normalization == LengthNormalization.average:
        return log_probs / lengths
    return log_probs + torch.zeros_like(lengths)  # broadcast like the other two


def max_output_lengths(src_lengths: Tensor, a: float, b: int, cap: int | None = None) -> Tensor:
    """(B,) the most tokens (without EOS) each sentence may produce: floor(a * source_length + b), >= 0."""
    source_words = (src_lengths - 1).to(torch.float64)  # src_lengths counts the EOS
    limits = torch.floor(source_words * a + b).clamp(min=0).long()
    return limits.clamp(max=cap) if cap is not None else limits


def source_limits(model: Seq2Seq) -> tuple[int, int | None]:
    """(most source subwords a model takes, most output tokens it can produce or None for no limit).

    A model with a position limit (the Transformer's position encodings) spends one position on each side on
    the EOS; a model without one (the RNNs) is capped only to keep a runaway line affordable.
    """
    positions = model.max_positions()
    if positions is not None:
        return positions - 1, positions - 1
    return UNLIMITED_MAX_SOURCE_TOKENS, None


def mask_specials(log_probs: Tensor, force_eos: Tensor) -> Tensor:
    """Forbid PAD and BOS everywhere, and everything but EOS in rows where `force_eos` (...,) is True.

    Works in place on `log_probs` (..., V), a fresh tensor from `step`.
    """
    log_probs[..., PAD_ID] = NEG_INF
    log_probs[..., BOS_ID] = NEG_INF
    if force_eos.any():
        eos = log_probs[..., EOS_ID].clone()
        log_probs.masked_fill_(force_eos[..., None], NEG_INF)
        log_probs[..., EOS_ID] = torch.where(force_eos, eos, log_probs[..., EOS_ID])
    return log_probs


def _attention(state) -> Tensor:
    attention = getattr(state, "attention", None)
    if attention is None:
        raise ValueError("return_attention=True needs a model with attention (model.has_attention)")
    return attention.float()  # (rows, S), float32 even under autocast


# ------------------------------------------------------------------------------------------------------------
# Greedy search


@torch.inference_mode()
def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    *,
    max_len_a: float,
    max_len_b: int,
    max_output_len: int | None = None,
    return_attention: bool = False,
) -> list[Hypothesis]:
    """The most probable next token at every step, for a batch of B sentences; one hypothesis each.

    `src` (B, S) and `src_lengths` (B,) follow the model contract (ids + EOS, right-padded). The score is the
    plain sum of log-probs. The result equals `beam_search(..., beam_size=1)` in tokens and log-prob.
    """
    device = src.device
    batch = src.size(0)
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b, max_output_len).to(device)  # (B,)
    steps = int(max_lens.max()) + 1 if batch else 0
    state = model.start(model.encode(src, src_lengths))

    out_tokens = torch.full((batch, steps), PAD_ID, dtype=torch.long, device=device)  # (B, L + 1)
    out_lengths = torch.zeros(batch, dtype=torch.long, device=device)
    out_log_probs = torch.zeros(batch, dtype=torch.float32, device=device)
    out_attention = torch.zeros(batch, steps, src.size(1), device=device) if return_attention else None

    active = torch.arange(batch, device=device)  # original index of each row still decoding
    total = torch.zeros(batch, dtype=torch.float32, device=device)  # (A,) log-prob so far
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    for t in range(steps):
        log_probs, state = model.step(prev, state)
        log_probs = mask_specials(log_probs.float(), max_lens[active] == t)  # (A, V)
        # Same arithmetic as beam search with one beam, so that the two agree exactly.
        total, token = (total[:, None] + log_probs).max(dim=-1)  # (A,), (A,)
        out_tokens[active, t] = token
        if out_attention is not None:
            out_attention[active, t] = _attention(state)
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
    out_attention = out_attention.cpu() if out_attention is not None else None
    lengths = src_lengths.tolist()
    return [
        Hypothesis(
            tokens=out_tokens[i, : out_lengths[i]].tolist(),
            score=out_log_probs[i],
            log_prob=out_log_probs[i],
            attention=None if out_attention is None else out_attention[i, : out_lengths[i] + 1, : lengths[i]],
        )
        for i in range(batch)
    ]


# ------------------------------------------------------------------------------------------------------------
# Beam search


@torch.inference_mode()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    *,
    beam_size: int,
    nbest: int = 1,
    length_penalty: float = 1.0,
    normalization: LengthNormalization = LengthNormalization.gnmt,
    max_len_a: float,
    max_len_b: int,
    max_output_len: int | None = None,
    return_attention: bool = False,
    stop: BeamStop = BeamStop.first_k,
) -> list[list[Hypothesis]]:
    """Beam search over a batch of B sentences at once; the `nbest` best hypotheses of each, best first.

    The K beams of every sentence are rows of one (B*K)-row batch, and each step is a handful of tensor
    operations over all of them: the K*V continuations of a sentence are ranked with one `topk`.

    - Continuations ending in EOS among the K best of a step become finished hypotheses, ranked by their
      length-normalised score (`normalization`, with GNMT's alpha = `length_penalty`); each sentence keeps its
      K best finished ones. The live beams are the K best continuations that do not end in EOS.
    - A sentence is done when its n-th best finished score (n = `nbest`) is at least the best score any live
      beam could still reach, or when it has no live beam left. The bound is exact: log-probs only fall as a
      hypothesis grows, and every normaliser (GNMT's ((5 + |y|) / 6) ** alpha with alpha >= 0, |y|, or 1) is
      positive and largest at the length limit, so a live beam of log-prob lp <= 0 can reach at most
      lp / normaliser(limit + 1). The n-th best, not the best: all `nbest` returned must be beyond reach.
    - `stop=BeamStop.first_k` (the usual rule) also ends a sentence as soon as it has K finished hypotheses,
      though a live beam may still beat them; `stop=BeamStop.exact` keeps its live beams expanding, and a
      continuation that ends better than the worst of the K kept finished ones replaces it.
    - The search stops when every sentence is done.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be at least 1, got {beam_size}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must be between 1 and the beam size {beam_size}, got {nbest}")
    if length_penalty < 0:  # the early-exit bound needs a normaliser that grows with the length
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    device = src.device
    batch, k = src.size(0), beam_size
    max_lens = max_output_lengths(src_lengths, max_len_a, max_len_b, max_output_len).to(device)  # (B,)
    steps = int(max_lens.max()) + 1 if batch else 0

    def normalize(log_probs: Tensor, lengths: Tensor | int) -> Tensor:
        return length_normalize(log_probs, lengths, normalization, length_penalty)

    # Each sentence's decoder state, repeated for its K beams: rows b*K ... b*K + K-1 belong to sentence b.
    state = model.start(model.encode(src, src_lengths))
    state = model.reorder(state, torch.arange(batch, device=device).repeat_interleave(k))

    # Finished hypotheses, indexed by the original sentence; scores sorted best first, -inf where empty.
    fin_scores = torch.full((batch, k), NEG_INF, device=device)  # (B, K)
    fin_log_probs = torch.full((batch, k), NEG_INF, device=device)  # (B, K)
    fin_lengths = torch.zeros((batch, k), dtype=torch.long, device=device)  # (B, K) tokens without EOS
    fin_tokens = torch.full((batch, k, steps), PAD_ID, dtype=torch.long, device=device)  # (B, K, L + 1)
    fin_attention = torch.zeros(batch, k, steps, src.size(1), device=device) if return_attention else None

    # Live beams of the active sentences. Only beam 0 starts alive, so the first step expands one beam.
    active = torch.arange(batch, device=device)  # (A,) original index of each active sentence
    beam_log_probs = torch.full((batch, k), NEG_INF, device=device)  # (A, K)
    beam_log_probs[:, 0] = 0.0
    history = torch.zeros((batch * k, 0), dtype=torch.long, device=device)  # (A*K, t) tokens so far
    attention_history = torch.zeros(batch * k, 0, src.size(1), device=device) if return_attention else None
    prev = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)  # (A*K,)

    for t in range(steps):
        num_active = active.numel()
        log_probs, state = model.step(prev, state)  # (A*K, V)
        vocab = log_probs.size(-1)
        force_eos = (max_lens[active] == t)[:, None]  # (A, 1)
        log_probs = mask_specials(log_probs.float().view(num_active, k, vocab), force_eos)  # (A, K, V)
        candidates = (beam_log_probs[:, :, None] + log_probs).view(num_active, k * vocab)  # (A, K*V)
        # 2K candidates: at most K of them end in EOS (one per beam), so K live beams always remain.
        top_log_probs, top_index = candidates.topk(min(2 * k, k * vocab), dim=1)  # (A, 2K)
        origin = top_index // vocab  # (A, 2K) the beam each candidate extends
        token = top_index % vocab  # (A, 2K)
        origin_rows = torch.arange(num_active, device=device)[:, None] * k + origin  # (A, 2K) rows in A*K
        step_attention = _attention(state) if return_attention else None  # (A*K, S)

        # Finished: EOS continuations among the K best (the ones a K-beam would have kept).
        rank = torch.arange(top_index.size(1), device=device)  # (2K,)
        ends = (token == EOS_ID) & (rank < k) & torch.isfinite(top_log_probs)  # (A, 2K)
        if ends.any():
            new_scores = normalize(top_log_probs, t + 1).masked_fill(~ends, NEG_INF)  # (A, 2K)
            merged_scores, pick = torch.cat([fin_scores[active], new_scores], dim=1).topk(k, dim=1)  # (A, K)
            fin_scores[active] = merged_scores
            fin_log_probs[active] = torch.cat([fin_log_probs[active], top_log_probs], dim=1).gather(1, pick)
            new_lengths = torch.full_like(token, t)
            fin_lengths[active] = torch.cat([fin_lengths[active], new_lengths], dim=1).gather(1, pick)
            new_tokens = torch.full_like(token[:, :, None].expand(-1, -1, steps), PAD_ID)  # (A, 2K, L + 1)
            new_tokens[:, :, :t] = history[origin_rows]  # (A, 2K, t)
            all_tokens = torch.cat([fin_tokens[active], new_tokens], dim=1)  # (A, 3K, L + 1)
            fin_tokens[active] = all_tokens.gather(1, pick[:, :, None].expand(-1, -1, steps))
            if fin_attention is not None:
                new_attention = torch.zeros(num_active, token.size(1), steps, src.size(1), device=device)
                new_attention[:, :, :t] = attention_history[origin_rows]  # (A, 2K, t, S)
                new_attention[:, :, t] = step_attention[origin_rows]  # (A, 2K, S): the attention for EOS
                all_attention = torch.cat([fin_attention[active], new_attention], dim=1)  # (A, 3K, L + 1, S)
                index = pick[:, :, None, None].expand(-1, -1, steps, src.size(1))
                fin_attention[active] = all_attention.gather(1, index)

        # Live: the K best continuations that do not end in EOS, in rank order.
        order = torch.where(token == EOS_ID, rank + top_index.size(1), rank)  # EOS ones sort last
        live = order.topk(k, dim=1, largest=False).indices  # (A, K) positions among the 2K
        beam_log_probs = top_log_probs.gather(1, live)  # (A, K)
        next_token = token.gather(1, live)  # (A, K)
        beam_log_probs = beam_log_probs.masked_fill(next_token == EOS_ID, NEG_INF)  # only if V is tiny
        rows = origin_rows.gather(1, live).view(-1)  # (A*K,)
        history = torch.cat([history[rows], next_token.view(-1, 1)], dim=1)  # (A*K, t + 1)
        if attention_history is not None:
            attention_history = torch.cat([attention_history[rows], step_attention[rows, None]], dim=1)

        # Done: no live beam can still beat the n-th best finished one (or, with first-k, K have finished).
        best_live = beam_log_probs.max(dim=1).values  # (A,)
        reachable = normalize(best_live, max_lens[active] + 1)  # (A,) the best score a live beam could reach
        finished_scores = fin_scores[active]  # (A, K)
        done = (finished_scores[:, nbest - 1] >= reachable) | ~torch.isfinite(best_live)  # (A,)
        if stop == BeamStop.first_k:
            done |= torch.isfinite(finished_scores).all(dim=1)
        num_done = int(done.sum())  # one host-device sync per step for both tests below
        if num_done == num_active:
            break
        if num_done:  # drop the sentences that are done
            keep = (~done).nonzero().squeeze(1)  # (A',) sentences still searching
            keep_rows = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)  # (A'*K,)
            active, beam_log_probs, next_token = active[keep], beam_log_probs[keep], next_token[keep]
            rows, history = rows[keep_rows], history[keep_rows]
            if attention_history is not None:
                attention_history = attention_history[keep_rows]
        # Unless a sentence left, every row still holds its sentence: the source-side state stays put.
        state = model.reorder(state, rows, same_sources=not num_done)
        prev = next_token.view(-1)

    return _collect(fin_scores, fin_log_probs, fin_lengths, fin_tokens, fin_attention, src_lengths, nbest)


def _collect(scores, log_probs, lengths, tokens, attention, src_lengths, nbest) -> list[list[Hypothesis]]:
    """Turn the finished-hypothesis tensors into lists of `Hypothesis`, best first."""
    scores, log_probs, lengths = scores.tolist(), log_probs.tolist(), lengths.tolist()
    tokens = tokens.cpu()
    attention = attention.cpu() if attention is not None else None
    source_lengths = src_lengths.tolist()
    results = []
    for i in range(len(scores)):
        hypotheses = []
        for r in range(nbest):
            if not math.isfinite(scores[i][r]):
                break
            n = lengths[i][r]
            hypotheses.append(
                Hypothesis(
                    tokens=tokens[i, r, :n].tolist(),
                    score=scores[i][r],
                    log_prob=log_probs[i][r],
                    attention=None if attention is None else attention[i, r, : n + 1, : source_lengths[i]],
                )
            )
        results.append(hypotheses)
    return results


__all__ = [
    "Hypothesis",
    "beam_search",
    "greedy_search",
    "length_normalize",
    "mask_specials",
    "max_output_lengths",
    "source_limits",
]
