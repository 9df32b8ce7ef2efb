"""The RNN Encoder-Decoder of Cho et al. 2014 ("RNNencdec" in Bahdanau et al. 2014): no attention.

The encoder reads the source with a GRU and squeezes it into one fixed-length vector c; the decoder sees the
source only through c, which sets its initial state and is fed to every step and to the output layer
(Cho et al. 2014, Section 2.2 and App. A). This fixed-length bottleneck is what attention removes.
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
    context_gates: Tensor = source_side()  # (B, 3H) the decoder GRU's input products with c, plus their bias
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
        # The decoder's input at step i is [E y_{i-1}; c]: c enters every gate (Cho et al. 2014, App. A.2).
        # With teacher forcing no input depends on the recurrence, so `forward` runs the whole target
        # through this GRU at once and `step` runs the same GRU for one position.
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
        # c is the same at every step, so `step` projects it once here, not at every token.
        context_weight = self.decoder.weight_ih_l0[:, self.config.embed_dim :]  # (3H, H): c's columns
        return RNNState(
            hidden=hidden,
            summary=c,
            context_gates=F.linear(c, context_weight, self.decoder.bias_ih_l0),  # (B, 3H)
            context_readout=self.output.from_context(c),
        )

    def decoder_states(self, embedded: Tensor, hidden: Tensor, summary: Tensor) -> Tensor:
        """Decoder states (B, T, H) for the inputs E y (B, T, E) from the state `hidden` (B, H): the GRU
        reads [E y_{i-1}; c] at every position, c (B, H) included (Cho et al. 2014, App. A.2)."""
        inputs = torch.cat([embedded, summary[:, None, :].expand(-1, embedded.size(1), -1).to(embedded)], -1)
        states, _ = self.decoder(inputs, hidden[None].to(inputs.dtype))  # (B, T, H)
        return states

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(self.encode(src, src_lengths))
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        states = self.decoder_states(embedded, state.hidden, state.summary)  # (B, T, H)
        return self.output.from_projected_context(states, embedded, state.context_readout[:, None, :])

    def step(self, prev: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        """The decoder GRU for one position, as `gru_cell` from its weights: only E y_{i-1} and s_{i-1} are
        multiplied here; c's products come from `start`."""
        embedded = self.dropout(self.tgt_embed(prev))  # (B, E)
        word_weight = self.decoder.weight_ih_l0[:, : self.config.embed_dim]  # (3H, E)
        input_gates = F.linear(embedded, word_weight) + state.context_gates  # (B, 3H)
        hidden_gates = F.linear(state.hidden, self.decoder.weight_hh_l0, self.decoder.bias_hh_l0)  # (B, 3H)
        hidden = gru_cell(input_gates, hidden_gates, state.hidden)  # (B, H) s_i, float32
        logits = self.output.from_projected_context(hidden, embedded, state.context_readout)  # (B, V)
        return logits.float().log_softmax(dim=-1), replace(state, hidden=hidden)
