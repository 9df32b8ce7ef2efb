"""Inputs and loops that the model tests share (test_models, test_scoring, test_transformer_variants)."""

from __future__ import annotations

import torch

from nmt.data.batching import pad_sources
from nmt.data.special import BOS_ID, PAD_ID


def padded_batch():
    """Three pairs, all lengths different: src = ids + EOS, tgt_in = BOS + ids, right-padded.

    Returns (src (3, 7), src_lengths, tgt_in (3, 8), tgt_lengths); lengths count EOS and BOS."""
    sources = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [14, 15, 16, 17]]
    targets = [[4, 5, 6], [7, 8, 9, 10, 11, 12, 13], [14, 15]]
    src, src_lengths = pad_sources(sources)
    tgt_in = torch.full((3, 8), PAD_ID)
    for row, t in enumerate(targets):
        tgt_in[row, : len(t) + 1] = torch.tensor([BOS_ID, *t])
    return src, src_lengths, tgt_in, torch.tensor([len(t) + 1 for t in targets])


def run_steps(model, src, src_lengths, tgt_in):
    """Feed `tgt_in` one token at a time: log-probs (B, T, V), `state.attention` stacked (B, T, S) or None
    for a model without attention, and the last state."""
    state = model.start(model.encode(src, src_lengths))
    log_probs, attention = [], []
    for t in range(tgt_in.size(1)):
        step_log_probs, state = model.step(tgt_in[:, t], state)
        log_probs.append(step_log_probs)
        attention.append(state.attention)
    stacked = None if attention[0] is None else torch.stack(attention, dim=1)
    return torch.stack(log_probs, dim=1), stacked, state
