"""Source-length buckets, and the unit they count.

Buckets are half-open intervals of source length: edges (0, 10, 20) give the buckets [0, 10), [10, 20) and
[20, inf), labelled "0-9", "10-19" and "20+"; a 10-word sentence is in "10-19". An empty source line has
length 0 and belongs to the first bucket.

Length is counted in whitespace-separated words, or, for a source written without spaces between words
(Chinese, Japanese, Thai, ...), in characters other than whitespace: a Chinese sentence is one "word" long.
Which unit (`source_length_unit`): the source language decides when it is known (nmt/languages.py); without
one, the text does: characters when more than half of the source's letters belong to scripts written without
spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar, Tibetan). Hangul is written with spaces: Korean
counts words.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from nmt.config import CHARACTER_BUCKET_EDGES, WORD_BUCKET_EDGES, LengthUnit
from nmt.errors import UserError
from nmt.languages import writes_without_spaces

# Unicode character-name prefixes of the scripts written without spaces between words.
SCRIPTS_WITHOUT_SPACES = (
    "CJK UNIFIED IDEOGRAPH",
    "CJK COMPATIBILITY IDEOGRAPH",
    "HIRAGANA",
    "KATAKANA",
    "HALFWIDTH KATAKANA",
    "THAI",
    "LAO",
    "KHMER",
    "MYANMAR",
    "TIBETAN",
)


def source_length_unit(sources: Sequence[str], source_lang: str | None = None) -> LengthUnit:
    """Characters for a source written without spaces, else words (the rule in the module docstring)."""
    if source_lang is not None:
        without_spaces = writes_without_spaces(source_lang)
    else:
        without_spaces = mostly_without_spaces(sources)
    return LengthUnit.characters if without_spaces else LengthUnit.words


def mostly_without_spaces(lines: Sequence[str]) -> bool:
    """Whether more than half of the letters (Unicode category L*) of `lines` are in a script written
    without spaces. Digits, punctuation and marks (Thai vowel signs) do not vote."""
    letters = without_spaces = 0
    for line in lines:
        for char in line:
            kind = _letter_kind(char)
            letters += kind > 0
            without_spaces += kind > 1
    return 2 * without_spaces > letters


@lru_cache(maxsize=2**16)
def _letter_kind(char: str) -> int:
    """0: not a letter; 1: a letter of a script written with spaces; 2: one of a script written without."""
    if not unicodedata.category(char).startswith("L"):
        return 0
    return 2 if unicodedata.name(char, "").startswith(SCRIPTS_WITHOUT_SPACES) else 1


def source_lengths(sources: Sequence[str], unit: LengthUnit) -> list[int]:
    """Each line's length in `unit`: whitespace words, or characters other than whitespace."""
    if unit is LengthUnit.characters:
        return [sum(len(word) for word in line.split()) for line in sources]
    return [len(line.split()) for line in sources]


def default_bucket_edges(unit: LengthUnit) -> tuple[int, ...]:
    """The bucket edges used without --buckets (nmt/config.py says why they differ by unit)."""
    return CHARACTER_BUCKET_EDGES if unit is LengthUnit.characters else WORD_BUCKET_EDGES


def check_bucket_edges(edges) -> tuple[int, ...]:
    """Validate bucket edges: integers, strictly increasing, from 0 (so the buckets cover every length)."""
    edges = tuple(edges)
    if not edges:
        raise UserError("bucket edges are empty; give increasing lengths starting at 0, e.g. 0,10,20,30")
    if any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in edges):
        raise UserError(f"bucket edges must be whole numbers (lengths), got {list(edges)}")
    if edges[0] != 0:
        raise UserError(
            f"bucket edges must start at 0 so that every sentence has a bucket, got {list(edges)}"
        )
    if any(b <= a for a, b in zip(edges[:-1], edges[1:], strict=True)):
        raise UserError(f"bucket edges must be strictly increasing, got {list(edges)}")
    return tuple(int(e) for e in edges)


def parse_bucket_edges(text: str) -> tuple[int, ...]:
    """'0,10,20' -> (0, 10, 20), with one clear error for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        edges = tuple(int(p) for p in parts)
    except ValueError:
        raise UserError(
            f"bad bucket edges '{text}': give comma-separated lengths starting at 0, e.g. 0,10,20"
        ) from None
    return check_bucket_edges(edges)


def bucket_bounds(edges: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """(min, max) length of each bucket, both inclusive; None for the open last bucket."""
    return [(low, high - 1) for low, high in zip(edges[:-1], edges[1:], strict=True)] + [(edges[-1], None)]


def bucket_labels(edges: tuple[int, ...]) -> list[str]:
    """'0-9', '10-19', ..., '60+' (inclusive lengths)."""
    return [
        f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        for low, high in bucket_bounds(edges)
    ]


def assign_buckets(lengths, edges: tuple[int, ...]) -> np.ndarray:
    """The bucket index of each length: bucket i holds edges[i] <= length < edges[i + 1]."""
    return np.searchsorted(np.asarray(edges), np.asarray(lengths, dtype=np.int64), side="right") - 1  # (N,)
