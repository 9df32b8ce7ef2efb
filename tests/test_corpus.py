"""Reading (nmt/files.py), cleaning and carving parallel corpora (nmt/data/corpus.py), and the manifest's
length statistics."""

from __future__ import annotations

import gzip

import pytest

from nmt.data.corpus import (
    ParallelText,
    carve,
    drop_duplicates,
    drop_empty,
    drop_length_ratio,
    drop_too_long,
    find_file,
    length_ratio,
    normalize,
    one_line,
)
from nmt.data.preparation import length_stats
from nmt.errors import UserError
from nmt.files import read_lines


def test_read_lines_plain_and_gzip_agree(tmp_path):
    text = "première ligne\n\nthird line with a\u2028line separator\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as file:
        file.write(text)
    lines = read_lines(tmp_path / "a.txt")
    assert lines == read_lines(tmp_path / "a.txt.gz")
    assert lines == text.split("\n")[:-1]  # only "\n" ends a line; empty lines are kept


def test_read_lines_drops_crlf_and_bom_but_keeps_a_last_line_without_newline(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffone\r\ntwo\r\nthree".encode())
    assert read_lines(tmp_path / "a.txt") == ["one", "two", "three"]


def test_invalid_utf8_names_the_file_and_line(tmp_path):
    (tmp_path / "bad.txt").write_bytes(b"fine\nstill fine\nbroken \xff here\n")
    with pytest.raises(UserError, match=r"bad\.txt.*line 3"):
        read_lines(tmp_path / "bad.txt")


def test_find_file_prefers_plain_then_gzip_and_names_what_is_missing(tmp_path):
    (tmp_path / "train.de.gz").write_bytes(gzip.compress(b"x\n"))
    assert find_file(tmp_path / "train", "de").name == "train.de.gz"
    (tmp_path / "train.de").write_text("x\n")
    assert find_file(tmp_path / "train", "de").name == "train.de"
    with pytest.raises(UserError, match=r"train\.fr"):
        find_file(tmp_path / "train", "fr")


def test_normalize_composes_and_collapses_whitespace():
    assert normalize("  cafe\u0301 \t au\u00a0lait \n") == "caf\u00e9 au lait"
    assert normalize(normalize("a  b")) == normalize("a  b")  # idempotent
    assert normalize(" \t ") == ""


def test_one_line_keeps_a_sentence_on_one_line():
    assert "\n" not in one_line("two\nlines\r\nhere") and one_line("plain") == "plain"


def test_empty_and_duplicate_filters_report_what_they_removed():
    text = ParallelText(["a", "", "b", "a", "c"], ["x", "y", "", "x", "z"])
    keep, step = drop_empty(text)
    assert keep == [0, 3, 4] and step.removed == 2 and step.before == 5
    keep, step = drop_duplicates(text)
    assert keep == [0, 1, 2, 4] and step.removed == 1  # the first occurrence stays


def test_length_filters():
    assert length_ratio(2, 6) == length_ratio(6, 2) == 3.0
    assert length_ratio(0, 4) == 4.0
    source, target = [1, 5, 30, 2], [1, 4, 3, 9]
    assert drop_too_long(source, target, max_tokens=9) == [0, 1, 3]
    assert drop_length_ratio(source, target, max_ratio=3.0) == [0, 1]


def test_carve_is_a_deterministic_partition():
    first = carve(100, 10, 5, seed=3)
    assert first == carve(100, 10, 5, seed=3)
    assert first != carve(100, 10, 5, seed=4)
    assert (len(first.dev), len(first.test), len(first.train)) == (10, 5, 85)
    assert sorted(first.train + first.dev + first.test) == list(range(100))
    assert first.dev == sorted(first.dev)  # corpus order within each split


def test_carve_refuses_to_leave_no_training_data():
    with pytest.raises(UserError, match="too few"):
        carve(10, 5, 5, seed=1)


def test_length_stats_are_ordered_and_bounded():
    stats = length_stats(list(range(1, 101)))
    assert (stats.p50, stats.p90, stats.p99, stats.max) == (50, 90, 99, 100)
    assert stats.mean == pytest.approx(50.5)
    lumpy = length_stats([3, 1, 4, 1, 5, 9, 2, 6])
    assert min([3, 1, 4, 1, 5, 9, 2, 6]) <= lumpy.p50 <= lumpy.p90 <= lumpy.p99 <= lumpy.max == 9
    assert length_stats([]).max == 0
