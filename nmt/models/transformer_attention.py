"""The Transformer's attention sub-layers (Vaswani et al. 2017, Section 3.2).

Attention runs through `torch.nn.functional.scaled_dot_product_attention` (fused kernels), except for the one
query of a decoding step on the CPU (see `attend`) and when the weights themselves are wanted (`maps`, for
`Transformer.attention_maps`, and the cross-attention that decoding exposes): then the softmax of the scaled,
masked scores is spelled out (`attention_weights`).

`scale` is the factor of the scores: None for the paper's 1/sqrt(d_k) (Section 3.2.1, SDPA's default), 1.0
for plain dot products (`TransformerConfig.scale_attention = False`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.positions import Rotation


def score_scale(scale_attention: bool) -> float | None:
    """The `scale` of the scores: None (SDPA's default 1/sqrt(d_k), Section 3.2.1) or 1.0 (q . k alone)."""
    return None if scale_attention else 1.0


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, D/H) -> (B, T, D)."""
    return x.transpose(1, 2).flatten(2)


def attend_mask(pad_mask: Tensor) -> Tensor:
    """(B, 1, 1, S) True where attention may look, the boolean `attn_mask` convention of SDPA."""
    return ~pad_mask[:, None, None, :]


def attention_weights(
    q: Tensor, k: Tensor, mask: Tensor | None, causal: bool = False, scale: float | None = None
) -> Tensor:
    """float32 softmax(Q K^T * scale) (B, H, T, S) (eq. 1), scale 1/sqrt(d_k) when None; zero where `mask`
    (B, 1, 1, S) is False and, if `causal`, above the diagonal (key j > query i, Section 3.2.3)."""
    scores = (q @ k.transpose(-1, -2)).float()  # (B, H, T, S)
    scores = scores / math.sqrt(q.size(-1)) if scale is None else scores * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    if causal:
        future = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).triu(1)  # (T, S)
        scores = scores.masked_fill(future, float("-inf"))
    return scores.softmax(dim=-1)


def attend_with_weights(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout: float,
    causal: bool = False,
    scale: float | None = None,
) -> tuple[Tensor, Tensor]:
    """What `attend` computes (B, H, T, Dh), spelled out so that the weights (B, H, T, S) come back too."""
    weights = attention_weights(q, k, mask, causal, scale)
    dropped = F.dropout(weights, dropout, training=dropout > 0)
    return dropped.to(v.dtype) @ v, weights


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout: float,
    causal: bool = False,
    one_query_sdpa: bool = False,
    scale: float | None = None,
) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V (Section 3.2.1) for (B, H, T, Dh) queries and (B, H, S, Dh) keys/values.

    `mask` (B, 1, 1, S) is True where attention may look; `causal` hides later positions; `scale` replaces
    1/sqrt(d_k) when given. Runs through `F.scaled_dot_product_attention` (fused kernels), except for the one
    query of a decoding step on the CPU: there torch's fused kernel is slower than two batched products
    (`make bench`, the "one-query attention" ablation). `one_query_sdpa` sends that query through SDPA too.
    """
    one_query_on_cpu = q.size(-2) == 1 and q.device.type == "cpu" and not causal
    if not one_query_on_cpu or one_query_sdpa:
        return F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal, scale=scale)
    # Multiplied by d_k^-1/2 rather than divided by sqrt(d_k) (`attention_weights`), as this path always was.
    factor = q.size(-1) ** -0.5 if scale is None else scale
    weights = F.dropout(attention_weights(q, k, mask, scale=factor), dropout, training=dropout > 0)
    return weights.to(v.dtype) @ v  # (B, H, 1, Dh)


class SelfAttention(nn.Module):
    """Multi-head self-attention (Section 3.2.2) with one fused query/key/value projection.

    With a `rotation` (rotary positions, RoFormer Section 3.4.2), queries and keys are rotated by their
    positions after the projection and before the scores; the decoding cache keeps the rotated keys."""

    def __init__(self, d_model: int, heads: int, dropout: float, scale: float | None = None):
        super().__init__()
        self.heads, self.dropout, self.scale = heads, dropout, scale
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x: Tensor, rotation: Rotation | None = None) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, T, D) each
        q, k, v = split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)
        if rotation is not None:
            q, k = rotation.apply(q), rotation.apply(k)
        return q, k, v

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None,
        causal: bool,
        rotation: Rotation | None = None,
        maps: list[Tensor] | None = None,
    ) -> Tensor:
        """`x` (B, T, D) attends to itself; `mask` (B, 1, 1, T) True where allowed; `causal` hides later.
        With `maps`, the weights are computed explicitly and appended to it (B, H, T, T)."""
        q, k, v = self.project(x, rotation)  # (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        if maps is None:
            return self.out(merge_heads(attend(q, k, v, mask, p, causal, scale=self.scale)))
        out, weights = attend_with_weights(q, k, v, mask, p, causal, self.scale)
        maps.append(weights)
        return self.out(merge_heads(out))

    def step(
        self,
        x: Tensor,
        keys: Tensor,
        values: Tensor,
        one_query_sdpa: bool = False,
        rotation: Rotation | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The newest position `x` (B, 1, D) attends to the cached positions and itself (so nothing later);
        `rotation` is that of its position t, the number of cached positions."""
        q, k, v = self.project(x, rotation)  # (B, H, 1, Dh)
        keys = torch.cat([keys.to(k.dtype), k], dim=2)  # (B, H, t+1, Dh)
        values = torch.cat([values.to(v.dtype), v], dim=2)
        p = self.dropout if self.training else 0.0
        out = attend(q, keys, values, None, p, one_query_sdpa=one_query_sdpa, scale=self.scale)
        return self.out(merge_heads(out)), keys, values


class CrossAttention(nn.Module):
    """Encoder-decoder attention (Section 3.2.3): queries from the decoder, keys/values from the encoder."""

    def __init__(self, d_model: int, heads: int, dropout: float, scale: float | None = None):
        super().__init__()
        self.heads, self.dropout, self.scale = heads, dropout, scale
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def keys_values(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """(B, H, S, Dh) keys and values of the encoder output `memory` (B, S, D); once per sentence."""
        k, v = self.kv(memory).chunk(2, dim=-1)
        return split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor, one_query_sdpa: bool = False
    ) -> Tensor:
        q = split_heads(self.q(x), self.heads)  # (B, H, T, Dh)
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        p = self.dropout if self.training else 0.0
        out = attend(q, keys, values, mask, p, one_query_sdpa=one_query_sdpa, scale=self.scale)
        return self.out(merge_heads(out))

    def forward_with_weights(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The same as `forward`, spelled out so that the weights (B, H, T, S) can be returned (eq. 1);
        they are exactly 0 at source padding."""
        q = split_heads(self.q(x), self.heads)  # (B, H, T, Dh)
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        p = self.dropout if self.training else 0.0
        out, weights = attend_with_weights(q, keys, values, mask, p, scale=self.scale)
        return self.out(merge_heads(out)), weights
