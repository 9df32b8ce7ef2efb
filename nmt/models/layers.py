"""Building blocks shared by the two recurrent models (rnn.py and rnnsearch.py).

- `embeddings`: the source and target tables (one shared table for a joint vocabulary).
- `gru_cell`: one GRU update from pre-computed input and recurrent projections, so that the decoders can
  project every input of a sentence in one matrix product before the recurrence.
- `DeepOutput`: the output layer p(y_i | s_i, y_{i-1}, c_i) of Cho et al. 2014 (App. A.2) and Bahdanau
  et al. 2014 (eq. 4, App. A.2.2): a readout t_i from the state, the previous word and the context, through
  a maxout or tanh, then the vocabulary projection W_o t_i.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nmt.data.special import PAD_ID


def embeddings(
    src_vocab_size: int, tgt_vocab_size: int, embed_dim: int, share: bool
) -> tuple[nn.Embedding, nn.Embedding]:
    """The source and target embedding tables; the same module twice when `share` (a joint vocabulary)."""
    if src_vocab_size <= 0 or tgt_vocab_size <= 0:
        raise ValueError("src_vocab_size and tgt_vocab_size must be set (they come from the prepared data)")
    target = nn.Embedding(tgt_vocab_size, embed_dim, padding_idx=PAD_ID)
    if share:
        if src_vocab_size != tgt_vocab_size:
            sizes = f"{src_vocab_size} and {tgt_vocab_size}"
            raise ValueError(f"share_embeddings needs one joint vocabulary, got sizes {sizes}")
        return target, target
    return nn.Embedding(src_vocab_size, embed_dim, padding_idx=PAD_ID), target


def init_embedding_(embedding: nn.Embedding, std: float) -> None:
    nn.init.normal_(embedding.weight, mean=0.0, std=std)
    with torch.no_grad():
        embedding.weight[PAD_ID].zero_()


def init_linear_(linear: nn.Linear) -> None:
    nn.init.xavier_uniform_(linear.weight)
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


def init_recurrent_(weight: Tensor, gates: int = 3) -> None:
    """Orthogonal recurrent matrices, one per gate (Bahdanau et al. 2014, App. B.1: "random orthogonal")."""
    with torch.no_grad():
        for block in weight.chunk(gates, dim=0):
            nn.init.orthogonal_(block)


def init_gru_(gru: nn.GRU) -> None:
    """Xavier input weights, orthogonal recurrent weights, zero biases, for every layer and direction."""
    for name, param in gru.named_parameters():
        if name.startswith("weight_ih"):
            for block in param.data.chunk(3, dim=0):
                nn.init.xavier_uniform_(block)
        elif name.startswith("weight_hh"):
            init_recurrent_(param)
        else:
            nn.init.zeros_(param)


def gru_cell(
    input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor, reset_context: Tensor | None = None
) -> Tensor:
    """One GRU update from projections computed elsewhere; returns the new state in float32.

    `input_gates` (B, 3H) = W [x] + b and `hidden_gates` (B, 3H) = U h + b_h, each laid out as (reset, update,
    candidate) like `torch.nn.GRU`. This is the gated unit of Cho et al. 2014 (eq. 5-8; Bahdanau et al. 2014,
    App. A.1.1) in the form cuDNN and `torch.nn.GRU` use: the reset gate scales U h after the product,
    r * (U h + b_h), rather than U (r * h). That lets U h of all three gates be one matrix product per step,
    fused with the other projections of the previous state.

    `reset_context` (B, H), when given, is added inside the reset gate with U h: the candidate is then
    tanh(W x + r * (U h + b_h + C c)), the decoder of Cho et al. 2014, App. A.2 (`context_in_reset`).

    The state stays float32 under autocast, so that bf16 products do not make the recurrence drift or leave
    a decoder state whose dtype the next step's matrix product rejects.
    """
    size = hidden.size(-1)
    i_rz, i_n = input_gates.split([2 * size, size], dim=-1)  # (B, 2H), (B, H)
    h_rz, h_n = hidden_gates.split([2 * size, size], dim=-1)
    reset, update = torch.sigmoid(i_rz + h_rz).chunk(2, dim=-1)  # (B, H) each
    if reset_context is not None:
        h_n = h_n + reset_context
    candidate = torch.tanh(i_n + reset * h_n)  # (B, H)
    # h_t = z * h_{t-1} + (1 - z) * h~_t: z keeps the old state (the convention of Cho et al. 2014, eq. 7).
    # Mixed-dtype arithmetic promotes to the float32 state without separate cast kernels.
    return (candidate + update * (hidden - candidate)).float()


class DeepOutput(nn.Module):
    """p(y_i | s_i, y_{i-1}, c_i) ~ exp(y_i^T W_o t_i) (Bahdanau et al. 2014, eq. 4 and App. A.2.2).

    t~_i = U_o s + V_o E y_{i-1} + C_o c_i; with `maxout_dim` l > 0, t~_i has 2l units and t_i keeps the
    larger of each pair (maxout, Goodfellow et al. 2013); with l = 0, t_i = tanh(t~_i) with `embed_dim`
    units. The three projections are separate so that a context shared by all steps (the rnn model's fixed
    c) is projected once and broadcast, and so that each part can be given as (B, T, .) or (B, .).

    Which decoder state s is, the model decides: RNNsearch's App. A.2.2 reads s_{i-1} (`output_state`), the
    rnn model's (Cho et al. 2014, App. A.2) the new state h'_t.
    """

    def __init__(
        self, state_dim: int, embed_dim: int, context_dim: int, maxout_dim: int, vocab: int, dropout: float
    ):
        super().__init__()
        self.maxout = maxout_dim > 0
        readout_dim = maxout_dim if self.maxout else embed_dim
        pre_dim = 2 * maxout_dim if self.maxout else embed_dim
        self.from_state = nn.Linear(state_dim, pre_dim)  # U_o (its bias is the readout's bias)
        self.from_prev = nn.Linear(embed_dim, pre_dim, bias=False)  # V_o
        self.from_context = nn.Linear(context_dim, pre_dim, bias=False)  # C_o
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(readout_dim, vocab)  # W_o
        for linear in (self.from_state, self.from_prev, self.from_context, self.project):
            init_linear_(linear)

    def forward(self, state: Tensor, prev_embedded: Tensor, context: Tensor) -> Tensor:
        """Logits (..., V) from s (..., H), E y_{i-1} (..., E) and c (..., C); parts broadcast."""
        return self.from_projected_context(state, prev_embedded, self.from_context(context))

    def from_projected_context(self, state: Tensor, prev_embedded: Tensor, context_part: Tensor) -> Tensor:
        """`forward` with C_o c already computed (`context_part`), for a context that several steps share."""
        pre = self.from_state(state) + self.from_prev(prev_embedded) + context_part  # (..., 2l)
        # maxout: t_i = [max(t~_{i,2j-1}, t~_{i,2j})]_j, (..., l); else tanh, (..., E)
        readout = pre.unflatten(-1, (-1, 2)).amax(dim=-1) if self.maxout else torch.tanh(pre)
        return self.project(self.dropout(readout))  # (..., V)
