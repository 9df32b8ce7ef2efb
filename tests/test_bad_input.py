"""The bad-input matrix: every user-caused error of every command, one row each (docs/reliability.md).

Each case must end with exit code 2 and exactly one line on stderr, `error: ...`, that names the problem, and
must leave the workspace exactly as it was: no file changed, none created. The read-only directory and full
disk cases need a child process with a restriction and live in tests/test_write_errors.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import make_prepared, run_nmt, save_checkpoint_that_runs_code, snapshot, toy_pairs
from test_write_errors import WRITE_ERROR_CASES

DOC = Path(__file__).resolve().parent.parent / "docs" / "reliability.md"

# Every run of a command starts from BASE[command]; a case adds its own arguments (a later option replaces an
# earlier one). {w} is the workspace, {data} a prepared data directory, {rnn}/{transformer} checkpoints.
BASE = {
    "prepare": "-s de -t en --out {w}/new",
    "train": "--data {data} --model rnn --device cpu --out {w}/new",
    "translate": "-c {rnn} -i {w}/in.txt -o {w}/precious.txt",
    "eval": "-s {w}/in.txt -r {w}/ref.txt --json {w}/precious.txt",
    "average": "-o {w}/precious.pt",
    "score": "-c {rnn} -s {w}/in.txt -t {w}/ref.txt -o {w}/precious.txt",
    "export": "-c {transformer} --out {w}/exported",
}
A = "--system a={w}/ref.txt"  # a valid system for nmt eval

# (command, case) -> (the case's arguments, a fragment the error line must contain)
MATRIX: dict[tuple[str, str], tuple[str, str]] = {
    ("prepare", "missing corpus file"): ("--train-prefix {w}/nope", "nope"),
    ("prepare", "unreadable corpus file"): ("--train-prefix {w}/folder", "folder.de is not a readable"),
    ("prepare", "invalid UTF-8"): ("--train-prefix {w}/latin1", "UTF-8"),
    ("prepare", "mismatched line counts"): ("--train-prefix {w}/uneven", "uneven.en"),
    ("prepare", "empty corpus"): ("--train-prefix {w}/blank", "empty"),
    ("prepare", "unknown option"): ("--train-prefix {w}/good --vocab-sise 100", "--vocab-sise"),
    ("prepare", "option of the wrong type"): ("--train-prefix {w}/good --vocab-size many", "--vocab-size"),
    ("prepare", "same source and target"): ("--train-prefix {w}/good -t de", "must differ"),
    ("prepare", "existing output"): ("--train-prefix {w}/good --out {w}/precious", "--force"),
    ("prepare", "unknown dataset, offline"): ("--dataset nobody/nothing", "nobody"),
    ("prepare", "missing recipe"): ("--recipe {w}/none-recipe.yaml", "recipe not found"),
    ("prepare", "unknown recipe key"): ("--recipe {w}/typo-recipe.yaml", "'vocab_size'"),
    ("prepare", "recipe value of the wrong type"): (
        "--recipe {w}/lots-recipe.yaml",
        "'vocab_size' must be an integer (got 'lots')",
    ),
    ("prepare", "recipe that is not a mapping"): ("--recipe {w}/list-recipe.yaml", "must be a mapping"),
    ("prepare", "chunk size below one"): ("--train-prefix {w}/good --chunk-size 0", "--chunk-size"),
    ("prepare", "memory budget too small"): ("--train-prefix {w}/good --memory-budget-mb 100", "512"),
    ("train", "missing data directory"): ("--max-steps 9 --data {w}/nowhere", "nowhere"),
    ("train", "not a prepared directory"): ("--max-steps 9 --data {w}", "not a prepared"),
    ("train", "unknown model"): ("--max-steps 9 --model lstm", "'lstm'"),
    ("train", "unknown preset"): ("--max-steps 9 --preset huge", "'huge'"),
    ("train", "unknown config key"): ("--max-steps 9 --config {w}/typo.yaml", "warmup_steps"),
    ("train", "missing config file"): ("--max-steps 9 --config {w}/none.yaml", "none.yaml"),
    ("train", "invalid YAML"): ("--max-steps 9 --config {w}/broken.yaml", "broken.yaml"),
    ("train", "config value of the wrong type"): (
        "--max-steps 9 --config {w}/lots.yaml",
        "lots.yaml: training config key 'batch_tokens' must be an integer (got 'lots')",
    ),
    ("train", "config number that is not a number"): (
        "--max-steps 9 --config {w}/fast.yaml",
        "'lr' must be a finite number (got 'fast')",
    ),
    ("train", "config choice that does not exist"): (
        "--max-steps 9 --config {w}/cosine.yaml",
        "one of inverse-sqrt, plateau, constant (got 'cosine')",
    ),
    ("train", "config number given for a switch"): (
        "--max-steps 9 --config {w}/switch.yaml",
        "'bf16' must be true or false (got 1)",
    ),
    ("train", "config list of the wrong length"): (
        "--max-steps 9 --config {w}/betas.yaml",
        "'betas' must be a list of 2 numbers",
    ),
    ("train", "model config value of the wrong type"): (
        "--max-steps 9 --config {w}/half.yaml",
        "model config key 'hidden_dim' must be an integer (got 6.5)",
    ),
    ("train", "config section that is not a mapping"): (
        "--max-steps 9 --config {w}/flat.yaml",
        "'train:' must be a mapping",
    ),
    ("train", "unknown option"): ("--max-stepz 9", "--max-stepz"),
    ("train", "no stopping limit"): ("", "no stopping limit"),
    ("train", "token budget below one sentence"): ("--max-steps 9 --batch-tokens 2", "--batch-tokens"),
    ("train", "existing checkpoints"): ("--max-steps 9 --out {w}/run", "--resume"),
    ("train", "resume another model"): (
        "--max-steps 9 --model transformer --resume-from {w}/run/last.pt",
        "resume",
    ),
    ("train", "checkpoint of other data"): (
        "--max-steps 9 --data {w}/other --resume-from {w}/run/last.pt",
        "vocab",
    ),
    ("train", "truncated checkpoint"): ("--max-steps 9 --resume-from {w}/truncated.pt", "truncated.pt"),
    ("train", "option of another model"): ("--max-steps 9 --attention dot", "--attention does not apply"),
    ("train", "resume with another model config"): (
        "--max-steps 9 --resume-from {w}/run/last.pt --config {w}/wider.yaml",
        "a resumed run keeps its model",
    ),
    ("translate", "missing checkpoint"): ("-c {w}/nope.pt", "nope.pt"),
    ("translate", "truncated checkpoint"): ("-c {w}/truncated.pt", "truncated.pt"),
    ("translate", "random bytes as checkpoint"): ("-c {w}/noise.pt", "noise.pt"),
    ("translate", "directory as checkpoint"): ("-c {w}", "is not a file"),
    ("translate", "checkpoint that runs code"): ("-c {w}/crafted.pt", "crafted.pt"),
    ("translate", "missing input"): ("-i {w}/nope.txt", "nope.txt"),
    ("translate", "directory as input"): ("-i {w}/folder.de", "folder.de"),
    ("translate", "invalid UTF-8 input"): ("-i {w}/latin1.de", "line 2"),
    ("translate", "beam 0"): ("--beam 0", "--beam"),
    ("translate", "n-best above the beam"): ("--beam 2 --nbest 3", "--nbest"),
    ("translate", "unknown option"): ("--bean 2", "--bean"),
    ("translate", "attention plot of the rnn"): ("--attention-plot {w}/plots", "attention"),
    ("translate", "attention option without a plot"): ("--attention-kind encoder", "--attention-plot"),
    ("translate", "attention layer out of range"): (
        "-c {transformer} --attention-plot {w}/plots --attention-layer 9",
        "--attention-layer",
    ),
    ("translate", "attention kind the model lacks"): (
        "-c {rnnsearch} --attention-plot {w}/plots --attention-kind encoder",
        "encoder",
    ),
    ("translate", "output is a directory"): ("-o {w}/folder.de", "directory"),
    ("translate", "ensemble of different vocabularies"): ("-c {w}/otherrun/last.pt", "vocabularies"),
    ("translate", "beam option with --sampling"): ("--sampling --beam 4", "--beam is a beam search option"),
    ("translate", "sampling option without --sampling"): ("--top-k 5", "--top-k is a sampling option"),
    ("translate", "temperature 0"): ("--sampling --temperature 0", "--temperature"),
    ("translate", "top-p above 1"): ("--sampling --top-p 1.5", "--top-p"),
    ("translate", "negative top-k"): ("--sampling --top-k -2", "--top-k"),
    ("translate", "sampling with n-best 0"): ("--sampling --nbest 0", "--nbest"),
    ("translate", "int8 on a GPU"): ("--int8 --device cuda", "--int8"),
    ("eval", "missing system file"): ("--system a={w}/nope.txt", "nope.txt"),
    ("eval", "invalid UTF-8 system"): ("--system a={w}/latin1.de", "UTF-8"),
    ("eval", "mismatched line counts"): ("--system a={w}/short.txt", "short.txt"),
    ("eval", "empty system file"): ("--system a={w}/empty.txt", "empty"),
    ("eval", "empty reference"): ("-r {w}/empty.txt --system a={w}/in.txt", "empty"),
    ("eval", "system without a name"): ("--system {w}/ref.txt", "NAME=FILE"),
    ("eval", "a name given twice"): (A + " --system a={w}/in.txt", "twice"),
    ("eval", "buckets out of order"): (A + " --buckets 0,20,10", "increasing"),
    ("eval", "no system"): ("", "--system"),
    ("eval", "unknown baseline"): (A + " --baseline b", "'b'"),
    ("eval", "unknown system in --compare"): (A + " --compare a=b", "'b'"),
    ("eval", "gold alignments of another length"): (A + " --alignment {w}/short.align", "short.align"),
    ("eval", "gold alignment that is not i-j"): (A + " --alignment {w}/bad.align", "bad.align"),
    ("eval", "unknown option"): (A + " --jsn x", "--jsn"),
    ("eval", "truncated checkpoint"): ("--checkpoint m={w}/truncated.pt", "truncated.pt"),
    ("eval", "output is a directory"): (A + " --json {w}/folder.de", "directory"),
    ("eval", "ensemble of different vocabularies"): (
        "--checkpoint e={rnn}+{w}/otherrun/last.pt",
        "vocabularies",
    ),
    ("eval", "empty ensemble member"): ("--checkpoint e={rnn}+", "ensemble"),
    ("eval", "int8 on a GPU"): ("--checkpoint m={rnn} --int8 --device cuda", "--int8"),
    ("average", "missing checkpoint"): ("--inputs {rnn} {w}/nope.pt", "nope.pt"),
    ("average", "checkpoints of different models"): ("--inputs {rnn} {transformer}", "differ"),
    ("average", "neither --inputs nor --run-dir"): ("", "--inputs"),
    ("average", "run without step checkpoints"): ("--run-dir {w}", "checkpoint"),
    ("average", "truncated checkpoint"): ("--inputs {rnn} {w}/truncated.pt", "truncated.pt"),
    ("average", "unknown option"): ("--inputs {rnn} --lats 3", "--lats"),
    ("score", "mismatched line counts"): ("-t {w}/short.txt", "short.txt"),
    ("score", "target longer than the model can produce"): ("-c {transformer} -t {w}/long.txt", "long.txt"),
    ("score", "batch tokens 0"): ("--batch-tokens 0", "--batch-tokens"),
    ("score", "missing target"): ("-t {w}/nope.txt", "nope.txt"),
    ("score", "ensemble of different vocabularies"): ("-c {w}/otherrun/last.pt", "vocabularies"),
    ("score", "unknown option"): ("--per-tokn", "--per-tokn"),
    ("score", "int8 on a GPU"): ("--int8 --device cuda", "--int8"),
    ("export", "missing checkpoint"): ("-c {w}/nope.pt", "nope.pt"),
    ("export", "truncated checkpoint"): ("-c {w}/truncated.pt", "truncated.pt"),
    ("export", "checkpoint of a recurrent model"): ("-c {rnnsearch}", "only the transformer"),
    ("export", "existing output"): ("--out {w}/precious", "--force"),
    ("export", "replacing what is not an export"): ("--out {w}/precious --force", "not a CTranslate2 model"),
    ("export", "unknown format"): ("--format onnx", "--format"),
    ("export", "unknown quantization"): ("--quantization int4", "--quantization"),
}


@pytest.fixture(scope="module")
def workspace(toy_data, tmp_path_factory) -> Path:
    """Inputs of every kind, good and bad, plus outputs that already exist and must survive."""
    w = tmp_path_factory.mktemp("bad-input")
    pairs = toy_pairs(60, seed=4)
    (w / "good.de").write_text("".join(s + "\n" for s, _ in pairs))
    (w / "good.en").write_text("".join(t + "\n" for _, t in pairs))
    (w / "folder.de").mkdir()
    (w / "folder.en").write_text("alba\n")
    (w / "latin1.de").write_bytes(b"alba\nbero \xe0 cima\n")
    (w / "latin1.en").write_text("ALBA\nCIMA BERO\n")
    (w / "uneven.de").write_text("alba\nbero\ncima\n")
    (w / "uneven.en").write_text("ALBA\nBERO\n")
    (w / "blank.de").write_text("\n\n\n")
    (w / "blank.en").write_text("\n\n\n")
    (w / "in.txt").write_text("alba bero\ncima\n")
    (w / "ref.txt").write_text("BERO ALBA\nCIMA\n")
    (w / "short.txt").write_text("BERO ALBA\n")
    (w / "long.txt").write_text("ALBA " * 2000 + "\nCIMA\n")
    (w / "empty.txt").write_text("")
    (w / "typo.yaml").write_text("train:\n  warmup_step: 10\n")
    (w / "broken.yaml").write_text("train: [unclosed\n")
    # YAML values that do not fit their field's type (`lr: 1e-3` beside them is text to YAML, and fine).
    (w / "lots.yaml").write_text("train:\n  lr: 1e-3\n  batch_tokens: lots\n")
    (w / "fast.yaml").write_text("train:\n  lr: fast\n")
    (w / "cosine.yaml").write_text("train:\n  schedule: cosine\n")
    (w / "switch.yaml").write_text("train:\n  bf16: 1\n")
    (w / "betas.yaml").write_text("train:\n  betas: [0.9]\n")
    (w / "half.yaml").write_text("model:\n  hidden_dim: 6.5\n")
    (w / "wider.yaml").write_text("model:\n  hidden_dim: 99\n")
    (w / "short.align").write_text("0-1 1-0\n")
    (w / "bad.align").write_text("0-1 1-0\n0:0\n")
    (w / "flat.yaml").write_text("train: 5\n")
    (w / "typo-recipe.yaml").write_text("dataset: synthetic\nvocab: 100\n")
    (w / "lots-recipe.yaml").write_text("dataset: synthetic\nvocab_size: lots\n")
    (w / "list-recipe.yaml").write_text("- dataset: synthetic\n")
    (w / "precious").mkdir()
    (w / "precious" / "manifest.json").write_text("{}\n")
    (w / "precious.txt").write_text("an earlier output\n")
    (w / "precious.pt").write_bytes(b"an earlier checkpoint")
    # A finished run, and data with another vocabulary that its checkpoint does not fit.
    run = w / "run"
    result = run_nmt(
        "train", "--data", toy_data, "--model", "rnn", "--preset", "tiny", "--out", run,
        "--max-steps", "2", "--dev-sentences", "2", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    swapped = [(t, s) for s, t in toy_pairs(200, seed=5)]  # another vocabulary
    make_prepared(w / "other", swapped, swapped[:10], swapped[:10], vocab_size=80)
    result = run_nmt(
        "train", "--data", w / "other", "--model", "rnn", "--preset", "tiny", "--out", w / "otherrun",
        "--max-steps", "1", "--dev-sentences", "2", "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    good = (run / "last.pt").read_bytes()
    (w / "truncated.pt").write_bytes(good[: len(good) // 2])
    (w / "noise.pt").write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    save_checkpoint_that_runs_code(w / "crafted.pt", marker=w / "code-ran")
    return w


@pytest.mark.parametrize("command, case", list(MATRIX), ids=[f"{c}: {k}" for c, k in MATRIX])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(
    command, case, workspace, toy_data, tiny_checkpoint
):
    template, fragment = MATRIX[command, case]
    places = {
        "w": workspace,
        "data": toy_data,
        "run": workspace / "run",
        "rnn": tiny_checkpoint("rnn"),
        "transformer": tiny_checkpoint("transformer"),
        "rnnsearch": tiny_checkpoint("rnnsearch"),
    }
    args = [part.format(**places) for part in f"{BASE[command]} {template}".split()]
    before = snapshot(workspace)
    result = run_nmt(command, *args, input="")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert fragment in errors[0], errors[0]
    assert snapshot(workspace) == before


def test_the_documented_matrix_is_the_tested_one():
    """docs/reliability.md lists exactly the cases tested here and in tests/test_write_errors.py, and its
    stated size is their number."""
    rows = re.findall(r"^\| `nmt (\w+)` \| ([^|]+?) \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    documented = [(command, case.strip()) for command, case in rows]
    tested = list(MATRIX) + list(WRITE_ERROR_CASES)
    assert sorted(documented) == sorted(tested)
    assert f"{len(tested)} cases" in DOC.read_text(encoding="utf-8")
