"""Source-length buckets.

Buckets are half-open intervals of source length in whitespace-separated words: edges (0, 10, 20) give the
buckets [0, 10), [10, 20) and [20, inf), labelled "0-9", "10-19" and "20+"; a 10-word sentence is in "10-19".
An empty source line has 0 words and belongs to the first bucket.
"""

from __future__ import annotations

import numpy as np

from nmt.errors import UserError


def check_bucket_edges(edges) -> tuple[int, ...]:
    """Validate bucket edges: integers, strictly increasing, from 0 (so the buckets cover every length)."""
    edges = tuple(edges)
    if not edges:
        raise UserError("bucket edges are empty; give increasing word counts starting at 0, e.g. 0,10,20,30")
    if any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) for e in edges):
        raise UserError(f"bucket edges must be whole numbers of words, got {list(edges)}")
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
            f"bad bucket edges '{text}': give comma-separated word counts starting at 0, e.g. 0,10,20"
        ) from None
    return check_bucket_edges(edges)


def bucket_bounds(edges: tuple[int, ...]) -> list[tuple[int, int | None]]:
    """(min_words, max_words) of each bucket, both inclusive; None for the open last bucket."""
    return [(low, high - 1) for low, high in zip(edges[:-1], edges[1:], strict=True)] + [(edges[-1], None)]


def bucket_labels(edges: tuple[int, ...]) -> list[str]:
    """'0-9', '10-19', ..., '60+' (inclusive word counts)."""
    return [
        f"{low}+" if high is None else (str(low) if low == high else f"{low}-{high}")
        for low, high in bucket_bounds(edges)
    ]


def assign_buckets(lengths, edges: tuple[int, ...]) -> np.ndarray:
    """The bucket index of each length: bucket i holds edges[i] <= length < edges[i + 1]."""
    return np.searchsorted(np.asarray(edges), np.asarray(lengths, dtype=np.int64), side="right") - 1  # (N,)
