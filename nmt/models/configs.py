"""The model config dataclasses, one per architecture, in a module without torch: the CLI, presets and
registry read them without loading a model. Each default lives here and nowhere else."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AttentionScore(str, enum.Enum):
    """RNNsearch's alignment model: how the decoder's previous state s_{i-1} scores each annotation h_j.

    The equations, with their sources, are in nmt/models/scoring.py."""

    additive = "additive"  # v^T tanh(W s + U h), Bahdanau et al. 2014, eq. 6 (Luong et al. 2015: "concat")
    dot = "dot"  # s^T h', h' the sum of h's two directions (no parameters); Luong et al. 2015, Section 3.1
    scaled_dot = "scaled-dot"  # s^T h' / sqrt(d), as in Vaswani et al. 2017, Section 3.2.1
    general = "general"  # s^T W h, Luong et al. 2015 (bilinear)
    cosine = "cosine"  # g cos(s, W h) with a learned scale g
    linear = "linear"  # w^T [s; h]: no interaction, so the softmax cannot see s (a control)


class OutputState(str, enum.Enum):
    """Which decoder state RNNsearch's deep output reads beside E y_{i-1} and c_i."""

    previous = "previous"  # s_{i-1}, as Bahdanau et al. 2014 write it (App. A.2.2) and their code computes
    new = "new"  # s_i, the state that has already read y_{i-1} and c_i (as eq. 4's g(y_{i-1}, s_i, c_i))


class Positions(str, enum.Enum):
    """How the Transformer tells positions apart (Vaswani et al. 2017, Section 3.5)."""

    sinusoidal = "sinusoidal"  # fixed sinusoids added to the embeddings (Section 3.5)
    learned = "learned"  # a learned table of absolute positions (Section 3.5, Table 3 row E)
    none = "none"  # no position at all: self-attention then sees a bag of words
    rotary = "rotary"  # queries and keys rotated by position (Su et al. 2021, RoFormer, Section 3.4)


@dataclass
class ModelConfig:
    """What every architecture's config has."""

    src_vocab_size: int = 0  # filled from the prepared data
    tgt_vocab_size: int = 0
    share_embeddings: bool = False  # one embedding table for source and target (joint vocabularies only)


@dataclass
class RNNConfig(ModelConfig):
    """RNN Encoder-Decoder (Cho et al. 2014; "RNNencdec" in Bahdanau et al. 2014): no attention."""

    embed_dim: int = 256
    hidden_dim: int = 512
    maxout_dim: int = 0  # 0: a tanh deep-output layer; > 0: maxout with this many units (App. A.2)
    dropout: float = 0.2
    # Where the decoder's candidate state reads c. True: inside the reset gate, tanh(W e + r * (U h + C c)),
    # as in Cho et al. 2014, App. A.2 (the rnnencdec-paper preset). False: beside it,
    # tanh(W e + C c + r * U h), as a GRU fed [e; c] computes; it learned better at small sizes, side by side
    # (docs/results.md, section 7).
    context_in_reset: bool = False


@dataclass
class RNNSearchConfig(ModelConfig):
    """RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, additive attention, deep output."""

    embed_dim: int = 256
    hidden_dim: int = 512  # per direction in the encoder, and the decoder's state size
    attention_dim: int = 512  # the alignment model's hidden size (n' in App. A.1.2)
    attention: AttentionScore = AttentionScore.additive  # the alignment model's scoring function
    maxout_dim: int = 0
    dropout: float = 0.2
    output_state: OutputState = OutputState.previous  # the state the deep output reads (App. A.2.2: s_{i-1})


@dataclass
class TransformerConfig(ModelConfig):
    """Transformer (Vaswani et al. 2017)."""

    d_model: int = 512
    num_heads: int = 8
    ffn_dim: int = 2048
    encoder_layers: int = 6
    decoder_layers: int = 6
    dropout: float = 0.1
    attention_dropout: float = 0.0
    norm_first: bool = True  # pre-norm (stable without long warmup); False gives the paper's post-norm
    tie_output: bool = True  # target embedding tied to the output projection (Section 3.4)
    max_positions: int = 1024
    positions: Positions = Positions.sinusoidal
    scale_attention: bool = True  # the 1/sqrt(d_k) of scaled dot-product attention (Section 3.2.1)
    alignment_layer: int = -1  # the decoder layer whose cross-attention (mean over heads) decoding exposes
