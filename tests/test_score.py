"""Forced scoring: `forward` read along a given target equals stepping along it; `nmt score` end to end."""

from __future__ import annotations

import pytest
import torch
from conftest import run_nmt, snapshot
from model_checks import SENTENCES, padded_batch, perturbed_model, run_steps

from nmt.data.batching import pad_sources
from nmt.data.special import EOS_ID, PAD_ID
from nmt.decoding.sampling import sample_search
from nmt.decoding.scoring import SentenceScore, forced_log_probs, format_score, score_pairs
from nmt.decoding.search import greedy_search
from nmt.decoding.translation import load_translator
from nmt.models import Ensemble

pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ["rnn", "rnnsearch", "transformer"]


def make_model(arch: str, seed: int = 0):
    return perturbed_model(arch, seed)


MODELS = {
    **{arch: lambda arch=arch: make_model(arch) for arch in ARCHS},
    "ensemble": lambda: Ensemble([make_model("rnnsearch", 1), make_model("transformer", 2)]).eval(),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_score_equals_the_sum_of_step_log_probs_along_the_reference(kind):
    model = MODELS[kind]()
    src, src_lengths, tgt_in, tgt_lengths = padded_batch()
    targets = [tgt_in[row, 1 : int(tgt_lengths[row])].tolist() for row in range(3)]  # without BOS
    scored = forced_log_probs(model, src, src_lengths, targets)
    # Stepping along each reference, EOS last: feed BOS + target, read the log-prob of target + EOS.
    padded_in = torch.full((3, tgt_in.size(1) + 1), PAD_ID)
    padded_in[:, : tgt_in.size(1)] = tgt_in
    with torch.no_grad():
        stepped, _, _ = run_steps(model, src, src_lengths, padded_in)
    for row, target in enumerate(targets):
        reference = [*target, EOS_ID]
        expected = stepped[row, torch.arange(len(reference)), torch.tensor(reference)]
        assert scored[row].shape == (len(target) + 1,)
        torch.testing.assert_close(scored[row], expected)
        assert float(scored[row].sum()) == pytest.approx(float(expected.sum()), abs=1e-4)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_the_score_of_a_search_result_is_its_log_prob(kind):
    model = MODELS[kind]()
    src, lengths = pad_sources(SENTENCES)
    for found in (
        [[h] for h in greedy_search(model, src, lengths, max_len_a=1.5, max_len_b=4)],
        sample_search(
            model, src, lengths, sentence_ids=[0, 1, 2, 3], seed=4, num_samples=2, max_len_a=1.5, max_len_b=4
        ),
    ):
        for row, hypotheses in enumerate(found):
            for hypothesis in hypotheses:
                (scored,) = forced_log_probs(
                    model, src[row : row + 1], lengths[row : row + 1], [hypothesis.tokens]
                )
                assert float(scored.sum()) == pytest.approx(hypothesis.log_prob, abs=1e-4)


def test_score_pairs_keeps_the_order_whatever_the_batches(tiny_checkpoint):
    model, checkpoint = load_translator(tiny_checkpoint("transformer"), torch.device("cpu"))
    sources = ["alba bero", "", "cima dano eske fora gilu", "hopa", "ivra juno"]
    targets = ["BERO ALBA", "KELA", "", "HOPA", "JUNO IVRA LUMO"]
    together = score_pairs(model, checkpoint.tokenizers, sources, targets, "cpu")
    one_by_one = score_pairs(model, checkpoint.tokenizers, sources, targets, "cpu", batch_tokens=1)
    assert [s.index for s in together] == list(range(5))
    for a, b in zip(together, one_by_one, strict=True):
        assert a.log_prob == pytest.approx(b.log_prob, abs=1e-4)
        assert a.target_pieces == b.target_pieces
        assert len(a.token_log_probs) == len(a.target_pieces) + 1
    assert together[2].target_pieces == [] and len(together[2].token_log_probs) == 1  # EOS alone
    for pair, (source, target) in enumerate(zip(sources, targets, strict=True)):
        (alone,) = score_pairs(model, checkpoint.tokenizers, [source], [target], "cpu")
        assert alone.log_prob == pytest.approx(together[pair].log_prob, abs=1e-4)


def test_format_score_columns():
    score = SentenceScore(0, [-1.0, -2.0, -0.5], ["▁A", "B"])
    assert format_score(score) == "-3.5000\n"
    assert format_score(score, normalized=True) == "-3.5000\t-1.1667\n"
    assert (
        format_score(score, normalized=True, per_token=True) == "-3.5000\t-1.1667\t-1.0000 -2.0000 -0.5000\n"
    )


# ------------------------------------------------------------------------------------------------------------
# nmt score


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_score_command_writes_one_line_per_pair(tiny_checkpoint, tmp_path):
    sources = ["alba bero", "", "cima dano eske"]
    targets = ["BERO ALBA", "CIMA", "ESKE DANO CIMA"]
    source, target = write_lines(tmp_path / "s.txt", sources), write_lines(tmp_path / "t.txt", targets)
    checkpoint = tiny_checkpoint("rnnsearch")
    out = tmp_path / "out" / "scores.txt"
    result = run_nmt(
        "score", "-c", checkpoint, "-s", source, "-t", target, "-o", out, "--per-token", "--normalized",
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").split("\n")[:-1]]
    assert len(rows) == 3 and all(len(row) == 3 for row in rows)
    model, loaded = load_translator(checkpoint, torch.device("cpu"))
    expected = score_pairs(model, loaded.tokenizers, sources, targets, "cpu")
    for row, score in zip(rows, expected, strict=True):
        per_token = [float(value) for value in row[2].split(" ")]
        assert len(per_token) == len(score.target_pieces) + 1
        assert float(row[0]) == pytest.approx(score.log_prob, abs=1e-4)
        assert float(row[0]) == pytest.approx(sum(per_token), abs=1e-3)  # printed to 4 decimals
        assert float(row[1]) == pytest.approx(score.normalized, abs=1e-4)
    plain = run_nmt("score", "-c", checkpoint, "-s", source, "-t", target, "--device", "cpu")
    assert plain.exit_code == 0, plain.stderr
    assert plain.stdout.split("\n")[:-1] == [row[0] for row in rows]
    assert [p.name for p in out.parent.iterdir()] == ["scores.txt"]


def test_score_command_with_an_ensemble(tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "s.txt", ["alba bero", "cima"])
    target = write_lines(tmp_path / "t.txt", ["BERO ALBA", "CIMA"])
    a, b = tiny_checkpoint("rnnsearch"), tiny_checkpoint("transformer")
    result = run_nmt("score", "-c", a, "-c", b, "-s", source, "-t", target, "--device", "cpu")
    assert result.exit_code == 0, result.stderr
    model, loaded = load_translator([a, b], torch.device("cpu"))
    expected = score_pairs(model, loaded.tokenizers, ["alba bero", "cima"], ["BERO ALBA", "CIMA"], "cpu")
    assert [float(v) for v in result.stdout.split()] == pytest.approx(
        [s.log_prob for s in expected], abs=1e-4
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("uneven", "line counts differ: source"),
        ("too long", "line 1 has"),
        ("batch tokens", "--batch-tokens must be at least 1"),
        ("missing target", "file not found"),
    ],
)
def test_bad_score_inputs_are_one_line_errors(case, message, tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "s.txt", ["alba bero", "cima"])
    target = write_lines(tmp_path / "t.txt", ["BERO ALBA", "CIMA"])
    options = []
    if case == "uneven":
        target = write_lines(tmp_path / "t.txt", ["BERO ALBA"])
    elif case == "too long":  # more subwords than the transformer's positions
        target = write_lines(tmp_path / "t.txt", ["ALBA " * 2000, "CIMA"])
    elif case == "batch tokens":
        options = ["--batch-tokens", "0"]
    else:
        target = tmp_path / "nope.txt"
    out = write_lines(tmp_path / "precious.txt", ["precious"])
    before = snapshot(tmp_path)
    result = run_nmt(
        "score", "-c", tiny_checkpoint("transformer"), "-s", source, "-t", target, "-o", out, *options,
        "--device", "cpu",
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert snapshot(tmp_path) == before
