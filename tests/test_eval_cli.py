"""`nmt eval` end to end: table, JSON, CSV and PNG outputs, checkpoints; every bad input ends in exit 2."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import sacrebleu
from conftest import run_nmt

from nmt.cli.eval_inputs import read_test_file
from nmt.errors import UserError

WORDS = ["alba", "bero", "cima", "dano", "eske", "fora", "gilu", "hopa", "the", "a", "of", "and"]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    """A source, a reference and two systems of 120 lines (one of them much worse), some lines empty."""
    rng = random.Random(0)
    sources, references = [], []
    for i in range(120):
        length = 0 if i == 3 else rng.randint(1, 45)
        sources.append(" ".join(rng.choice(WORDS) for _ in range(length)))
        references.append(" ".join(rng.choice(WORDS) for _ in range(max(1, length))))
    good = [" ".join(w for w in line.split() if rng.random() > 0.1) for line in references]
    bad = [" ".join(w for w in line.split() if rng.random() > 0.6) for line in references]
    return {
        "src": write_lines(tmp_path / "test.src", sources),
        "ref": write_lines(tmp_path / "test.ref", references),
        "good": write_lines(tmp_path / "good.hyp", good),
        "bad": write_lines(tmp_path / "bad.hyp", bad),
    }


def eval_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "eval", "--source", files["src"], "--reference", files["ref"],
        "--system", f"good={files['good']}", "--system", f"bad={files['bad']}", *extra,
    ]  # fmt: skip


def test_eval_writes_table_json_csv_and_plot(files, tmp_path):
    out = tmp_path / "out"
    result = run_nmt(
        *eval_args(files, "--bootstrap", "200", "--buckets", "0,10,20,30",
                   "--json", out / "eval.json", "--csv", out / "eval.csv", "--plot", out / "bleu.png")
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "nrefs:1" in result.stdout and "tok:13a" in result.stdout
    for label in ["0-9", "10-19", "20-29", "30+", "good", "bad"]:
        assert label in result.stdout

    report = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    references = files["ref"].read_text(encoding="utf-8").split("\n")[:-1]
    good = files["good"].read_text(encoding="utf-8").split("\n")[:-1]
    [good_result] = [s for s in report["systems"] if s["name"] == "good"]
    assert good_result["overall"]["BLEU"]["score"] == sacrebleu.corpus_bleu(good, [references]).score
    assert sum(b["sentences"] for b in report["buckets"]) == 120
    assert report["signatures"]["BLEU"].startswith("nrefs:1")
    overall = [c for c in report["comparisons"] if c["slice"] == "all" and c["metric"] == "BLEU"]
    assert len(overall) == 1 and overall[0]["p_value"] < 0.05

    with open(out / "eval.csv", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * (4 + 1)  # systems x (buckets + overall)
    assert {row["bucket"] for row in rows} == {"0-9", "10-19", "20-29", "30+", "all"}

    png = (out / "bleu.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert sorted(p.name for p in out.iterdir()) == ["bleu.png", "eval.csv", "eval.json"]


def test_same_seed_gives_the_same_json(files, tmp_path):
    for name in ("a.json", "b.json"):
        result = run_nmt(*eval_args(files, "--bootstrap", "100", "--seed", "5", "--json", tmp_path / name))
        assert result.exit_code == 0, result.stderr
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_ter_and_baseline_options(files):
    result = run_nmt(
        *eval_args(files, "--ter", "--bootstrap", "50", "--baseline", "bad", "--tokenize", "char")
    )
    assert result.exit_code == 0, result.stderr
    assert "TER" in result.stdout and "tok:char" in result.stdout
    assert "good - bad" in result.stdout


def test_compare_option_tests_the_named_pairs_only(files):
    extra = ("--system", f"copy={files['ref']}", "--bootstrap", "50", "--compare", "good=bad")
    result = run_nmt(*eval_args(files, *extra))
    assert result.exit_code == 0, result.stderr
    assert "good - bad" in result.stdout
    assert "copy - " not in result.stdout and "- copy" not in result.stdout


def test_alpha_and_holm_correction_options(files, tmp_path):
    """The table says how many comparisons it makes; --correction holm adjusts their p-values, which the JSON
    keeps beside the raw ones, and --alpha sets the level of the * marks."""
    args = ["--bootstrap", "300", "--buckets", "0,20"]
    plain = run_nmt(*eval_args(files, *args, "--json", tmp_path / "plain.json"))
    holm = run_nmt(
        *eval_args(files, *args, "--correction", "holm", "--alpha", "0.01", "--json", tmp_path / "h.json")
    )
    assert plain.exit_code == holm.exit_code == 0, plain.stderr + holm.stderr
    assert "3 comparisons (1 pair x 3 slices), not corrected for multiple comparisons" in plain.stdout
    assert "* = significant at alpha = 0.05" in plain.stdout
    assert "3 comparisons (1 pair x 3 slices); p-values Holm-adjusted over all 3" in holm.stdout
    assert "* = significant at alpha = 0.01" in holm.stdout
    assert "p=0.000" not in plain.stdout + holm.stdout
    report = json.loads((tmp_path / "h.json").read_text(encoding="utf-8"))
    assert report["config"]["correction"] == "holm" and report["config"]["alpha"] == 0.01
    bleu = [c for c in report["comparisons"] if c["metric"] == "BLEU"]
    assert len(bleu) == 3 and all(c["p_value"] <= c["p_adjusted"] <= 1 for c in bleu)
    assert all(c["significant"] == (c["p_adjusted"] <= 0.01) for c in bleu)


def test_checkpoint_is_translated_then_scored(files, tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint("rnnsearch")
    result = run_nmt(
        *eval_args(files, "--checkpoint", f"model={checkpoint}", "--beam", "1", "--device", "cpu",
                   "--bootstrap", "20", "--json", tmp_path / "eval.json")
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    assert [s["name"] for s in report["systems"]] == ["good", "bad", "model"]


def test_line_count_mismatch_names_files_and_counts(files, tmp_path):
    short = write_lines(tmp_path / "short.hyp", ["x"] * 119)
    result = run_nmt("eval", "-s", files["src"], "-r", files["ref"], "--system", f"short={short}")
    assert result.exit_code == 2
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "short.hyp" in message and "119" in message and "test.src" in message and "120" in message


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "utf8",
        "no_equals",
        "duplicate",
        "empty",
        "buckets",
        "no_system",
        "baseline",
        "compare",
        "reference",
        "alpha",
        "correction",
    ],
)
def test_bad_inputs_exit_2_with_one_clear_line(files, tmp_path, case):
    src, ref, good = files["src"], files["ref"], files["good"]
    bad_utf8 = tmp_path / "bad.hyp"
    bad_utf8.write_bytes(b"fine\n\xff\xfe broken\n" + b"x\n" * 118)
    empty = tmp_path / "empty.hyp"
    empty.write_bytes(b"")
    args, expected = {
        "missing": (["--system", f"a={tmp_path / 'nope.hyp'}"], "nope.hyp"),
        "utf8": (["--system", f"a={bad_utf8}"], "line 2 is not valid UTF-8"),
        "no_equals": (["--system", str(good)], "NAME=FILE"),
        "duplicate": (["--system", f"a={good}", "--system", f"a={good}"], "'a' is given twice"),
        "empty": (["--system", f"a={empty}"], "empty.hyp is empty"),
        "buckets": (["--system", f"a={good}", "--buckets", "0,20,10"], "increasing"),
        "no_system": ([], "--system"),
        "baseline": (["--system", f"a={good}", "--baseline", "b"], "baseline 'b'"),
        "compare": (["--system", f"a={good}", "--compare", "a=b"], "--compare names 'b'"),
        "reference": (["--system", f"a={good}", "-r", str(empty)], "empty"),
        "alpha": (["--system", f"a={good}", "--alpha", "1.5"], "alpha must be between 0 and 1"),
        "correction": (["--system", f"a={good}", "--correction", "bonferroni"], "holm"),
    }[case]
    if "-r" not in args:
        args = ["-r", str(ref), *args]
    result = run_nmt("eval", "-s", src, *args)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("short", "short.align has 119"),
        ("syntax", "syntax.align line 2: '0:1' is not a link"),
        ("outside", "outside.align line 2: link 99-0 is outside the sentence pair"),
        ("no_sure", "has no sure links"),
        ("missing", "nope.align"),
    ],
)
def test_a_bad_alignment_file_exits_2_before_any_model_is_loaded(files, tmp_path, case, expected):
    sources = files["src"].read_text(encoding="utf-8").split("\n")[:-1]
    diagonal = [" ".join(f"{i}-{i}" for i in range(min(len(line.split()), 1))) for line in sources]
    path = {
        "short": write_lines(tmp_path / "short.align", diagonal[:-1]),
        "syntax": write_lines(tmp_path / "syntax.align", [diagonal[0], "0:1", *diagonal[2:]]),
        "outside": write_lines(tmp_path / "outside.align", [diagonal[0], "99-0", *diagonal[2:]]),
        "no_sure": write_lines(tmp_path / "none.align", ["0p0" if line else "" for line in diagonal]),
        "missing": tmp_path / "nope.align",
    }[case]
    # The checkpoint does not exist: an error about the alignment shows that it came before any loading.
    result = run_nmt(*eval_args(files, "--alignment", path, "--checkpoint", f"m={tmp_path / 'none.pt'}"))
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_read_test_file_handles_endings_and_reports_bad_files(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"one\r\n\r\nthree\xe2\x80\xa8still three\n")
    assert read_test_file(path) == ["one", "", "three\u2028still three"]
    (tmp_path / "no-newline.txt").write_text("a\nb", encoding="utf-8")
    assert read_test_file(tmp_path / "no-newline.txt") == ["a", "b"]
    (tmp_path / "bad.txt").write_bytes(b"fine\nbroken \xff here\n")
    with pytest.raises(UserError, match=r"bad.txt line 2 is not valid UTF-8"):
        read_test_file(tmp_path / "bad.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(UserError, match="empty"):
        read_test_file(tmp_path / "empty.txt")
    with pytest.raises(UserError, match="not found"):
        read_test_file(tmp_path / "missing.txt")
