"""The model config dataclasses, one per architecture, in a module without torch: the CLI, presets and
registry read them without loading a model. Each default lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass
class RNNSearchConfig(ModelConfig):
    """RNNsearch (Bahdanau et al. 2014): bidirectional GRU encoder, additive attention, deep output."""

    embed_dim: int = 256
    hidden_dim: int = 512  # per direction in the encoder, and the decoder's state size
    attention_dim: int = 512  # the alignment model's hidden size (n' in App. A.1.2)
    maxout_dim: int = 0
    dropout: float = 0.2


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
    alignment_layer: int = -1  # the decoder layer whose cross-attention (mean over heads) decoding exposes
