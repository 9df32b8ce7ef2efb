"""How the Transformer tells positions apart: self-attention alone is blind to order (Vaswani et al. 2017,
Section 3.5), so something must put positions in.

- `sinusoidal` (Section 3.5): a fixed table PE(pos) added to the scaled embeddings (`SinusoidalPositions`).
- `learned` (Section 3.5, Table 3 row E): a trained table of absolute positions added the same way
  (`LearnedPositions`); the paper found it "nearly identical" to the sinusoids.
- `none`: nothing. Self-attention is then permutation-equivariant: the encoder reads a bag of words (its
  output for a permuted sentence is its output permuted). The decoder keeps some order information through
  its causal mask: position i sees exactly the i + 1 tokens up to it, so a first layer knows the set of its
  prefix (hence its length) but not its order, and a second layer, reading what each earlier position saw,
  can tell orders apart. Cross-attention reads the encoder output as a set all the same.
- `rotary` (Su et al. 2021, RoFormer, Section 3.4): nothing is added to the embeddings; the queries and
  keys of self-attention are rotated by their positions (`RotaryPositions`), so that each score q_m . k_n
  depends on the positions only through m - n (eq. 16). Cross-attention is not rotated: source and target
  positions are not on one axis.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from nmt.models.configs import Positions, TransformerConfig


def position_angles(length: int, dim: int) -> Tensor:
    """(length, dim/2) angles pos * theta_i with theta_i = 10000^(-2i/dim), i = 0 .. dim/2 - 1: the
    frequencies of the sinusoids (Section 3.5) and of the rotations (RoFormer eq. 15)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]  # (L, 1)
    inverse_freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    return position * inverse_freq  # (L, D/2)


def sinusoids(length: int, dim: int) -> Tensor:
    """(length, dim) PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Section 3.5)."""
    angles = position_angles(length, dim)  # (L, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)[:, :dim]  # interleaved: sin, cos


class SinusoidalPositions(nn.Module):
    """The fixed sinusoids of Section 3.5, added to the scaled embeddings. A buffer left out of the
    state_dict (as it always was), so checkpoints hold no table and old ones load unchanged."""

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.register_buffer("table", sinusoids(max_positions, dim), persistent=False)

    def forward(self, offset: int, length: int) -> Tensor:
        """(length, D) the vectors of positions offset .. offset + length - 1."""
        return self.table[offset : offset + length]


class LearnedPositions(nn.Module):
    """A trained vector per absolute position (Section 3.5; Table 3 row E), added to the scaled embeddings.

    Parametrised like the token embeddings: drawn with std D^-1/2 and multiplied by sqrt(D). So at the start
    each position vector is as large as the token vector it is added to (unit variance per component; the
    sinusoids have 1/2), and position is visible from the first update instead of being learned up from
    nothing; and Adam moves both tables at the same rate in the space where they are added. Positions that no
    training sentence reaches stay random: unlike sinusoids, the table cannot extrapolate to longer sentences.
    """

    def __init__(self, max_positions: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(max_positions, dim) * dim**-0.5)
        self.scale = math.sqrt(dim)

    def forward(self, offset: int, length: int) -> Tensor:
        return self.table[offset : offset + length] * self.scale


def rotate_pairs(x: Tensor) -> Tensor:
    """(x1, x2, x3, x4, ...) -> (-x2, x1, -x4, x3, ...): each pair turned by 90 degrees (RoFormer eq. 34)."""
    pairs = x.unflatten(-1, (-1, 2))  # (..., D/2, 2)
    return torch.stack([-pairs[..., 1], pairs[..., 0]], dim=-1).flatten(-2)


class Rotation(NamedTuple):
    """The rotations of a run of positions: `cos` and `sin` (T, Dh) of each angle m * theta_i, repeated for
    the two components of its pair."""

    cos: Tensor
    sin: Tensor

    def apply(self, x: Tensor) -> Tensor:
        """R_m x for queries or keys x (B, H, T, Dh) at these T positions (RoFormer eq. 34):
        x * cos(m theta) + rotate_pairs(x) * sin(m theta), computed in float32, returned in x's dtype."""
        rotated = x.float() * self.cos + rotate_pairs(x.float()) * self.sin
        return rotated.to(x.dtype)


class RotaryPositions(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer, Section 3.4): the cos/sin of every angle
    m * theta_i, theta_i = 10000^(-2i/Dh) (eq. 15), for positions m < max_positions; non-persistent buffers,
    so nothing goes in the checkpoint."""

    def __init__(self, max_positions: int, head_dim: int):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary positions rotate pairs of dimensions: the head size {head_dim} is odd")
        angles = position_angles(max_positions, head_dim).repeat_interleave(2, dim=-1)  # (L, Dh)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def rotation(self, offset: int, length: int) -> Rotation:
        """The rotations of positions offset .. offset + length - 1."""
        end = offset + length
        return Rotation(self.cos[offset:end], self.sin[offset:end])


def added_positions(config: TransformerConfig) -> nn.Module | None:
    """The table added to the scaled embeddings, or None when positions are not added (none, rotary)."""
    if config.positions == Positions.sinusoidal:
        return SinusoidalPositions(config.max_positions, config.d_model)
    if config.positions == Positions.learned:
        return LearnedPositions(config.max_positions, config.d_model)
    return None


def rotary_positions(config: TransformerConfig) -> RotaryPositions | None:
    """The rotations of self-attention's queries and keys, or None unless positions are rotary."""
    if config.positions != Positions.rotary:
        return None
    return RotaryPositions(config.max_positions, config.d_model // config.num_heads)
