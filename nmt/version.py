"""The installed distribution's version, in a leaf module: the library's modules that record it (checkpoints,
manifests, benchmark reports) import it from here, not from the `nmt` package, whose facade loads nmt.api."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nmt-bottleneck")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
