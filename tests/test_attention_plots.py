"""`nmt translate --attention-plot` with --attention-kind/-layer/-head/-token: which maps reach a plot, the
figures' panels, the per-token view, and the refusals (exit 2, nothing written)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_nmt, snapshot

import nmt.decoding.translation as translation_module
from nmt.config import DecodeConfig
from nmt.data.batching import pad_sources
from nmt.data.corpus import normalize
from nmt.data.special import BOS_ID
from nmt.decoding.search import beam_search, source_limits
from nmt.decoding.translation import (
    ATTENTION_KINDS,
    attention_inventory,
    load_translator,
    sentence_attention,
    translate_lines,
)
from nmt.errors import UserError
from nmt.models.base import AttentionMaps
from nmt.plots import (
    BOS_PIECE,
    EOS_PIECE,
    KIND_NAMES,
    AttentionView,
    attention_axes,
    plot_translation_attention,
    select_panels,
)

PNG = b"\x89PNG\r\n\x1a\n"
LINES = ["alba bero cima dano", "", "eske fora"]
SHORT = DecodeConfig(beam_size=2, max_len_a=1.0, max_len_b=2)


def write_input(tmp_path: Path, lines=LINES) -> Path:
    path = tmp_path / "in.txt"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def translated(tiny_checkpoint, arch: str, lines=LINES):
    """The model and the translations of `lines`, every one with its attention maps."""
    model, checkpoint = load_translator(tiny_checkpoint(arch), torch.device("cpu"))
    results = list(
        translate_lines(model, checkpoint.tokenizers, lines, SHORT, "cpu", attention_lines=len(lines))
    )
    return model, checkpoint, results


# ------------------------------------------------------------------------------------------------------------
# The maps a plot receives


def test_the_plots_name_the_kinds_of_attention_maps():
    assert tuple(KIND_NAMES) == ATTENTION_KINDS == tuple(f.name for f in dataclasses.fields(AttentionMaps))


@pytest.mark.parametrize("arch", ["rnnsearch", "transformer"])
def test_a_translations_maps_are_the_models_maps_of_its_best_hypothesis(arch, tiny_checkpoint):
    model, checkpoint, results = translated(tiny_checkpoint, arch, LINES[:1])
    (result,) = results
    # The best hypothesis as the search finds it, with the attention the search itself exposes.
    src, src_lengths = pad_sources([checkpoint.tokenizers.source.encode(normalize(LINES[0]))])
    ((best,),) = beam_search(
        model, src, src_lengths, beam_size=SHORT.beam_size, length_penalty=SHORT.length_penalty,
        normalization=SHORT.normalization, max_len_a=SHORT.max_len_a, max_len_b=SHORT.max_len_b,
        max_output_len=source_limits(model)[1], return_attention=True,
    )  # fmt: skip
    assert checkpoint.tokenizers.target.id_to_piece(best.tokens) == result.target_pieces
    with torch.no_grad():
        expected = model.attention_maps(src, src_lengths, torch.tensor([[BOS_ID, *best.tokens]]))
    S, T = len(result.source_pieces) + 1, len(result.target_pieces) + 1  # the EOS (or BOS) counted
    for kind, (queries, keys) in {"cross": (T, S), "encoder": (S, S), "decoder": (T, T)}.items():
        got = getattr(result.attention_maps, kind)
        assert len(got) == len(getattr(expected, kind))
        for layer, want in zip(got, getattr(expected, kind), strict=True):
            assert layer.shape == (1, want.size(1), queries, keys) and layer.dtype == torch.float32
            torch.testing.assert_close(layer, want.float())
    # Today's single map keeps its layout and values: the search's attention, target pieces + EOS down.
    assert result.attention.shape == best.attention.shape == (T, S)
    torch.testing.assert_close(result.attention, best.attention, atol=1e-5, rtol=1e-4)


def test_maps_are_computed_only_for_the_plotted_lines(tiny_checkpoint, monkeypatch):
    model, checkpoint = load_translator(tiny_checkpoint("transformer"), torch.device("cpu"))
    calls = []
    real = model.attention_maps

    def counted(src, src_lengths, tgt_in):
        calls.append(src.shape)
        return real(src, src_lengths, tgt_in)

    monkeypatch.setattr(model, "attention_maps", counted)
    lines = ["alba", "", "bero cima", "dano", "eske"]
    plain = list(translate_lines(model, checkpoint.tokenizers, lines, SHORT, "cpu"))
    assert calls == [] and all(t.attention_maps is None for t in plain)
    plotted = list(translate_lines(model, checkpoint.tokenizers, lines, SHORT, "cpu", attention_lines=3))
    assert len(calls) == 1 + 2  # one probe of what the model has, then lines 1 and 3 (line 2 is empty)
    assert [t.attention_maps is not None for t in plotted] == [True, False, True, False, False]
    assert [t.text for t in plotted] == [t.text for t in plain]  # plotting does not change the search
    calls.clear()
    lazily = translate_lines(model, checkpoint.tokenizers, lines, SHORT, "cpu", attention_lines=3)
    assert next(lazily).attention_maps is not None and len(calls) == 1 + 1  # line 3's maps: not yet


def test_the_inventory_counts_layers_and_heads(tiny_checkpoint):
    model, _ = load_translator(tiny_checkpoint("rnnsearch"), torch.device("cpu"))
    assert attention_inventory(model, "cpu") == {"cross": (1, 1)}
    model, _ = load_translator(tiny_checkpoint("rnn"), torch.device("cpu"))
    assert attention_inventory(model, "cpu") == {}
    model, _ = load_translator(tiny_checkpoint("transformer"), torch.device("cpu"))
    maps = sentence_attention(model, [5, 6], [7], "cpu")
    layers, heads = model.config.decoder_layers, model.config.num_heads
    assert (
        attention_inventory(model, "cpu")["cross"]
        == (len(maps.cross), maps.cross[0].size(1))
        == (layers, heads)
    )


# ------------------------------------------------------------------------------------------------------------
# Choosing and labelling


def test_axes_labels_of_each_kind():
    source, target = ["▁la", "▁casa"], ["▁the", "▁house"]
    assert attention_axes("cross", source, target) == (
        ["▁the", "▁house", EOS_PIECE],
        ["▁la", "▁casa", EOS_PIECE],
    )
    assert attention_axes("encoder", source, target) == (["▁la", "▁casa", EOS_PIECE],) * 2
    assert attention_axes("decoder", source, target) == ([BOS_PIECE, "▁the", "▁house"],) * 2


def test_panels_hold_the_chosen_layers_and_heads():
    rng = np.random.default_rng(0)
    layers = [rng.random((3, 4, 5)) for _ in range(2)]  # 2 layers of 3 heads, 4 queries x 5 keys

    def chosen(**options):
        grid = select_panels(AttentionView(kind="encoder", **options), layers)
        return [[(panel.title, panel.weights) for panel in row] for row in grid]

    ((title, weights),) = chosen()[0]
    assert title == "layer 2, mean of 3 heads" and np.allclose(weights, layers[1].mean(0))
    ((title, weights),) = chosen(layer=1, head=3)[0]
    assert title == "layer 1, head 3" and np.allclose(weights, layers[0][2])
    grid = chosen(layer="all", head="all")
    assert [[t for t, _ in row] for row in grid] == [
        [f"layer {i}, head {h}" for h in (1, 2, 3)] for i in (1, 2)
    ]
    assert all(np.allclose(w, layers[i][h]) for i, row in enumerate(grid) for h, (_, w) in enumerate(row))
    assert [len(row) for row in chosen(layer="all", head=2)] == [1, 1]
    only = select_panels(AttentionView(), [rng.random((1, 4, 5))])  # one layer of one head: nothing to name
    assert only[0][0].title == ""


@pytest.mark.parametrize(
    ("token", "rows"),
    [("animal", [1, 2]), ("it", [3]), ("3", [2]), ("mal", [2]), ("▁it", [3]), (EOS_PIECE, [4]), ("5", [4])],
)
def test_a_token_names_its_query_rows(token, rows):
    queries = ["▁the", "▁ani", "mal", "▁it", EOS_PIECE]
    assert AttentionView(kind="encoder", token=token).query_rows(queries, line=7) == rows


@pytest.mark.parametrize("token", ["dog", "0", "6", "anim"])
def test_a_token_not_among_the_queries_is_refused(token):
    with pytest.raises(UserError, match=r"--attention-token .* line 7 .*1 to 5"):
        AttentionView(kind="encoder", token=token).query_rows(["▁the", "▁ani", "mal", "▁it", "</s>"], line=7)


# ------------------------------------------------------------------------------------------------------------
# Figures


def _axes_labels(figure) -> list[str]:
    return [axes.get_xlabel() or axes.get_title() for axes in figure.axes]


@pytest.mark.parametrize("kind", ["cross", "encoder", "decoder"])
def test_head_all_draws_one_labelled_panel_per_head(kind, tiny_checkpoint, tmp_path):
    model, _, results = translated(tiny_checkpoint, "transformer", LINES[:1])
    layers, heads = attention_inventory(model, "cpu")[kind]
    figure = plot_translation_attention(results[0], tmp_path / "a.png", AttentionView(kind=kind, head="all"))
    assert len(figure.axes) == heads
    assert _axes_labels(figure) == [f"layer {layers}, head {h}" for h in range(1, heads + 1)]
    figure = plot_translation_attention(results[0], tmp_path / "b.png", AttentionView(kind=kind, layer="all"))
    assert len(figure.axes) == layers
    assert _axes_labels(figure) == [f"layer {i}, mean of {heads} heads" for i in range(1, layers + 1)]
    grid = AttentionView(kind=kind, layer="all", head="all")
    assert len(plot_translation_attention(results[0], tmp_path / "c.png", grid).axes) == layers * heads
    one = plot_translation_attention(
        results[0], tmp_path / "d.png", AttentionView(kind=kind, layer=1, head=2)
    )
    assert len(one.axes) == 1 and "layer 1, head 2" in one.axes[0].get_xlabel()
    assert all(path.read_bytes().startswith(PNG) for path in tmp_path.iterdir())


def test_the_token_view_draws_a_line_to_every_key_as_thick_as_its_weight(tiny_checkpoint, tmp_path):
    model, _, results = translated(tiny_checkpoint, "transformer", LINES[:1])
    result = results[0]
    view = AttentionView(kind="encoder", head="all", token="bero")
    figure = plot_translation_attention(result, tmp_path / "token.png", view)
    assert (tmp_path / "token.png").read_bytes().startswith(PNG)
    heads = attention_inventory(model, "cpu")["encoder"][1]
    assert len(figure.axes) == heads
    (row,) = view.query_rows(attention_axes("encoder", result.source_pieces, [])[0], 1)
    for head, axes in enumerate(figure.axes):
        weights = result.attention_maps.encoder[-1][0, head, row].numpy()
        widths = [line.get_linewidth() for line in axes.lines]
        assert len(widths) == len(result.source_pieces) + 1  # one line per key, EOS included
        assert int(np.argmax(widths)) == int(np.argmax(weights))
        assert np.allclose(np.diff(widths), 6 * np.diff(weights), atol=1e-4)  # width grows with the weight


# ------------------------------------------------------------------------------------------------------------
# nmt translate


@pytest.mark.parametrize(
    ("arch", "options"),
    [
        ("rnnsearch", []),
        ("transformer", ["--attention-kind", "cross", "--attention-layer", "1", "--attention-head", "2"]),
        (
            "transformer",
            ["--attention-kind", "encoder", "--attention-layer", "all", "--attention-head", "all"],
        ),
        ("transformer", ["--attention-kind", "decoder", "--attention-head", "all"]),
        ("transformer", ["--attention-kind", "encoder", "--attention-token", "bero"]),
        (
            "transformer",
            ["--attention-kind", "decoder", "--attention-token", BOS_PIECE, "--attention-layer", "all"],
        ),
        ("transformer", ["--attention-kind", "cross", "--attention-token", "1"]),
    ],
)
def test_one_png_per_sentence_whatever_the_options(arch, options, tiny_checkpoint, tmp_path):
    source = write_input(tmp_path, ["alba bero cima dano", "", "eske bero"])
    plots = tmp_path / "plots"
    result = run_nmt(
        "translate", "-c", tiny_checkpoint(arch), "-i", source, "-o", tmp_path / "out.txt",
        "--max-len-a", 1, "--max-len-b", 2, "--attention-plot", plots, *options,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in plots.iterdir()) == ["0001.png", "0003.png"]  # line 2 is empty
    assert all(p.read_bytes().startswith(PNG) for p in plots.iterdir())


@pytest.mark.parametrize(
    ("arch", "options", "message"),
    [
        ("rnnsearch", ["--attention-kind", "encoder"], "no encoder self-attention"),
        ("rnnsearch", ["--attention-kind", "decoder"], "no decoder self-attention"),
        ("rnn", [], "needs a model with attention"),
        ("transformer", ["--attention-layer", "3"], "--attention-layer 3"),
        ("transformer", ["--attention-kind", "encoder", "--attention-head", "5"], "--attention-head 5"),
        ("transformer", ["--attention-head", "0"], "--attention-head"),
        ("transformer", ["--attention-head", "some"], "--attention-head"),
        ("transformer", ["--attention-kind", "both"], "--attention-kind"),
        ("transformer", ["--attention-kind", "encoder", "--attention-token", "alba"], "line 3"),
        ("transformer", ["--attention-kind", "encoder", "--attention-token", "kela"], "line 1"),  # in line 4
        ("transformer", ["--attention-kind", "encoder", "--attention-token", "99"], "line 1"),
    ],
)
def test_refused_before_anything_is_translated(
    arch, options, message, tiny_checkpoint, tmp_path, monkeypatch
):
    def no_search(*args, **kwargs):
        raise AssertionError("the search ran before the options were refused")

    monkeypatch.setattr(translation_module, "beam_search", no_search)
    source = write_input(tmp_path, ["alba bero cima dano", "", "eske bero", "kela"])  # line 4: not plotted
    (tmp_path / "out.txt").write_text("precious\n", encoding="utf-8")
    before = snapshot(tmp_path)
    result = run_nmt(
        "translate", "-c", tiny_checkpoint(arch), "-i", source, "-o", tmp_path / "out.txt",
        "--attention-plot", tmp_path / "plots", "--max-plots", 3, *options,
    )  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1
    assert message in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "options",
    [
        ["--attention-kind", "decoder", "--attention-token", "zzzz"],
        ["--attention-kind", "cross", "--attention-token", "99"],
    ],
)
def test_a_token_missing_from_a_translation_writes_nothing(options, tiny_checkpoint, tmp_path):
    source = write_input(tmp_path)
    (tmp_path / "out.txt").write_text("precious\n", encoding="utf-8")
    before = snapshot(tmp_path)
    common = ["translate", "-c", tiny_checkpoint("transformer"), "--max-len-a", 1, "--max-len-b", 2]
    to_file = run_nmt(
        *common, "-i", source, "-o", tmp_path / "out.txt", "--attention-plot", tmp_path / "p", *options
    )
    assert to_file.exit_code == 2 and "--attention-token" in to_file.stderr and "line 1" in to_file.stderr
    assert len(to_file.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before
    piped = run_nmt(
        *common, "--attention-plot", tmp_path / "p", *options, input="".join(f"{x}\n" for x in LINES)
    )
    assert piped.exit_code == 2 and piped.stdout == "" and snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "options",
    [
        ["--attention-kind", "encoder"],
        ["--attention-layer", "all"],
        ["--attention-head", "1"],
        ["--attention-token", "a"],
    ],
)
def test_attention_options_need_attention_plot(options, tiny_checkpoint, tmp_path):
    out = tmp_path / "out.txt"
    result = run_nmt("translate", "-c", tiny_checkpoint("transformer"), "-o", out, *options, input="alba\n")
    assert result.exit_code == 2 and options[0] in result.stderr and "--attention-plot" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
