"""Hostile text for fuzzing the commands that read text (`nmt translate`, `nmt eval`). Seeded: a failure
can be replayed from its seed."""

from __future__ import annotations

import random
from pathlib import Path

# Pieces that break naive text handling: control characters and NUL, right-to-left text and marks, emoji
# (with zero-width joiners and variation selectors), combining marks, Unicode line/paragraph separators,
# a byte-order mark, carriage returns and non-breaking or zero-width spaces.
HOSTILE = [
    "\x00", "\x01", "\x1b[31m", "\x7f", "\t", "\r", "\u2028", "\u2029", "\u0085", "\ufeff",
    "\u200b", "\u00a0",
    "שלום", "مرحبا", "\u202e", "\u200f", "😀", "👩‍👩‍👧", "❤️", "e\u0301", "\u0338", "Ω", "ß", "ﬁ", "𝔘𝔫𝔦",
    "漢字", "ｆｕｌｌ", "alba", "bero", " ", "  ", ".",
]  # fmt: skip


def hostile_lines(rng: random.Random, count: int) -> list[str]:
    """`count` lines: 10% empty, 5% very long (10,000 characters), the rest 1 to 30 hostile pieces."""
    lines = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.1:
            lines.append("")
        elif kind < 0.15:
            lines.append("".join(rng.choice(HOSTILE) for _ in range(2000))[:10_000])  # a very long line
        else:
            lines.append("".join(rng.choice(HOSTILE) for _ in range(rng.randint(1, 30))))
    return lines


def encode_lines(lines: list[str]) -> bytes:
    return "".join(line + "\n" for line in lines).encode("utf-8")


def write_lines(path: Path, lines: list[str]) -> None:
    Path(path).write_bytes(encode_lines(lines))


def count_lines(path_or_bytes: Path | bytes) -> int:
    """Lines as `nmt` counts them: ended by "\\n" only (Unicode separators are not line ends)."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return data.count(b"\n")
