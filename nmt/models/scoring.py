"""RNNsearch's alignment model: how the decoder's previous state s_{i-1} (B, H) scores each annotation h_j
(B, S, 2H), in one of six forms (`AttentionScore`). The weights are alpha_ij = softmax_j(e_ij) (Bahdanau et
al. 2014, eq. 6), and the context c_i = sum_j alpha_ij h_j (eq. 5) is the same for every form.

A `Scorer` holds a form's equation; the parameters live on the model, under the names its checkpoints have
always used, so that checkpoints saved before there was a choice load unchanged:

- `to_keys`: the source-side projection (U_a for additive), or None for a form without one;
- the first `query_dim` rows of the model's `from_state`: the query-side projection (W_a for additive), fused
  into the one product per step that also gives the GRU's U s, U_z s, U_r s (0 rows: the query is s_{i-1});
- a form's own: `v_a` (additive), `scale` (cosine), made by `new_parameters`.

Every form splits its work the same way, so that nothing computed from the source alone is redone per step:

    keys(params, annotations) -> (B, S, K)           once per sentence, in `encode`
    query(projected, hidden) -> (B, Q)                per step, from from_state's first query_dim columns
    energies(params, query, keys) -> e_ij (B, S)      per step
    align(params, query, keys, pad_mask) -> alpha_ij (B, S), float32, exactly zero at padding

`params` is the module that holds the parameters (the RNNsearch model).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nmt.models.configs import AttentionScore

COSINE_EPS = 1e-6  # the smallest norm cosine divides by: a zero vector scores 0 instead of NaN


def masked_softmax(energies: Tensor, pad_mask: Tensor) -> Tensor:
    """alpha (B, S) float32 = softmax_j e_ij over the real positions: padding gets exp(-inf) = exactly 0."""
    return energies.masked_fill(pad_mask, float("-inf")).softmax(dim=-1, dtype=torch.float32)


def additive_attention(query: Tensor, keys: Tensor, v_a: nn.Linear, pad_mask: Tensor) -> Tensor:
    """alpha_ij (B, S), float32: softmax_j of e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j) (eq. 6, App. A.1.2).

    `query` (B, A) is W_a s_{i-1}, `keys` (B, S, A) is U_a h_j; padding gets exactly zero weight.

    On the CPU it is computed through tanh(x) = 2 sigmoid(2x) - 1:
    e_ij = 2 v_a^T sigmoid(2 (W_a s_{i-1} + U_a h_j)) - sum(v_a), and the softmax over j ignores the constant.
    The alignments are the same; this (B, S, A) element-wise function is the decoder's hottest operation,
    and torch's CPU sigmoid is about 10x faster than its tanh (`make bench`: the "sigmoid form" ablation).
    Elsewhere the form as written stays: on a GPU an element-wise function costs its memory traffic whatever
    it computes, and the sigmoid form would add two small kernels to every step.
    """
    if query.device.type == "cpu":
        doubled = torch.add((2 * query)[:, None, :], keys, alpha=2.0)  # (B, S, A) 2 (W_a s_{i-1} + U_a h_j)
        scores = 2 * v_a(doubled.sigmoid_()).squeeze(-1)  # (B, S) e_ij + sum(v_a)
    else:
        scores = v_a(torch.tanh(query[:, None, :] + keys)).squeeze(-1)  # (B, S) e_ij
    return masked_softmax(scores, pad_mask)


def dot_scores(query: Tensor, keys: Tensor) -> Tensor:
    """e_ij = query_i^T k_j (B, S) from `query` (B, D) and `keys` (B, S, D): one batched product per step."""
    return torch.bmm(keys, query.to(keys.dtype)[:, :, None])[:, :, 0]


def sum_of_directions(annotations: Tensor) -> Tensor:
    """(B, S, H) forward h_j + backward h_j: the annotations in the decoder's size, without parameters."""
    forward, backward = annotations.chunk(2, dim=-1)
    return forward + backward


@dataclass(frozen=True)
class Scorer:
    """The common interface of the six forms (see the module docstring). This base scores nothing itself."""

    hidden_dim: int  # H: the decoder's state s_{i-1}; the annotations h_j have 2H
    attention_dim: int  # A: the additive form's hidden size (n' in App. A.1.2); the others do not use it

    @property
    def key_dim(self) -> int:
        """The width of `to_keys`, the source-side projection; 0 for a form without one."""
        return 0

    @property
    def query_dim(self) -> int:
        """How many rows of the model's `from_state` product belong to the score; 0: the query is s_{i-1}."""
        return 0

    def new_parameters(self) -> dict[str, nn.Module | nn.Parameter]:
        """The form's own parameters besides `to_keys` and from_state's rows, by the name the model keeps."""
        return {}

    def init_(self, params: nn.Module) -> None:
        """Set the form's initial values, after the model's generic (Xavier) initialisation."""

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        """(B, S, K): everything the score computes from h_j alone, once per sentence."""
        raise NotImplementedError

    def query(self, projected: Tensor, hidden: Tensor) -> Tensor:
        """What the keys are scored against, from from_state's `query_dim` columns (B, Q) and s_{i-1}."""
        return hidden

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        """e_ij (B, S), padding included (`align` masks it)."""
        raise NotImplementedError

    def align(self, params: nn.Module, query: Tensor, keys: Tensor, pad_mask: Tensor) -> Tensor:
        """alpha_ij (B, S) float32: softmax_j e_ij, exactly zero at padding."""
        return masked_softmax(self.energies(params, query, keys), pad_mask)


class Additive(Scorer):
    """e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j) (Bahdanau et al. 2014, eq. 6 and App. A.1.2; Luong et al. 2015
    call it "concat"). The default, computed exactly as before the other forms existed.

    U_a h_j (A) is `to_keys`, once per sentence (App. A.1.2 notes it can be precomputed); W_a s_{i-1} (with a
    bias) is from_state's first A rows. v_a starts at zero (App. B.1): the first alignments are uniform over
    the real source positions, and W_a, U_a get their first gradients once v_a has moved.
    """

    @property
    def key_dim(self) -> int:
        return self.attention_dim

    @property
    def query_dim(self) -> int:
        return self.attention_dim

    def new_parameters(self) -> dict[str, nn.Module | nn.Parameter]:
        return {"v_a": nn.Linear(self.attention_dim, 1, bias=False)}

    def init_(self, params: nn.Module) -> None:
        nn.init.zeros_(params.v_a.weight)

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        return params.to_keys(annotations)  # (B, S, A) U_a h_j

    def query(self, projected: Tensor, hidden: Tensor) -> Tensor:
        return projected  # (B, A) W_a s_{i-1}

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        """eq. 6 as written; `align` gives its softmax (through the sigmoid form on the CPU)."""
        return params.v_a(torch.tanh(query[:, None, :] + keys)).squeeze(-1)

    def align(self, params: nn.Module, query: Tensor, keys: Tensor, pad_mask: Tensor) -> Tensor:
        return additive_attention(query, keys, params.v_a, pad_mask)


class Dot(Scorer):
    """e_ij = s_{i-1}^T k_j with k_j = forward h_j + backward h_j (Luong et al. 2015, Section 3.1, "dot").

    The dot product needs both vectors in one space, and h_j has 2H dimensions where s_{i-1} has H. A learned
    H x 2H projection W would make s^T (W h_j) exactly the `general` form; summing the two directions' halves
    needs no parameter, so `dot` stays a parameter-free dot product and dot against general measures what
    the learned bilinear map adds. (The sum keeps what both directions read at j; either half alone would
    drop one side of the sentence.) The keys are the sum, once per sentence. Nothing to initialise; the
    scores are unscaled, so their spread grows with H (`scaled-dot` divides it out).
    """

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        return sum_of_directions(annotations)  # (B, S, H)

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        return dot_scores(query, keys)


class ScaledDot(Dot):
    """e_ij = s_{i-1}^T k_j / sqrt(H), k_j as in `Dot` (scaled dot-product, Vaswani et al. 2017, Section
    3.2.1): for vectors of unit-variance entries the dot product's variance grows as H, which pushes the
    softmax into its flat-gradient corners; dividing by sqrt(d), d = H, keeps the scores of order 1. The
    division is folded into the keys, once per sentence."""

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        return sum_of_directions(annotations) / math.sqrt(self.hidden_dim)  # (B, S, H)


class General(Scorer):
    """e_ij = s_{i-1}^T W h_j (Luong et al. 2015, Section 3.1, "general"): a learned bilinear map, W (H x 2H).

    W h_j (B, S, H) is `to_keys`, once per sentence, so each step is one batched product with s_{i-1}.
    W starts at zero: uniform first alignments, the additive form's start (v_a = 0, App. B.1), so that the
    forms differ in what they can learn rather than in where they start. A random W would score with a spread
    of order sqrt(H) (nothing scales it), arbitrary sharp alignments. Unlike v_a = 0, W = 0 still gets a
    gradient at once: de_ij / dW = s_{i-1} h_j^T.
    """

    @property
    def key_dim(self) -> int:
        return self.hidden_dim

    def init_(self, params: nn.Module) -> None:
        nn.init.zeros_(params.to_keys.weight)

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        return params.to_keys(annotations)  # (B, S, H) W h_j

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        return dot_scores(query, keys)


class Cosine(Scorer):
    """e_ij = g cos(s_{i-1}, W h_j) = g s_{i-1}^T W h_j / (|s_{i-1}| |W h_j|), with a learned scalar g
    (`scale`): content-based addressing with a key strength (Graves et al. 2014, Neural Turing Machines,
    Section 3.3.1, eq. 5-6).

    Cosines lie in [-1, 1], so without g the weights could differ by a factor e^2 at most and the softmax
    could barely be sharp. g starts at sqrt(H): for roughly independent vectors cos is of order 1/sqrt(H), so
    g cos starts of order 1, the spread of scaled dot-product attention, while a key that matches the query
    can score up to 2 sqrt(H) above one that opposes it (e^45 at H = 512): room for one-hot alignments. W is
    `to_keys` with the generic Xavier start (not zero: the cosine of a zero vector has no direction). W h_j is
    normalised once per sentence and s_{i-1} per step, each divided by at least COSINE_EPS, so that a zero
    vector (a padded annotation) scores 0 rather than NaN.
    """

    @property
    def key_dim(self) -> int:
        return self.hidden_dim

    def new_parameters(self) -> dict[str, nn.Module | nn.Parameter]:
        return {"scale": nn.Parameter(torch.tensor(math.sqrt(self.hidden_dim)))}

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        # (B, S, H) W h_j / |W h_j|, in float32: a bf16 norm would lose the small differences cosines make
        return F.normalize(params.to_keys(annotations).float(), dim=-1, eps=COSINE_EPS)

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        direction = F.normalize(query.float(), dim=-1, eps=COSINE_EPS)  # (B, H) s_{i-1} / |s_{i-1}|
        return params.scale * dot_scores(direction, keys)


class Linear(Scorer):
    """e_ij = w^T [s_{i-1}; h_j] = w_s^T s_{i-1} + w_h^T h_j: a concatenation with no nonlinearity (eq. 6 of
    Bahdanau et al. 2014 without its tanh). Not a published alignment model: a control.

    The query term w_s^T s_{i-1} is the same for every j, and the softmax removes it: alpha_ij depends on the
    source alone, never on what the decoder has written, so the context pools the annotations with fixed
    learned weights. Against it the other forms show what "the decoder can look back selectively" adds
    beyond "the decoder gets more than the last encoder state". It is computed as written all the same:
    w_h^T h_j is `to_keys` (B, S, 1), once per sentence; w_s^T s_{i-1} (with a bias) is from_state's first
    row. w_h starts at zero: uniform weights, the mean annotation, where the additive form starts too. w_s
    and its bias start at zero and get no gradient (the softmax's is zero along a constant shift, up to
    rounding).
    """

    @property
    def key_dim(self) -> int:
        return 1

    @property
    def query_dim(self) -> int:
        return 1

    def init_(self, params: nn.Module) -> None:
        nn.init.zeros_(params.to_keys.weight)
        with torch.no_grad():
            params.from_state.weight[: self.query_dim].zero_()
            params.from_state.bias[: self.query_dim].zero_()

    def keys(self, params: nn.Module, annotations: Tensor) -> Tensor:
        return params.to_keys(annotations)  # (B, S, 1) w_h^T h_j

    def query(self, projected: Tensor, hidden: Tensor) -> Tensor:
        return projected  # (B, 1) w_s^T s_{i-1} + b

    def energies(self, params: nn.Module, query: Tensor, keys: Tensor) -> Tensor:
        return keys[:, :, 0] + query.to(keys.dtype)  # (B, S): the (B, 1) query term broadcast over j


SCORERS: dict[AttentionScore, type[Scorer]] = {
    AttentionScore.additive: Additive,
    AttentionScore.dot: Dot,
    AttentionScore.scaled_dot: ScaledDot,
    AttentionScore.general: General,
    AttentionScore.cosine: Cosine,
    AttentionScore.linear: Linear,
}


def make_scorer(form: AttentionScore | str, hidden_dim: int, attention_dim: int) -> Scorer:
    """The scorer of `form` (an `AttentionScore` or its value) for a decoder of `hidden_dim` units."""
    return SCORERS[AttentionScore(form)](hidden_dim, attention_dim)


__all__ = [
    "SCORERS",
    "Additive",
    "Cosine",
    "Dot",
    "General",
    "Linear",
    "ScaledDot",
    "Scorer",
    "additive_attention",
    "dot_scores",
    "make_scorer",
    "masked_softmax",
]
