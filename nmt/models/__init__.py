"""The model registry: architecture name -> class. Everything else builds models through `build_model`."""

from __future__ import annotations

from nmt.config import ModelConfig, model_config_class
from nmt.models.base import Seq2Seq
from nmt.models.rnn import RNNEncoderDecoder
from nmt.models.rnnsearch import RNNSearch
from nmt.models.transformer import Transformer

MODELS: dict[str, type[Seq2Seq]] = {
    "rnn": RNNEncoderDecoder,
    "rnnsearch": RNNSearch,
    "transformer": Transformer,
}


def build_model(arch: str, config: ModelConfig) -> Seq2Seq:
    """A freshly initialised model of architecture `arch`."""
    expected = model_config_class(arch)
    if not isinstance(config, expected):
        raise TypeError(f"model '{arch}' needs a {expected.__name__}, got {type(config).__name__}")
    return MODELS[arch](config)


__all__ = ["MODELS", "Seq2Seq", "build_model"]
