"""Fuzzing the inputs of `nmt translate` and `nmt eval` with hostile text: whatever the lines hold, each input
line gets exactly one output line, and nothing crashes. Seeded, so a failure can be replayed."""

from __future__ import annotations

import json
import random

import pytest
from conftest import run_nmt
from stress.fuzz_io import run_fuzz
from stress.hostile import count_lines, hostile_lines, write_lines


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


@pytest.mark.slow
def test_the_fuzz_script_keeps_every_line_count(tmp_path):
    """tests/stress/fuzz_io.py (100,000 lines in `make stress`) in a small size: `nmt` in child processes,
    by file and through a pipe, and `nmt eval` refusing files of unequal lengths."""
    outcomes = run_fuzz(tmp_path, seed=0, lines=120, files=2, bootstrap=5, report=lambda line: None)
    assert [outcome.problems for outcome in outcomes] == [[]] * len(outcomes), [o.line() for o in outcomes]
    assert [outcome.kind for outcome in outcomes] == ["translate", "eval"] * 2 + ["refuse"] * 2
    assert sum(outcome.lines for outcome in outcomes if outcome.kind == "translate") == 120
