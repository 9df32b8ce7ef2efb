"""Finding duplicate pairs in a corpus too large to keep: a 64-bit hash per pair, in a compact table.

`nmt prepare` removes a training pair when an earlier pair has the same cleaned (source, target) text. Keeping
every string to compare them would cost the corpus's size in memory again; a 64-bit hash of the pair costs 8
bytes, and `SeenHashes` keeps them in a numpy open-addressing table (linear probing, at most 70% full), which
takes 12 to 23 bytes per distinct pair whatever the sentences' length (and, for the moment of growing, the
old table beside the new one).

Two different pairs are taken for one only when their hashes collide. For n distinct pairs the chance that any
two of them do is about n^2 / 2^65 (the birthday bound): 4e-6 at 12 million pairs, and the cost of one such
collision is one training pair dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

EMPTY = np.uint64(0)  # marks a free slot in the table; a pair whose hash is 0 is given 1 instead
MAX_LOAD = 0.7  # grow the table past this share of used slots: linear probing slows down sharply near full
SEPARATOR = "\t"  # cleaned text never holds a tab (normalize makes every whitespace run one space)


def pair_hashes(sources: Sequence[str], targets: Sequence[str]) -> np.ndarray:
    """(N,) uint64: a 64-bit BLAKE2b hash of each cleaned pair "source<TAB>target"; never 0."""
    digests = b"".join(
        hashlib.blake2b(f"{s}{SEPARATOR}{t}".encode(), digest_size=8).digest()
        for s, t in zip(sources, targets, strict=True)
    )
    hashes = np.frombuffer(digests, dtype="<u8").astype(np.uint64)
    hashes[hashes == EMPTY] = 1
    return hashes


class SeenHashes:
    """A set of 64-bit hashes that answers, for a batch, which are new (and remembers them)."""

    def __init__(self, capacity: int = 1 << 16):
        self._table = np.zeros(_power_of_two(capacity), dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def nbytes(self) -> int:
        return self._table.nbytes

    def add_new(self, hashes: np.ndarray) -> np.ndarray:
        """(N,) bool: True where `hashes[i]` was seen neither before this call nor earlier in `hashes` (the
        first occurrence of each value). Every value is remembered afterwards."""
        hashes = np.asarray(hashes, dtype=np.uint64)
        new = np.zeros(len(hashes), dtype=bool)
        if len(hashes) == 0:
            return new
        # First occurrences within the batch; the later copies are duplicates whatever the table holds.
        values, first = np.unique(hashes, return_index=True)
        while (self._count + len(values)) > MAX_LOAD * len(self._table):
            self._grow()
        inserted = self._insert(values)
        new[first[inserted]] = True
        return new

    def _insert(self, values: np.ndarray) -> np.ndarray:
        """Insert distinct `values`; (K,) bool: True for those that were not in the table yet."""
        table, mask = self._table, np.uint64(len(self._table) - 1)
        inserted = np.zeros(len(values), dtype=bool)
        pending = np.arange(len(values))
        slots = values & mask
        while len(pending):
            held = table[slots[pending]]
            found = held == values[pending]  # already there: a duplicate of an earlier batch
            free = held == EMPTY
            # Claim the free slots. Two values may claim the same slot: whichever write lands wins, and the
            # loser, reading back another value, moves on like any value that found its slot taken.
            claim = pending[free]
            table[slots[claim]] = values[claim]
            won = np.zeros(len(pending), dtype=bool)
            won[free] = table[slots[claim]] == values[claim]
            inserted[pending[won]] = True
            moving = ~(found | won)
            pending = pending[moving]
            slots[pending] = (slots[pending] + np.uint64(1)) & mask
        self._count += int(inserted.sum())
        return inserted

    def _grow(self) -> None:
        old = self._table[self._table != EMPTY]
        self._table = np.zeros(2 * len(self._table), dtype=np.uint64)
        self._count = 0
        self._insert(old)


def _power_of_two(n: int) -> int:
    return 1 << max(4, int(n - 1).bit_length())
