"""An ensemble of trained models, itself a `Seq2Seq`: search, sampling and forced scoring drive it through the
one contract (nmt/models/base.py) and never know that several models answer.

The members may be of different architectures (an RNNsearch with a Transformer, say). They must read the same
source ids and predict over the same target vocabulary; whoever builds an ensemble checks that (the
checkpoints' SentencePiece models, in nmt.decoding.loading), since a model does not know its tokenizers.

How the members' predictions are combined: at every step the ensemble's distribution is the mean of the
members' probabilities, computed in log space,

    log p(y | ...) = logsumexp_m log p_m(y | ...) - log M,

which is what fairseq's `EnsembleModel.forward_decoder` (fairseq/sequence_generator.py) does with its
members' log-probabilities. Its other merit here: the mixture is a probability distribution, so the search's
scores, the sampler's draws and `nmt score`'s numbers stay log-probabilities that sum to one over the
vocabulary. The other common rule, the plain mean of the log-probabilities (a product of experts, e.g.
OpenNMT-py's default), is not normalised unless renormalised at each step. An ensemble of one model is that
model exactly: logsumexp over one member is the member's log-prob, and log 1 = 0.

The state is one state per member (`EnsembleState.members`), each reordered by its own model, so that a
member's `source_side()` fields keep their meaning. The exposed attention (`state.attention`) is the mean of
the attention rows of the members that have attention (a mean of distributions over the same source
positions is one too); `has_attention` holds when any member has it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nmt.models.base import Seq2Seq


@dataclass
class EnsembleState:
    members: tuple[Any, ...]  # each member's own decoder state, in member order
    attention: Tensor | None = None  # (B, S) float32: the mean of the members' attention rows, or None


def mean_probabilities(log_probs: Sequence[Tensor]) -> Tensor:
    """The log of the mean of the members' probabilities, from their log-probs (each (..., V)); float32."""
    if len(log_probs) == 1:
        return log_probs[0].float()
    stacked = torch.stack([lp.float() for lp in log_probs])  # (M, ..., V)
    return torch.logsumexp(stacked, dim=0) - math.log(len(log_probs))


class Ensemble(Seq2Seq):
    """Several models that share the source and target vocabularies, answering as one (see the module
    docstring). The members are used as given: put them in eval mode on one device first."""

    compiles_well = False

    def __init__(self, members: Sequence[Seq2Seq]):
        if not members:
            raise ValueError("an ensemble needs at least one model")
        super().__init__(config=None)  # no config of its own: each member keeps its own
        self.members = nn.ModuleList(members)
        self.has_attention = any(member.has_attention for member in members)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced (B, T, V): the mixture's log-probabilities, which are also valid logits (their
        log_softmax is themselves), so `forward(...).log_softmax(-1)` equals stepping, as for any model."""
        member_log_probs = [
            member(src, src_lengths, tgt_in).float().log_softmax(dim=-1) for member in self.members
        ]
        return mean_probabilities(member_log_probs)

    def encode(self, src: Tensor, src_lengths: Tensor) -> tuple[Any, ...]:
        return tuple(member.encode(src, src_lengths) for member in self.members)

    def start(self, encoded: tuple[Any, ...]) -> EnsembleState:
        states = tuple(member.start(enc) for member, enc in zip(self.members, encoded, strict=True))
        return EnsembleState(states, mean_attention(states))

    def step(self, prev: Tensor, state: EnsembleState) -> tuple[Tensor, EnsembleState]:
        outputs = [member.step(prev, s) for member, s in zip(self.members, state.members, strict=True)]
        states = tuple(new_state for _, new_state in outputs)
        return mean_probabilities([lp for lp, _ in outputs]), EnsembleState(states, mean_attention(states))

    def reorder(self, state: EnsembleState, index: Tensor, same_sources: bool = False) -> EnsembleState:
        states = tuple(
            member.reorder(s, index, same_sources)
            for member, s in zip(self.members, state.members, strict=True)
        )
        attention = state.attention.index_select(0, index) if state.attention is not None else None
        return EnsembleState(states, attention)

    def max_positions(self) -> int | None:
        """The smallest of the members' limits: every member must be able to read the sentence."""
        limits = [limit for member in self.members if (limit := member.max_positions()) is not None]
        return min(limits) if limits else None


def mean_attention(states: Sequence[Any]) -> Tensor | None:
    """The mean of the members' `state.attention` (B, S) over the members that have one, float32; or None."""
    rows = [attention.float() for s in states if (attention := getattr(s, "attention", None)) is not None]
    if not rows:
        return None
    return rows[0] if len(rows) == 1 else torch.stack(rows).mean(dim=0)


__all__ = ["Ensemble", "EnsembleState", "mean_attention", "mean_probabilities"]
