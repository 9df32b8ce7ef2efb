"""RNNsearch (Bahdanau et al. 2014): a bidirectional GRU encoder and a decoder that attends to it.

Each source position j gets an annotation h_j = [forward h_j; backward h_j] (Section 3.2). At every target
step i the decoder scores all annotations against its previous state s_{i-1} with an alignment model, takes
their weighted sum c_i, and updates its state with it (Section 3.1, App. A.2.2). The alignment model is the
paper's additive one (eq. 6) unless the config's `attention` picks another form (nmt/models/scoring.py).

The deep output of App. A.2.2 reads the state the step started from, as the paper writes it:
    t~_i = U_o s_{i-1} + V_o E y_{i-1} + C_o c_i,  t_i = maxout(t~_i),  p(y_i | ...) ~ exp(y_i^T W_o t_i)
(with `maxout_dim` 0, tanh replaces the maxout). `output_state: new` reads s_i instead, the state that has
already taken in y_{i-1} and c_i (docs/results.md compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.models.base import Seq2Seq, source_pad_mask, source_side
from nmt.models.configs import OutputState, RNNSearchConfig
from nmt.models.layers import (
    DeepOutput,
    embeddings,
    gru_cell,
    init_embedding_,
    init_gru_,
    init_linear_,
    init_recurrent_,
)
from nmt.models.scoring import additive_attention, make_scorer


@dataclass
class RNNSearchEncoded:
    annotations: Tensor  # (B, S, 2H) h_j
    keys: Tensor  # (B, S, K) the alignment model's source side (U_a h_j for additive), once per sentence
    pad_mask: Tensor  # (B, S) True at padding
    backward_first: Tensor  # (B, H) the backward encoder's state at the first source word


@dataclass
class RNNSearchState:
    hidden: Tensor  # (B, H) s_{i-1}, float32
    annotations: Tensor = source_side()  # (B, S, 2H)
    keys: Tensor = source_side()  # (B, S, K)
    pad_mask: Tensor = source_side()  # (B, S) True at padding
    attention: Tensor | None = None  # (B, S) alpha_i of the last step


class RNNSearch(Seq2Seq):
    """Bidirectional GRU encoder, attention (additive unless configured otherwise), GRU decoder with a deep
    output layer."""

    has_attention = True

    def __init__(self, config: RNNSearchConfig):
        super().__init__(config)
        E, H = config.embed_dim, config.hidden_dim
        self.scorer = make_scorer(config.attention, H, config.attention_dim)  # the equation of e_ij
        self.src_embed, self.tgt_embed = embeddings(
            config.src_vocab_size, config.tgt_vocab_size, E, config.share_embeddings
        )
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        # The alignment model's source-side projection (U_a for additive), applied once per sentence in
        # `encode`; the dot forms have none. Made here, so that a seed gives the same initial weights as
        # before the form could be chosen.
        keys = self.scorer.key_dim
        self.to_keys = nn.Linear(2 * H, keys, bias=False) if keys else None
        self.init_state = nn.Linear(H, H)  # W_s in s_0 = tanh(W_s backward-h_1)
        # The decoder GRU s_i = f(s_{i-1}, y_{i-1}, c_i) (eq. 4, App. A.2.2), split by what each product reads
        self.from_prev = nn.Linear(E, 3 * H)  # W, W_z, W_r applied to E y_{i-1}: all steps at once
        self.from_context = nn.Linear(2 * H, 3 * H, bias=False)  # C, C_z, C_r applied to c_i
        # Everything that reads s_{i-1}, fused into one product per step: the alignment model's query side
        # (W_a for additive; nothing for the forms that score s_{i-1} itself) and U, U_z, U_r.
        self.from_state = nn.Linear(H, self.scorer.query_dim + 3 * H)
        scoring_parameters = self.scorer.new_parameters()  # v_a (additive), g (cosine)
        for name, parameter in scoring_parameters.items():
            setattr(self, name, parameter)
        self.output = DeepOutput(H, E, 2 * H, config.maxout_dim, config.tgt_vocab_size, config.dropout)
        # Unit-variance embeddings: with E^-1/2 the GRU inputs start so small that the recurrence barely sees
        # the words, and on the synthetic corpus training took several times as many updates to get going.
        for embedding in dict.fromkeys([self.src_embed, self.tgt_embed]):  # in order; a set is not
            init_embedding_(embedding, std=1.0)
        init_gru_(self.encoder)
        scoring_linears = [p for p in scoring_parameters.values() if isinstance(p, nn.Linear)]
        for linear in (self.to_keys, self.init_state, self.from_prev, self.from_context, *scoring_linears):
            if linear is not None:
                init_linear_(linear)
        init_linear_(self.from_state)
        # the recurrent blocks U, U_z, U_r: orthogonal (App. B.1)
        init_recurrent_(self.from_state.weight[self.scorer.query_dim :])
        self.scorer.init_(self)  # the form's own start (additive: v_a = 0, App. B.1)

    def encode(self, src: Tensor, src_lengths: Tensor) -> RNNSearchEncoded:
        embedded = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, last = self.encoder(packed)  # last (2, B, H): [forward at the end, backward at word 1]
        # (B, S, 2H) h_j = [forward h_j; backward h_j], zero at padding
        annotations, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=src.size(1))
        return RNNSearchEncoded(
            annotations=annotations,
            keys=self.scorer.keys(self, annotations),  # (B, S, K)
            pad_mask=source_pad_mask(src),
            backward_first=last[1],  # (B, H)
        )

    def start(self, encoded: RNNSearchEncoded) -> RNNSearchState:
        hidden = torch.tanh(self.init_state(encoded.backward_first)).float()  # (B, H) s_0 (App. A.2.2)
        return RNNSearchState(
            hidden=hidden, annotations=encoded.annotations, keys=encoded.keys, pad_mask=encoded.pad_mask
        )

    def align(self, query: Tensor, keys: Tensor, pad_mask: Tensor) -> Tensor:
        """alpha_i (B, S) float32 from the query (additive: W_a s_{i-1} (B, A)) and the keys (additive:
        U_a h_j (B, S, A)): the alignment model a (eq. 6), in the configured form."""
        return self.scorer.align(self, query, keys, pad_mask)

    def _cell(
        self, prev_gates: Tensor, hidden: Tensor, keys: Tensor, annotations: Tensor, pad_mask: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One decoder step from W E y_{i-1} (B, 3H) and s_{i-1} (B, H).

        Returns s_i (B, H), c_i (B, 2H) and alpha_i (B, S). Shared by `forward` and `step`."""
        projected, state_gates = self.from_state(hidden).split(
            [self.scorer.query_dim, prev_gates.size(-1)], -1
        )
        alpha = self.align(self.scorer.query(projected, hidden), keys, pad_mask)  # (B, S): against s_{i-1}
        # c_i = sum_j alpha_ij h_j (eq. 5)
        context = torch.bmm(alpha[:, None, :].to(annotations.dtype), annotations)[:, 0]  # (B, 2H)
        hidden = gru_cell(prev_gates + self.from_context(context), state_gates, hidden)  # (B, H) s_i
        return hidden, context, alpha

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(self.encode(src, src_lengths))
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        prev_gates = self.from_prev(embedded)  # (B, T, 3H): the input products of all steps in one go
        hidden, keys, annotations, pad_mask = state.hidden, state.keys, state.annotations, state.pad_mask
        read_previous = self.config.output_state == OutputState.previous
        states, contexts = [], []
        for i in range(tgt_in.size(1)):
            previous = hidden
            hidden, context, _ = self._cell(prev_gates[:, i], hidden, keys, annotations, pad_mask)
            states.append(previous if read_previous else hidden)  # s_{i-1} or s_i
            contexts.append(context)
        # The output layer does not feed back into the recurrence: one pass over all steps.
        return self.output(torch.stack(states, 1), embedded, torch.stack(contexts, 1))  # (B, T, V)

    def step(self, prev: Tensor, state: RNNSearchState) -> tuple[Tensor, RNNSearchState]:
        embedded = self.dropout(self.tgt_embed(prev))  # (B, E)
        hidden, context, alpha = self._cell(
            self.from_prev(embedded), state.hidden, state.keys, state.annotations, state.pad_mask
        )
        read = state.hidden if self.config.output_state == OutputState.previous else hidden  # s_{i-1} or s_i
        logits = self.output(read, embedded, context)  # (B, V)
        return logits.float().log_softmax(dim=-1), replace(state, hidden=hidden, attention=alpha)


# additive_attention lives in scoring.py now; it stays importable from here, where it was.
__all__ = ["RNNSearch", "RNNSearchEncoded", "RNNSearchState", "additive_attention"]
