"""nmt: neural machine translation with the RNN encoder-decoder, RNNsearch and the Transformer.

The Python API (nmt/api.py, docs/api.md): `from nmt import Translator, prepare, train, evaluate`.
"""

from nmt.version import __version__

_API = ("Translator", "evaluate", "prepare", "train")  # what `from nmt import ...` finds in nmt.api
__all__ = [*_API, "__version__"]


def __getattr__(name: str):
    """The API's names, loaded on first use (PEP 562): `import nmt` (by the CLI) stays quick, without torch
    or the rest of the library."""
    if name in _API:
        # deferred: nmt.api imports the whole library; the lookup runs only once `nmt` is initialised
        from nmt import api

        return getattr(api, name)
    raise AttributeError(f"module 'nmt' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
