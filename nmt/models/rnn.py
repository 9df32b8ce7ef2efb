"""The RNN Encoder-Decoder of Cho et al. 2014 ("RNNencdec" in Bahdanau et al. 2014): no attention.

The encoder reads the source with a GRU and squeezes it into one fixed-length vector c; the decoder sees the
source only through c, which sets its initial state and is fed to every step and to the output layer
(Cho et al. 2014, Section 2.2 and App. A). This fixed-length bottleneck is what attention removes.

The decoder (App. A.2), with h'_0 = tanh(V' c):
    z' = sigma(W'_z e(y_{t-1}) + U'_z h'_{t-1} + C_z c)
    r' = sigma(W'_r e(y_{t-1}) + U'_r h'_{t-1} + C_r c)
    h~' = tanh(W' e(y_{t-1}) + r' * (U' h'_{t-1} + C c))
    h'_t = z' * h'_{t-1} + (1 - z') * h~'
and the output layer reads h'_t, e(y_{t-1}) and c. With `context_in_reset` off, the candidate reads c beside
the reset gate instead, tanh(W' e(y_{t-1}) + C c + r' * U' h'_{t-1}): a plain GRU fed [e(y_{t-1}); c], which
`torch.nn.GRU` runs over a whole target at once (docs/results.md compares the two).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from nmt.models.base import Seq2Seq, source_side
from nmt.models.configs import RNNConfig
from nmt.models.layers import DeepOutput, embeddings, gru_cell, init_embedding_, init_gru_, init_linear_


@dataclass
class RNNEncoded:
    summary: Tensor  # (B, H) c = tanh(V h_N), the whole source in one vector


@dataclass
class RNNState:
    hidden: Tensor  # (B, H) the decoder state s_{i-1}, float32
    summary: Tensor = source_side()  # (B, H) c
    context_gates: Tensor = source_side()  # (B, 3H) c's products added to the input side, plus the input bias
    reset_context: Tensor | None = source_side()  # (B, H) C c, inside the reset gate; None when beside it
    context_readout: Tensor = source_side()  # (B, 2l or E) the output layer's C_o c
    attention: None = None  # no attention in this model


class RNNEncoderDecoder(Seq2Seq):
    """GRU encoder -> fixed vector c -> GRU decoder conditioned on c at every step."""

    has_attention = False

    def __init__(self, config: RNNConfig):
        super().__init__(config)
        E, H = config.embed_dim, config.hidden_dim
        self.src_embed, self.tgt_embed = embeddings(
            config.src_vocab_size, config.tgt_vocab_size, E, config.share_embeddings
        )
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.GRU(E, H, batch_first=True)
        self.summarize = nn.Linear(H, H)  # V in c = tanh(V h_N)
        self.init_state = nn.Linear(H, H)  # V' in s_0 = tanh(V' c)
        # The decoder reads [E y_{i-1}; c]: c enters every gate (Cho et al. 2014, App. A.2). Its weights are
        # a GRU's over that input; c's columns C hold C_r, C_z and C. With c beside the reset gate the GRU
        # itself runs a whole target at once; with c inside it, `decoder_states` steps through `gru_cell`.
        self.decoder = nn.GRU(E + H, H, batch_first=True)
        self.output = DeepOutput(H, E, H, config.maxout_dim, config.tgt_vocab_size, config.dropout)
        # Unit-variance embeddings: with E^-1/2 the GRU inputs start so small that the recurrence barely sees
        # the words, and on the synthetic corpus training took several times as many updates to get going.
        for embedding in dict.fromkeys([self.src_embed, self.tgt_embed]):  # in order; a set is not
            init_embedding_(embedding, std=1.0)
        for gru in (self.encoder, self.decoder):
            init_gru_(gru)
        for linear in (self.summarize, self.init_state):
            init_linear_(linear)

    def encode(self, src: Tensor, src_lengths: Tensor) -> RNNEncoded:
        embedded = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, last = self.encoder(packed)  # (1, B, H): the state after each sentence's last real token
        return RNNEncoded(summary=torch.tanh(self.summarize(last[0])))  # (B, H)

    def start(self, encoded: RNNEncoded) -> RNNState:
        c = encoded.summary
        hidden = torch.tanh(self.init_state(c)).float()  # (B, H) s_0 = tanh(V' c)
        # c is the same at every step, so it is projected once here, not at every token.
        context_weight = self.decoder.weight_ih_l0[:, self.config.embed_dim :]  # (3H, H): c's columns
        products = F.linear(c, context_weight)  # (B, 3H): C_r c, C_z c, C c
        reset_context = None
        if self.config.context_in_reset:  # C c moves from the input side to inside the reset gate
            gates, reset_context = products.split([2 * self.config.hidden_dim, self.config.hidden_dim], -1)
            products = torch.cat([gates, torch.zeros_like(reset_context)], -1)
        return RNNState(
            hidden=hidden,
            summary=c,
            context_gates=products + self.decoder.bias_ih_l0,  # (B, 3H)
            reset_context=reset_context,
            context_readout=self.output.from_context(c),
        )

    def decoder_states(self, embedded: Tensor, state: RNNState) -> Tensor:
        """Decoder states h'_1..h'_T (B, T, H) for the inputs E y (B, T, E) from `state` (Cho et al. 2014,
        App. A.2)."""
        if not self.config.context_in_reset:  # a plain GRU over [E y_{i-1}; c]: all positions in one call
            summary = state.summary[:, None, :].expand(-1, embedded.size(1), -1).to(embedded)
            inputs, start = torch.cat([embedded, summary], -1), state.hidden[None].to(embedded.dtype)
            states, _ = self.decoder(inputs, start)
            return states
        # c inside the reset gate is no GRU torch runs: one `gru_cell` per position, as `step` does. The
        # input side of every position is still one matrix product.
        input_gates = F.linear(embedded, self._word_weight()) + state.context_gates[:, None, :]  # (B, T, 3H)
        hidden, states = state.hidden, []
        for i in range(embedded.size(1)):
            hidden = self._cell(input_gates[:, i], hidden, state.reset_context)
            states.append(hidden)
        return torch.stack(states, 1)

    def _word_weight(self) -> Tensor:
        return self.decoder.weight_ih_l0[:, : self.config.embed_dim]  # (3H, E): E y_{i-1}'s columns

    def _cell(self, input_gates: Tensor, hidden: Tensor, reset_context: Tensor | None) -> Tensor:
        """h'_t (B, H), float32, from the input side (B, 3H) and h'_{t-1} (B, H)."""
        hidden_gates = F.linear(hidden, self.decoder.weight_hh_l0, self.decoder.bias_hh_l0)  # (B, 3H)
        return gru_cell(input_gates, hidden_gates, hidden, reset_context)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(self.encode(src, src_lengths))
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        states = self.decoder_states(embedded, state)  # (B, T, H)
        return self.output.from_projected_context(states, embedded, state.context_readout[:, None, :])

    def step(self, prev: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """One position of the decoder: only E y_{i-1} and h'_{t-1} are multiplied here; c's products come
        from `start`."""
        embedded = self.dropout(self.tgt_embed(prev))  # (B, E)
        input_gates = F.linear(embedded, self._word_weight()) + state.context_gates  # (B, 3H)
        hidden = self._cell(input_gates, state.hidden, state.reset_context)  # (B, H) h'_t, float32
        logits = self.output.from_projected_context(hidden, embedded, state.context_readout)  # (B, V)
        return logits.float().log_softmax(dim=-1), replace(state, hidden=hidden)
