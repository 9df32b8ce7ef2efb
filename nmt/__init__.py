"""nmt: neural machine translation with the RNN encoder-decoder, RNNsearch and the Transformer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nmt-bottleneck")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
