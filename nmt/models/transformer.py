"""The Transformer (Vaswani et al. 2017): attention only, no recurrence.

Multi-head attention runs through `torch.nn.functional.scaled_dot_product_attention` (fused kernels), except
for the one query of a decoding step on the CPU (see `attend`).
Decoding is incremental: `step` feeds only the newest token and keeps every layer's self-attention keys and
values in the state (batch first, (B, heads, t, d_head)); the cross-attention keys and values of the
encoder output are computed once, in `start`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.base import Seq2Seq, source_pad_mask, source_side
from nmt.models.configs import TransformerConfig
from nmt.models.layers import embeddings, init_embedding_, init_linear_


@dataclass
class TransformerEncoded:
    memory: Tensor  # (B, S, D) the encoder's output
    pad_mask: Tensor  # (B, S) True at padding


@dataclass
class TransformerState:
    self_keys: list[Tensor]  # per decoder layer (B, H, t, Dh): the keys of the t tokens fed so far
    self_values: list[Tensor]  # per decoder layer (B, H, t, Dh)
    cross_keys: list[Tensor] = source_side()  # per decoder layer (B, H, S, Dh)
    cross_values: list[Tensor] = source_side()  # per decoder layer (B, H, S, Dh)
    pad_mask: Tensor = source_side()  # (B, S) True at padding
    attention: Tensor | None = None  # (B, S) cross-attention of `alignment_layer`, mean over heads


def sinusoids(length: int, dim: int) -> Tensor:
    """(length, dim) PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Section 3.5)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    inverse_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = position * inverse_freq  # (L, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim]  # interleaved: sin, cos


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, T, D) -> (B, H, T, D/H)."""
    return x.unflatten(-1, (heads, -1)).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, T, D/H) -> (B, T, D)."""
    return x.transpose(1, 2).flatten(2)


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout: float,
    causal: bool = False,
    one_query_sdpa: bool = False,
) -> Tensor:
    """softmax(Q K^T / sqrt(d_k)) V (Section 3.2.1) for (B, H, T, Dh) queries and (B, H, S, Dh) keys/values.

    `mask` (B, 1, 1, S) is True where attention may look; `causal` hides later positions. Runs through
    `F.scaled_dot_product_attention` (fused kernels), except for the one query of a decoding step on the CPU:
    there torch's fused kernel is slower than two batched products (`make bench`, the "one-query attention"
    ablation). `one_query_sdpa` sends that query through SDPA as well.
    """
    one_query_on_cpu = q.size(-2) == 1 and q.device.type == "cpu" and not causal
    if not one_query_on_cpu or one_query_sdpa:
        return F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal)
    scores = (q @ k.transpose(-1, -2)).float() * q.size(-1) ** -0.5  # (B, H, 1, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = F.dropout(scores.softmax(dim=-1), dropout, training=dropout > 0)
    return weights.to(v.dtype) @ v  # (B, H, 1, Dh)


def attend_mask(pad_mask: Tensor) -> Tensor:
    """(B, 1, 1, S) True where attention may look, the boolean `attn_mask` convention of SDPA."""
    return ~pad_mask[:, None, None, :]


class SelfAttention(nn.Module):
    """Multi-head self-attention (Section 3.2.2) with one fused query/key/value projection."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = self.qkv(x).chunk(3, dim=-1)  # (B, T, D) each
        return split_heads(q, self.heads), split_heads(k, self.heads), split_heads(v, self.heads)

    def forward(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """`x` (B, T, D) attends to itself; `mask` (B, 1, 1, T) True where allowed; `causal` hides later."""
        q, k, v = self.project(x)  # (B, H, T, Dh)
        p = self.dropout if self.training else 0.0
        return self.out(merge_heads(attend(q, k, v, mask, p, causal)))

    def step(
        self, x: Tensor, keys: Tensor, values: Tensor, one_query_sdpa: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The newest position `x` (B, 1, D) attends to the cached positions and itself (so nothing later)."""
        q, k, v = self.project(x)  # (B, H, 1, Dh)
        keys = torch.cat([keys.to(k.dtype), k], dim=2)  # (B, H, t+1, Dh)
        values = torch.cat([values.to(v.dtype), v], dim=2)
        p = self.dropout if self.training else 0.0
        out = attend(q, keys, values, None, p, one_query_sdpa=one_query_sdpa)  # (B, H, 1, Dh)
        return self.out(merge_heads(out)), keys, values


class CrossAttention(nn.Module):
    """Encoder-decoder attention (Section 3.2.3): queries from the decoder, keys/values from the encoder."""

    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
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
        return self.out(merge_heads(attend(q, keys, values, mask, p, one_query_sdpa=one_query_sdpa)))

    def forward_with_weights(
        self, x: Tensor, keys: Tensor, values: Tensor, mask: Tensor
    ) -> tuple[Tensor, ...]:
        """The same as `forward`, spelled out so that the weights (B, H, T, S) can be returned (eq. 1)."""
        q = split_heads(self.q(x), self.heads)  # (B, H, T, Dh)
        keys, values = keys.to(q.dtype), values.to(q.dtype)
        scores = (q @ keys.transpose(-1, -2)).float() / math.sqrt(q.size(-1))  # (B, H, T, S)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)  # (B, H, T, S), 0 at padding
        dropped = F.dropout(weights, self.dropout, self.training)
        return self.out(merge_heads(dropped.to(values.dtype) @ values)), weights


class FeedForward(nn.Module):
    """FFN(x) = max(0, x W_1 + b_1) W_2 + b_2 (Section 3.3)."""

    def __init__(self, d_model: int, ffn_dim: int):
        super().__init__()
        self.inner = nn.Linear(d_model, ffn_dim)
        self.outer = nn.Linear(ffn_dim, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.outer(F.relu(self.inner(x)))


class Residual(nn.Module):
    """A sub-layer's residual connection and layer norm (Section 3.1), post-norm or pre-norm.

    Post-norm, the paper's LayerNorm(x + Dropout(Sublayer(x))) (with residual dropout, Section 5.4), needs the
    learning-rate warmup to train deep stacks; pre-norm, x + Dropout(Sublayer(LayerNorm(x))), does not.
    """

    def __init__(self, d_model: int, dropout: float, norm_first: bool):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.norm_first = norm_first

    def before(self, x: Tensor) -> Tensor:
        """What the sub-layer reads."""
        return self.norm(x) if self.norm_first else x

    def after(self, x: Tensor, sublayer_out: Tensor) -> Tensor:
        """The sub-layer's output added back to its input."""
        y = x + self.dropout(sublayer_out)
        return y if self.norm_first else self.norm(y)


class EncoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        D = config.d_model
        self.self_attn = SelfAttention(D, config.num_heads, config.attention_dropout)
        self.ffn = FeedForward(D, config.ffn_dim)
        self.res_attn = Residual(D, config.dropout, config.norm_first)
        self.res_ffn = Residual(D, config.dropout, config.norm_first)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.res_attn.after(x, self.self_attn(self.res_attn.before(x), mask, causal=False))
        return self.res_ffn.after(x, self.ffn(self.res_ffn.before(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        D = config.d_model
        self.self_attn = SelfAttention(D, config.num_heads, config.attention_dropout)
        self.cross_attn = CrossAttention(D, config.num_heads, config.attention_dropout)
        self.ffn = FeedForward(D, config.ffn_dim)
        self.res_self = Residual(D, config.dropout, config.norm_first)
        self.res_cross = Residual(D, config.dropout, config.norm_first)
        self.res_ffn = Residual(D, config.dropout, config.norm_first)

    def forward(self, x: Tensor, cross_keys: Tensor, cross_values: Tensor, mask: Tensor) -> Tensor:
        """All target positions at once (teacher forcing); the causal mask hides each position's future."""
        x = self.res_self.after(x, self.self_attn(self.res_self.before(x), None, causal=True))
        x = self.res_cross.after(x, self.cross_attn(self.res_cross.before(x), cross_keys, cross_values, mask))
        return self.res_ffn.after(x, self.ffn(self.res_ffn.before(x)))

    def step(
        self,
        x: Tensor,
        keys: Tensor,
        values: Tensor,
        cross_keys: Tensor,
        cross_values: Tensor,
        mask: Tensor,
        need_weights: bool,
        one_query_sdpa: bool = False,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The newest position (B, 1, D); returns it, the grown self-attention cache and, if asked, the
        cross-attention weights (B, H, 1, S). `one_query_sdpa`: see `attend`."""
        out, keys, values = self.self_attn.step(self.res_self.before(x), keys, values, one_query_sdpa)
        x = self.res_self.after(x, out)
        query, weights = self.res_cross.before(x), None
        if need_weights:
            out, weights = self.cross_attn.forward_with_weights(query, cross_keys, cross_values, mask)
        else:
            out = self.cross_attn(query, cross_keys, cross_values, mask, one_query_sdpa)
        x = self.res_cross.after(x, out)
        return self.res_ffn.after(x, self.ffn(self.res_ffn.before(x))), keys, values, weights


class Transformer(Seq2Seq):
    """Encoder and decoder stacks of (masked) multi-head attention and feed-forward sub-layers."""

    has_attention = True
    compiles_well = True
    #: Whether the one-query attention of a decoding step on the CPU runs through SDPA like the rest (see
    #: `attend`). Off, because two batched products are faster there; the benchmark's ablation turns it on.
    one_query_sdpa: ClassVar[bool] = False

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        D = config.d_model
        if D % config.num_heads:
            raise ValueError(f"d_model ({D}) must be a multiple of num_heads ({config.num_heads})")
        if not -config.decoder_layers <= config.alignment_layer < config.decoder_layers:
            raise ValueError(
                f"alignment_layer {config.alignment_layer} is outside {config.decoder_layers} layers"
            )
        self.alignment_layer = config.alignment_layer % config.decoder_layers
        self.src_embed, self.tgt_embed = embeddings(
            config.src_vocab_size, config.tgt_vocab_size, D, config.share_embeddings
        )
        self.embed_scale = math.sqrt(D)  # Section 3.4: embeddings are multiplied by sqrt(d_model)
        self.register_buffer("positions", sinusoids(config.max_positions, D), persistent=False)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.encoder_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(config) for _ in range(config.decoder_layers))
        # Pre-norm leaves the residual stream unnormalised: a last LayerNorm closes each stack.
        self.encoder_norm = nn.LayerNorm(D) if config.norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(D) if config.norm_first else nn.Identity()
        # Section 3.4: the pre-softmax projection shares the target embedding matrix (when tie_output).
        self.project = None if config.tie_output else nn.Linear(D, config.tgt_vocab_size, bias=False)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                init_linear_(module)
        for embedding in {self.src_embed, self.tgt_embed}:
            # std D^-1/2: scaled by sqrt(D) the inputs have unit variance, and so do the tied logits.
            init_embedding_(embedding, std=D**-0.5)

    def max_positions(self) -> int:
        return self.config.max_positions

    def _embed(self, embedding: nn.Embedding, ids: Tensor, offset: int) -> Tensor:
        """(B, T, D) scaled embeddings plus the positions offset .. offset+T-1, with dropout (Section 5.4)."""
        end = offset + ids.size(1)
        if end > self.positions.size(0):
            raise ValueError(f"a sequence of {end} positions exceeds max_positions={self.positions.size(0)}")
        return self.dropout(embedding(ids) * self.embed_scale + self.positions[offset:end])

    def logits(self, states: Tensor) -> Tensor:
        """Output logits (B, T, V) of decoder states (B, T, D): the closing LayerNorm of a pre-norm stack,
        then the pre-softmax projection, the target embedding matrix when tied (Section 3.4)."""
        states = self.decoder_norm(states)
        return self.project(states) if self.project is not None else F.linear(states, self.tgt_embed.weight)

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerEncoded:
        pad_mask = source_pad_mask(src)  # (B, S) True at padding
        mask = attend_mask(pad_mask)
        x = self._embed(self.src_embed, src, 0)  # (B, S, D)
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return TransformerEncoded(memory=self.encoder_norm(x), pad_mask=pad_mask)

    def start(self, encoded: TransformerEncoded) -> TransformerState:
        cross = [layer.cross_attn.keys_values(encoded.memory) for layer in self.decoder_layers]
        B, H = encoded.memory.size(0), self.config.num_heads
        empty = encoded.memory.new_zeros(B, H, 0, self.config.d_model // H)  # (B, H, 0, Dh)
        return TransformerState(
            self_keys=[empty] * len(self.decoder_layers),
            self_values=[empty] * len(self.decoder_layers),
            cross_keys=[k for k, _ in cross],
            cross_values=[v for _, v in cross],
            pad_mask=encoded.pad_mask,
        )

    def decoder_states(
        self, tgt_in: Tensor, cross_keys: list[Tensor], cross_values: list[Tensor], pad_mask: Tensor
    ) -> Tensor:
        """The decoder stack over all positions of `tgt_in` (B, T) at once, each hiding its future (teacher
        forcing): states (B, T, D) before `logits`. `cross_keys` and `cross_values` hold each layer's
        (B, H, S, Dh) keys and values of the encoder output (`CrossAttention.keys_values`); `pad_mask` (B, S)
        is True at source padding."""
        mask = attend_mask(pad_mask)
        x = self._embed(self.tgt_embed, tgt_in, 0)  # (B, T, D)
        for index, layer in enumerate(self.decoder_layers):
            x = layer(x, cross_keys[index], cross_values[index], mask)
        return x

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        encoded = self.encode(src, src_lengths)
        cross = [layer.cross_attn.keys_values(encoded.memory) for layer in self.decoder_layers]
        states = self.decoder_states(tgt_in, [k for k, _ in cross], [v for _, v in cross], encoded.pad_mask)
        return self.logits(states)  # (B, T, V)

    def step(self, prev: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        position = state.self_keys[0].size(2)  # tokens fed before this one
        x = self._embed(self.tgt_embed, prev[:, None], position)  # (B, 1, D)
        mask = attend_mask(state.pad_mask)
        keys, values, attention = [], [], None
        for index, layer in enumerate(self.decoder_layers):
            x, k, v, weights = layer.step(
                x,
                state.self_keys[index],
                state.self_values[index],
                state.cross_keys[index],
                state.cross_values[index],
                mask,
                need_weights=index == self.alignment_layer,
                one_query_sdpa=self.one_query_sdpa,
            )
            keys.append(k)
            values.append(v)
            if weights is not None:
                attention = weights[:, :, 0].mean(dim=1)  # (B, S)
        log_probs = self.logits(x)[:, 0].float().log_softmax(dim=-1)  # (B, V)
        return log_probs, replace(state, self_keys=keys, self_values=values, attention=attention)
