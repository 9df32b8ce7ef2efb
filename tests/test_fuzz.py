"""Fuzzing the inputs of `nmt translate` and `nmt eval` with hostile text: whatever the lines hold, each input
line gets exactly one output line, and nothing crashes. Seeded, so a failure can be replayed."""

from __future__ import annotations

import json
import random

import pytest
from conftest import run_nmt

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


def write_lines(path, lines: list[str]) -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode("utf-8"))


def count_lines(path) -> int:
    return path.read_bytes().count(b"\n")


@pytest.mark.parametrize("seed", range(4))
def test_translate_gives_one_line_per_input_line(tiny_checkpoint, tmp_path, seed):
    lines = hostile_lines(random.Random(seed), 25)
    source, output = tmp_path / "in.txt", tmp_path / "out.txt"
    write_lines(source, lines)
    result = run_nmt(
        "translate", "--checkpoint", tiny_checkpoint("transformer"), "--input", source, "--output", output,
        "--beam", "2", "--max-len-a", "0", "--max-len-b", "5",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert count_lines(output) == count_lines(source) == len(lines)


def test_translate_of_an_empty_file_writes_an_empty_file(tiny_checkpoint, tmp_path):
    source, output = tmp_path / "empty.txt", tmp_path / "out.txt"
    source.write_bytes(b"")
    result = run_nmt(
        "translate", "--checkpoint", tiny_checkpoint("rnn"), "--input", source, "--output", output
    )
    assert result.exit_code == 0, result.stderr
    assert output.read_bytes() == b""


@pytest.mark.parametrize("seed", range(4))
def test_eval_scores_hostile_text_without_crashing(tmp_path, seed):
    rng = random.Random(seed)
    n = 30
    files = {name: tmp_path / f"{name}.txt" for name in ("src", "ref", "a", "b")}
    for path in files.values():
        write_lines(path, hostile_lines(rng, n))
    report = tmp_path / "report.json"
    result = run_nmt(
        "eval", "--source", files["src"], "--reference", files["ref"], "--system", f"a={files['a']}",
        "--system", f"b={files['b']}", "--bootstrap", "20", "--json", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    scores = json.loads(report.read_text(encoding="utf-8"))
    assert scores["sentences"] == n
    assert sum(bucket["sentences"] for bucket in scores["buckets"]) == n
