"""`nmt translate`, `nmt average` and the translation library: line counts, formats, plots, bad input."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, run_nmt

from nmt.checkpoint import load_checkpoint
from nmt.config import DecodeConfig
from nmt.decoding.translation import load_translator, translate_lines

UNUSUAL = [
    "",
    "alba bero cima",
    "   ",
    "שלום עולם alba",  # right-to-left
    "مرحبا بالعالم",
    "dano 🙂🚀 eske 👩‍👩‍👧",  # emoji, with zero-width joiners
    "e\u0301 a\u0308 n\u0303 fora",  # combining marks
    "gilu\x00hopa\x07ivra\x1b[31m",  # control characters
    "juno\u2028kela\x85lumo\x1c\x1d\x1e\u2029alba",  # characters that str.splitlines() treats as line breaks
    "\ufeffbero\u200b\u200ecima\u202e",  # zero-width and bidi controls
    "tab\there",
    "alba " * 2000,  # 10,000 characters, far beyond anything seen in training
    "",
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def output_lines(text: str) -> list[str]:
    """Split as a file reader would: on "\\n" only."""
    assert text.endswith("\n") or text == ""
    return text.split("\n")[:-1]


# ------------------------------------------------------------------------------------------------------------
# The library


@pytest.mark.parametrize("arch", ["rnn", "rnnsearch", "transformer"])
def test_one_translation_per_line_whatever_the_input(arch, tiny_checkpoint, caplog):
    model, checkpoint = load_translator(tiny_checkpoint(arch), torch.device("cpu"))
    config = DecodeConfig(beam_size=2, nbest=2, max_len_a=0.1, max_len_b=3)
    with caplog.at_level(logging.WARNING, logger="nmt.decoding.translation"):
        results = list(translate_lines(model, checkpoint.tokenizers, UNUSUAL, config, "cpu"))
    assert [r.index for r in results] == list(range(len(UNUSUAL)))
    assert [r.source for r in results] == UNUSUAL
    for result in results:
        assert "\n" not in result.text and "\r" not in result.text
        if not result.source.strip():
            assert result.text == "" and result.hypotheses == [] and result.source_pieces == []
        else:
            assert len(result.hypotheses) == 2 and result.hypotheses[0].score >= result.hypotheses[1].score
    if arch == "transformer":  # the 10,000-character line is longer than max_positions
        assert results[-2].truncated and len(results[-2].source_pieces) == model.config.max_positions - 1
        assert any("line 12" in record.message for record in caplog.records)


def test_chunks_and_batches_do_not_change_the_translations(tiny_checkpoint):
    model, checkpoint = load_translator(tiny_checkpoint("transformer"), torch.device("cpu"))
    lines = [
        "alba bero",
        "",
        "cima dano eske fora gilu",
        "hopa",
        "ivra juno kela lumo",
        "alba",
        "",
        "bero cima",
    ]
    config = DecodeConfig(beam_size=3, max_len_a=1.0, max_len_b=2)
    whole = [t.text for t in translate_lines(model, checkpoint.tokenizers, lines, config, "cpu")]
    one_by_one = DecodeConfig(beam_size=3, max_len_a=1.0, max_len_b=2, batch_tokens=1)
    for chunk_size, decode in ((3, config), (1, one_by_one)):
        again = translate_lines(model, checkpoint.tokenizers, lines, decode, "cpu", chunk_size=chunk_size)
        assert [t.text for t in again] == whole


def test_lines_are_read_lazily_so_streams_and_prompts_work(tiny_checkpoint):
    model, checkpoint = load_translator(tiny_checkpoint("rnn"), torch.device("cpu"))
    read = []

    def lines():
        for line in ["alba", "bero cima", "dano", "eske"]:
            read.append(line)
            yield line

    config = DecodeConfig(beam_size=2, max_len_a=1.0, max_len_b=2)
    for translation in translate_lines(model, checkpoint.tokenizers, lines(), config, "cpu", chunk_size=1):
        assert len(read) == translation.index + 1  # nothing read ahead of the answer
    chunked = translate_lines(model, checkpoint.tokenizers, lines(), config, "cpu", chunk_size=2)
    read.clear()
    assert next(chunked).index == 0 and len(read) == 2


# ------------------------------------------------------------------------------------------------------------
# nmt translate


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_translate_file_keeps_the_line_count(arch, tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "in.txt", UNUSUAL)
    out = tmp_path / "out" / "translations.txt"
    result = run_nmt(
        "translate", "-c", tiny_checkpoint(arch), "-i", source, "-o", out, "--beam", 2, "--max-len-a", 0.1
    )
    assert result.exit_code == 0, result.stderr
    lines = output_lines(out.read_text(encoding="utf-8"))
    assert len(lines) == len(UNUSUAL)
    assert lines[0] == "" and lines[2] == "" and lines[-1] == ""
    assert "sentences/s" in result.stderr and "tokens/s" in result.stderr
    assert [p.name for p in out.parent.iterdir()] == ["translations.txt"]  # no temporary file left behind


def test_translate_reads_stdin_and_writes_stdout(tiny_checkpoint):
    text = "alba bero\n\ncima\r\nwindows line\r\nno final newline"
    result = run_nmt("translate", "-c", tiny_checkpoint("rnnsearch"), "--beam", 1, input=text)
    assert result.exit_code == 0, result.stderr
    assert len(output_lines(result.stdout)) == 5
    assert output_lines(result.stdout)[1] == ""


def test_nbest_format(tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "in.txt", ["alba bero", "", "cima dano eske"])
    result = run_nmt(
        "translate", "-c", tiny_checkpoint("transformer"), "-i", source, "--beam", 4, "--nbest", 3
    )
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in output_lines(result.stdout)]
    assert len(rows) == 3 * 3 and all(len(row) == 4 for row in rows)
    assert [(int(r[0]), int(r[1])) for r in rows] == [
        (line, rank) for line in (1, 2, 3) for rank in (1, 2, 3)
    ]
    for line in (1, 3):
        scores = [float(r[2]) for r in rows if int(r[0]) == line]
        assert all(math.isfinite(s) and s <= 0 for s in scores) and scores == sorted(scores, reverse=True)
    assert all(r[3] == "" for r in rows if r[0] == "2")


@pytest.mark.parametrize("arch", ["rnnsearch", "transformer"])
def test_attention_plots_one_png_per_sentence_up_to_the_cap(arch, tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "in.txt", ["alba bero cima", "", "dano eske", "fora gilu hopa ivra"])
    plots = tmp_path / "plots"
    result = run_nmt(
        "translate", "-c", tiny_checkpoint(arch), "-i", source, "--attention-plot", plots, "--max-plots", 3,
        "--max-len-a", 1, "--max-len-b", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in plots.iterdir()) == [
        "0001.png",
        "0003.png",
    ]  # line 2 is empty, line 4 over the cap
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in plots.iterdir())


def test_attention_plot_of_the_rnn_is_refused_before_anything_is_written(tiny_checkpoint, tmp_path):
    source = write_lines(tmp_path / "in.txt", ["alba bero"])
    out = tmp_path / "out.txt"
    out.write_text("precious\n", encoding="utf-8")
    result = run_nmt(
        "translate", "-c", tiny_checkpoint("rnn"), "-i", source, "-o", out, "--attention-plot", tmp_path / "p"
    )
    assert result.exit_code == 2
    assert "attention" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert out.read_text(encoding="utf-8") == "precious\n" and not (tmp_path / "p").exists()


def _bad_checkpoints(tmp_path: Path, good: Path) -> dict[str, Path]:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    noise = tmp_path / "noise.pt"
    noise.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    return {"missing": tmp_path / "nowhere.pt", "truncated": truncated, "noise": noise, "directory": tmp_path}


@pytest.mark.parametrize("case", ["missing", "truncated", "noise", "directory"])
def test_bad_checkpoints_are_one_line_errors(case, tiny_checkpoint, tmp_path):
    bad = _bad_checkpoints(tmp_path, tiny_checkpoint("rnn"))[case]
    result = run_nmt("translate", "-c", bad, input="alba\n")
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert str(bad.name) in result.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--beam", "0"], "--beam"),
        (["--beam", "-3"], "--beam"),
        (["--beam", "2", "--nbest", "3"], "--nbest"),
        (["--nbest", "0"], "--nbest"),
        (["--batch-tokens", "0"], "--batch-tokens"),
        (["--input", "does-not-exist.txt"], "does-not-exist.txt"),
    ],
)
def test_bad_options_are_one_line_errors(options, message, tiny_checkpoint, tmp_path):
    out = tmp_path / "out.txt"
    result = run_nmt("translate", "-c", tiny_checkpoint("rnn"), "-o", out, *options, input="alba\n")
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_invalid_utf8_names_the_line_and_leaves_the_output_alone(tiny_checkpoint, tmp_path):
    source = tmp_path / "in.txt"
    source.write_bytes(b"alba bero\ncima\n\xff\xfe dano\neske\n")
    out = tmp_path / "out.txt"
    out.write_text("precious\n", encoding="utf-8")
    result = run_nmt("translate", "-c", tiny_checkpoint("rnn"), "-i", source, "-o", out)
    assert result.exit_code == 2
    assert "line 3" in result.stderr and "in.txt" in result.stderr and "UTF-8" in result.stderr
    assert out.read_text(encoding="utf-8") == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.txt"]


def test_an_unreadable_input_is_a_one_line_error(tiny_checkpoint, tmp_path):
    result = run_nmt("translate", "-c", tiny_checkpoint("rnn"), "-i", tmp_path)  # a directory
    assert result.exit_code == 2 and "directory" in result.stderr


# ------------------------------------------------------------------------------------------------------------
# nmt average


def test_average_of_two_checkpoints_is_their_mean(toy_data, tmp_path):
    first = make_checkpoint(tmp_path / "a.pt", toy_data, "transformer", seed=1)
    second = make_checkpoint(tmp_path / "b.pt", toy_data, "transformer", seed=2)
    out = tmp_path / "avg.pt"
    result = run_nmt("average", "--inputs", first, second, "--output", out)
    assert result.exit_code == 0, result.stderr
    a, b, averaged = load_checkpoint(first), load_checkpoint(second), load_checkpoint(out)
    assert averaged.train_state is None and averaged.arch == "transformer"
    assert averaged.model_state.keys() == a.model_state.keys()
    for name, tensor in averaged.model_state.items():
        assert tensor.dtype == a.model_state[name].dtype
        torch.testing.assert_close(tensor, (a.model_state[name] + b.model_state[name]) / 2)
    assert run_nmt("translate", "-c", out, "--beam", 2, input="alba\n").exit_code == 0


def test_average_the_last_checkpoints_of_a_run(toy_data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for step, seed in ((100, 1), (200, 2), (300, 3)):
        make_checkpoint(run / f"ckpt-{step}.pt", toy_data, "rnn", seed=seed)
    out = tmp_path / "avg.pt"
    assert run_nmt("average", "--run-dir", run, "--last", 2, "-o", out).exit_code == 0
    b, c, averaged = (load_checkpoint(p) for p in (run / "ckpt-200.pt", run / "ckpt-300.pt", out))
    for name, tensor in averaged.model_state.items():
        torch.testing.assert_close(tensor, (b.model_state[name] + c.model_state[name]) / 2)
    too_many = run_nmt("average", "--run-dir", run, "--last", 4, "-o", tmp_path / "x.pt")
    assert too_many.exit_code == 2 and "--last" in too_many.stderr


def test_average_refuses_checkpoints_of_different_models(toy_data, tiny_checkpoint, tmp_path):
    out = tmp_path / "avg.pt"
    mixed = run_nmt("average", "--inputs", tiny_checkpoint("rnn"), tiny_checkpoint("transformer"), "-o", out)
    assert mixed.exit_code == 2 and "architecture" in mixed.stderr and not out.exists()
    bad = _bad_checkpoints(tmp_path, tiny_checkpoint("rnn"))["truncated"]
    truncated = run_nmt("average", "--inputs", tiny_checkpoint("rnn"), bad, "-o", out)
    assert truncated.exit_code == 2 and len(truncated.stderr.strip().splitlines()) == 1 and not out.exists()
    neither = run_nmt("average", "-o", out)
    assert neither.exit_code == 2 and "--inputs" in neither.stderr
