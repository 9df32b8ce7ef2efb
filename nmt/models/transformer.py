"""The Transformer (Vaswani et al. 2017): attention only, no recurrence.

The attention sub-layers are in transformer_attention.py, the position encodings (sinusoidal, learned, none,
rotary; `TransformerConfig.positions`) in positions.py.
Decoding is incremental: `step` feeds only the newest token and keeps every layer's self-attention keys and
values in the state (batch first, (B, heads, t, d_head); rotated already, with rotary positions); the
cross-attention keys and values of the encoder output are computed once, in `start`.
`attention_maps` reruns a target with every attention spelled out; training and decoding never do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.base import AttentionMaps, Seq2Seq, source_pad_mask, source_side
from nmt.models.configs import TransformerConfig
from nmt.models.layers import embeddings, init_embedding_, init_linear_
from nmt.models.positions import Rotation, added_positions, rotary_positions, sinusoids
from nmt.models.transformer_attention import (
    CrossAttention,
    SelfAttention,
    attend,
    attend_mask,
    merge_heads,
    score_scale,
    split_heads,
)


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
        D, scale = config.d_model, score_scale(config.scale_attention)
        self.self_attn = SelfAttention(D, config.num_heads, config.attention_dropout, scale)
        self.ffn = FeedForward(D, config.ffn_dim)
        self.res_attn = Residual(D, config.dropout, config.norm_first)
        self.res_ffn = Residual(D, config.dropout, config.norm_first)

    def forward(
        self, x: Tensor, mask: Tensor, rotation: Rotation | None = None, maps: AttentionMaps | None = None
    ) -> Tensor:
        """`rotation`: rotary positions of the S positions; `maps`: collects the self-attention weights."""
        weights_into = None if maps is None else maps.encoder
        out = self.self_attn(self.res_attn.before(x), mask, False, rotation, weights_into)
        x = self.res_attn.after(x, out)
        return self.res_ffn.after(x, self.ffn(self.res_ffn.before(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        D, scale = config.d_model, score_scale(config.scale_attention)
        self.self_attn = SelfAttention(D, config.num_heads, config.attention_dropout, scale)
        self.cross_attn = CrossAttention(D, config.num_heads, config.attention_dropout, scale)
        self.ffn = FeedForward(D, config.ffn_dim)
        self.res_self = Residual(D, config.dropout, config.norm_first)
        self.res_cross = Residual(D, config.dropout, config.norm_first)
        self.res_ffn = Residual(D, config.dropout, config.norm_first)

    def forward(
        self,
        x: Tensor,
        cross_keys: Tensor,
        cross_values: Tensor,
        mask: Tensor,
        rotation: Rotation | None = None,
        maps: AttentionMaps | None = None,
    ) -> Tensor:
        """All target positions at once (teacher forcing); the causal mask hides each position's future.
        `rotation`: rotary positions of the T positions; `maps`: collects the self and cross weights."""
        weights_into = None if maps is None else maps.decoder
        out = self.self_attn(self.res_self.before(x), None, True, rotation, weights_into)
        x = self.res_self.after(x, out)
        query = self.res_cross.before(x)
        if maps is None:
            out = self.cross_attn(query, cross_keys, cross_values, mask)
        else:
            out, weights = self.cross_attn.forward_with_weights(query, cross_keys, cross_values, mask)
            maps.cross.append(weights)
        x = self.res_cross.after(x, out)
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
        rotation: Rotation | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """The newest position (B, 1, D); returns it, the grown self-attention cache and, if asked, the
        cross-attention weights (B, H, 1, S). `one_query_sdpa`: see `attend`; `rotation`: rotary positions
        of this position."""
        query = self.res_self.before(x)
        out, keys, values = self.self_attn.step(query, keys, values, one_query_sdpa, rotation)
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
        # Section 3.5: a table added to the embeddings (sinusoidal, learned), or None (none, rotary).
        self.positions = added_positions(config)
        # RoFormer Section 3.4.2: the rotations of self-attention's queries and keys, or None.
        self.rotary = rotary_positions(config)
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
        # std D^-1/2: scaled by sqrt(D) the inputs have unit variance, and so do the tied logits. The tables
        # in a fixed order (a shared one once): a set's order follows memory addresses, so the same seed gave
        # different weights from one process to the next.
        for embedding in dict.fromkeys([self.src_embed, self.tgt_embed]):
            init_embedding_(embedding, std=D**-0.5)

    def max_positions(self) -> int:
        return self.config.max_positions

    def _embed(self, embedding: nn.Embedding, ids: Tensor, offset: int) -> Tensor:
        """(B, T, D) scaled embeddings plus the positions offset .. offset+T-1 (unless positions are not
        added), with dropout (Section 5.4)."""
        end, limit = offset + ids.size(1), self.config.max_positions
        if end > limit:
            raise ValueError(f"a sequence of {end} positions exceeds max_positions={limit}")
        x = embedding(ids) * self.embed_scale
        if self.positions is not None:
            x = x + self.positions(offset, ids.size(1))
        return self.dropout(x)

    def _rotation(self, offset: int, length: int) -> Rotation | None:
        """Rotary positions offset .. offset+length-1 for self-attention, or None without rotary positions."""
        return None if self.rotary is None else self.rotary.rotation(offset, length)

    def logits(self, states: Tensor) -> Tensor:
        """Output logits (B, T, V) of decoder states (B, T, D): the closing LayerNorm of a pre-norm stack,
        then the pre-softmax projection, the target embedding matrix when tied (Section 3.4)."""
        states = self.decoder_norm(states)
        return self.project(states) if self.project is not None else F.linear(states, self.tgt_embed.weight)

    def encode(
        self, src: Tensor, src_lengths: Tensor, maps: AttentionMaps | None = None
    ) -> TransformerEncoded:
        """The encoder stack; with `maps`, each layer's self-attention weights are spelled out and collected
        in `maps.encoder` (the `attention_maps` pass; the same states)."""
        pad_mask = source_pad_mask(src)  # (B, S) True at padding
        mask = attend_mask(pad_mask)
        x = self._embed(self.src_embed, src, 0)  # (B, S, D)
        rotation = self._rotation(0, src.size(1))
        for layer in self.encoder_layers:
            x = layer(x, mask, rotation, maps)
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
        self,
        tgt_in: Tensor,
        cross_keys: list[Tensor],
        cross_values: list[Tensor],
        pad_mask: Tensor,
        maps: AttentionMaps | None = None,
    ) -> Tensor:
        """The decoder stack over all positions of `tgt_in` (B, T) at once, each hiding its future (teacher
        forcing): states (B, T, D) before `logits`. `cross_keys` and `cross_values` hold each layer's
        (B, H, S, Dh) keys and values of the encoder output (`CrossAttention.keys_values`); `pad_mask` (B, S)
        is True at source padding. `maps` collects the self- and cross-attention weights, spelled out."""
        mask = attend_mask(pad_mask)
        x = self._embed(self.tgt_embed, tgt_in, 0)  # (B, T, D)
        rotation = self._rotation(0, tgt_in.size(1))
        for index, layer in enumerate(self.decoder_layers):
            x = layer(x, cross_keys[index], cross_values[index], mask, rotation, maps)
        return x

    def forward(
        self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor, maps: AttentionMaps | None = None
    ) -> Tensor:
        """Teacher-forced logits (B, T, V). With `maps` (empty lists), every attention is computed
        explicitly instead of through SDPA and its weights are appended to `maps` (see `attention_maps`)."""
        encoded = self.encode(src, src_lengths, maps)
        cross = [layer.cross_attn.keys_values(encoded.memory) for layer in self.decoder_layers]
        states = self.decoder_states(
            tgt_in, [k for k, _ in cross], [v for _, v in cross], encoded.pad_mask, maps
        )
        return self.logits(states)  # (B, T, V)

    def attention_maps(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> AttentionMaps:
        """One teacher-forced pass with every weight spelled out: per layer, the encoder self-attention
        (B, H, S, S), the decoder's masked self-attention (B, H, T, T) and the cross-attention (B, H, T, S),
        float32, with the model's own scaling and positions (its hidden states are those of `forward`).

        The model's own alignment, `state.attention` of decoding, is `cross[self.alignment_layer].mean(1)`.
        """
        maps = AttentionMaps()
        self.forward(src, src_lengths, tgt_in, maps)
        return maps

    def step(self, prev: Tensor, state: TransformerState) -> tuple[Tensor, TransformerState]:
        position = state.self_keys[0].size(2)  # tokens fed before this one
        x = self._embed(self.tgt_embed, prev[:, None], position)  # (B, 1, D)
        rotation = self._rotation(position, 1)
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
                rotation=rotation,
            )
            keys.append(k)
            values.append(v)
            if weights is not None:
                attention = weights[:, :, 0].mean(dim=1)  # (B, S)
        log_probs = self.logits(x)[:, 0].float().log_softmax(dim=-1)  # (B, V)
        return log_probs, replace(state, self_keys=keys, self_values=values, attention=attention)


# Importable from here as before (tests, the benchmark): the attention pieces and the sinusoids moved out.
__all__ = [
    "CrossAttention",
    "DecoderLayer",
    "EncoderLayer",
    "SelfAttention",
    "Transformer",
    "TransformerEncoded",
    "TransformerState",
    "attend",
    "attend_mask",
    "merge_heads",
    "sinusoids",
    "split_heads",
]
