"""The Python API (nmt/api.py): the README's example runs as printed, and `Translator` gives what the commands
give on the same checkpoint and input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_nmt, toy_pairs

import nmt
from nmt import Translator
from nmt.config import EvalConfig
from nmt.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [source for source, _ in toy_pairs(6, seed=11)] + [""]  # an empty line too
TARGETS = [target for _, target in toy_pairs(6, seed=11)] + [""]


def readme_example() -> str:
    """The code block of the README's "Python API" section."""
    section = (
        (ROOT / "README.md").read_text(encoding="utf-8").split("## Python API", 1)[1].split("\n## ", 1)[0]
    )
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "the Python API section holds one python code block"
    return blocks[0]


def test_the_readme_example_runs_as_printed(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", readme_example()],
        cwd=tmp_path,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("[") and lines[0].count("'") >= 4  # a list of two translations
    assert "BLEU" in result.stdout
    assert (tmp_path / "api-demo" / "run" / "best.pt").is_file()


def loaded_after(statement: str, modules: list[str]) -> list[bool]:
    """Whether each of `modules` is loaded after running `statement` in a fresh interpreter."""
    code = f"import sys; {statement}; print(*[name in sys.modules for name in {modules!r}])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return [word == "True" for word in out.split()]


def test_import_nmt_loads_no_library():
    assert loaded_after("import nmt; nmt.__version__", ["torch", "nmt.api"]) == [False, False]


def test_the_api_loads_torch_only_to_translate_or_train():
    """`nmt eval` of translation files calls `nmt.api.evaluate`, and never needed torch."""
    assert loaded_after("from nmt import Translator, evaluate", ["torch", "nmt.api"]) == [False, True]


def test_nmt_eval_of_translation_files_never_loads_torch(tmp_path):
    """The command, options included (--int8's module loads torch, so it is imported only when given)."""
    text = tmp_path / "text.txt"
    text.write_text("a b c\nd e f\n", encoding="utf-8")
    run_eval = (
        "from nmt.cli.main import main; "
        f"sys.argv = ['nmt', 'eval', '--source', {str(text)!r}, '--reference', {str(text)!r}, "
        f"'--system', 'same={text}']\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
    )
    code = f"import sys\n{run_eval}print('torch' in sys.modules, file=sys.stderr)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stderr.strip().splitlines()[-1] == "False"


def test_the_package_exports_the_api():
    from nmt import api

    assert {"Translator", "evaluate", "prepare", "train"} <= set(nmt.__all__)
    assert (nmt.Translator, nmt.evaluate, nmt.prepare, nmt.train) == (
        api.Translator,
        api.evaluate,
        api.prepare,
        api.train,
    )
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        nmt.nothing  # noqa: B018


@pytest.mark.parametrize("beam", [5, 1])
def test_translate_equals_the_translate_command(tiny_checkpoint, tmp_path, beam):
    checkpoint = tiny_checkpoint("transformer")
    source = tmp_path / "in.txt"
    source.write_text("".join(line + "\n" for line in SOURCES), encoding="utf-8")
    cli = run_nmt("translate", "-c", checkpoint, "-i", source, "--beam", beam, "--device", "cpu")
    assert cli.exit_code == 0, cli.stderr
    assert Translator.load(checkpoint).translate(SOURCES, beam=beam) == cli.stdout.splitlines()


def test_nbest_hypotheses_come_sorted_best_first(tiny_checkpoint):
    translator = Translator.load(tiny_checkpoint("rnnsearch"))
    texts = translator.translate(SOURCES, beam=4)
    found = translator.translate(SOURCES, beam=4, nbest=4, return_hypotheses=True, attention=True)
    assert len(found) == len(SOURCES) and found[-1] == []  # the empty line has no hypothesis
    for text, hypotheses in zip(texts[:-1], found[:-1], strict=True):
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True) and 1 <= len(hypotheses) <= 4
        assert hypotheses[0].text == text
        best = hypotheses[0]
        assert best.attention.shape[0] == len(best.tokens) + 1  # one row per target piece, then EOS
        assert all(h.attention is None for h in hypotheses[1:])


def test_sampling_draws_nbest_samples_reproducibly(tiny_checkpoint):
    translator = Translator.load(tiny_checkpoint("transformer"))
    first = translator.translate(SOURCES[:3], sampling=True, nbest=3, seed=7, return_hypotheses=True)
    again = translator.translate(SOURCES[:3], sampling=True, nbest=3, seed=7, return_hypotheses=True)
    assert [[h.text for h in hyps] for hyps in first] == [[h.text for h in hyps] for hyps in again]
    assert all(len(hyps) == 3 for hyps in first)


def test_score_equals_the_score_command(tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint("rnnsearch")
    source, target = tmp_path / "src.txt", tmp_path / "tgt.txt"
    source.write_text("".join(line + "\n" for line in SOURCES), encoding="utf-8")
    target.write_text("".join(line + "\n" for line in TARGETS), encoding="utf-8")
    cli = run_nmt("score", "-c", checkpoint, "-s", source, "-t", target, "--per-token", "--device", "cpu")
    assert cli.exit_code == 0, cli.stderr
    scores = Translator.load(checkpoint).score(SOURCES, TARGETS)
    for score, line in zip(scores, cli.stdout.splitlines(), strict=True):
        total, per_token = line.split("\t")
        assert f"{score.log_prob:.4f}" == total
        assert " ".join(f"{value:.4f}" for value in score.token_log_probs) == per_token
        assert len(score.token_log_probs) == len(score.target_pieces) + 1  # the pieces, then EOS


def test_an_ensemble_of_one_checkpoint_twice_equals_the_single_model(tiny_checkpoint):
    checkpoint = tiny_checkpoint("transformer")
    single, twice = Translator.load(checkpoint), Translator.load([checkpoint, str(checkpoint)])
    assert twice.translate(SOURCES, beam=3) == single.translate(SOURCES, beam=3)
    for one, two in zip(single.score(SOURCES, TARGETS), twice.score(SOURCES, TARGETS), strict=True):
        assert two.log_prob == pytest.approx(one.log_prob, abs=1e-4)


def test_evaluate_translates_checkpoints_as_the_eval_command_does(tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint("rnn")
    translations = Translator.load(checkpoint).translate(SOURCES[:-1])
    report = nmt.evaluate(
        SOURCES[:-1],
        TARGETS[:-1],
        systems={"file": translations},
        checkpoints={"model": checkpoint},
        config=EvalConfig(bootstrap_samples=0),
        device="cpu",
    )
    by_name = {system.name: system.overall.scores for system in report.systems}
    assert list(by_name) == ["file", "model"]
    assert by_name["file"]["BLEU"].score == by_name["model"]["BLEU"].score  # the same beam-5 output
    assert report.config.target_lang == "tgt"  # read from the checkpoint


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: Translator.load("no/such.pt"), "checkpoint not found: no/such.pt"),
        (lambda t: Translator.load([]), "no checkpoint given"),
        (lambda t: t.translate(["a"], beam=0), "--beam must be at least 1 (got 0)"),
        (lambda t: t.translate(["a"], beam=2, nbest=3), "--nbest must be between 1 and the beam size 2"),
        (lambda t: t.translate(["a"], sampling=True, beam=3), "beam is a beam search option"),
        (lambda t: t.translate(["a"], top_k=3), "top_k is a sampling option: give sampling=True"),
        (lambda t: t.translate(["a"], attention=True), "attention=True needs return_hypotheses=True"),
        (lambda t: t.translate("one sentence"), "must be a list of sentences, not one string"),
        (lambda t: t.score(["a", "b"], ["A"]), "2 sources but 1 targets"),
        (lambda t: nmt.evaluate(["a"], ["A"]), "nothing to evaluate"),
    ],
)
def test_bad_input_is_a_user_error_with_a_clear_message(tiny_checkpoint, call, message):
    translator = Translator.load(tiny_checkpoint("rnnsearch"))
    with pytest.raises(UserError, match=re.escape(message)):
        call(translator)


def test_evaluate_refuses_a_missing_checkpoint_before_loading_any(tiny_checkpoint, monkeypatch):
    """With both languages given no checkpoint is read for them, and a missing second checkpoint must still be
    found before the first one translates the whole test set."""
    loaded = []
    monkeypatch.setattr(Translator, "load", classmethod(lambda cls, *args, **kwargs: loaded.append(args)))
    with pytest.raises(UserError, match=re.escape("checkpoint not found: no/such.pt")):
        nmt.evaluate(
            ["a"],
            ["A"],
            checkpoints={"first": tiny_checkpoint("rnnsearch"), "second": "no/such.pt"},
            config=EvalConfig(source_lang="src", target_lang="tgt"),
            device="cpu",
        )
    assert loaded == []
