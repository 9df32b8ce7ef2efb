"""Word alignments: the gold alignments `nmt prepare` writes for the synthetic corpus, the Pharaoh format, the
alignment error rate (Och and Ney 2003), reading alignments off attention, and `nmt eval --alignment`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import make_checkpoint, run_nmt, toy_pairs

from nmt.config import EvalConfig
from nmt.data import synthetic
from nmt.data.prepared import PreparedData
from nmt.decoding.alignment import (
    align_from_attention,
    align_words,
    argmax_alignment,
    piece_words,
    word_attention,
)
from nmt.errors import UserError
from nmt.evaluation import evaluate_systems
from nmt.evaluation.alignment import (
    GoldAlignment,
    alignment_scores,
    format_alignment,
    parse_alignment,
    read_alignments,
    write_alignments,
)
from nmt.models.base import AttentionMaps, Seq2Seq

SIZE, SEED = 300, 5
PREPARE = ("--dataset", "synthetic", "--synthetic-size", SIZE, "--seed", SEED, "--vocab-size", "100",
           "--dev-size", "20", "--test-size", "12")  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """A small prepared synthetic corpus whose length filter drops some training pairs (read-only)."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    result = run_nmt("prepare", *PREPARE, "--max-tokens", "120", "--out", out)
    assert result.exit_code == 0, result.stdout + result.stderr
    return out


def gold_by_source(size: int = SIZE, seed: int = SEED) -> dict[str, synthetic.AlignedPair]:
    return {pair.source: pair for pair in synthetic.generate_aligned(size, seed)}


# ------------------------------------------------------------------------------------------------------------
# Gold alignments beside the prepared corpus


def test_every_split_has_the_grammars_alignment_line_for_line_after_the_filters(prepared):
    data = PreparedData.open(prepared)
    steps = {s["name"]: s["removed"] for s in data.manifest["counts"]["train"]["steps"]}
    assert steps["too_long"] > 0  # the filters removed pairs, so the alignments had to follow them
    assert data.alignment_splits == ["train", "dev", "test"]
    derived = gold_by_source()
    for split in ("dev", "test"):
        sources, targets = data.text(split, "source"), data.text(split, "target")
        lines = read_alignments(data.alignment_path(split))
        assert len(lines) == len(sources) == len(targets) == data.manifest["counts"][split]["kept"]
        for source, target, gold in zip(sources, targets, lines, strict=True):
            assert derived[source].target == target
            assert gold == GoldAlignment.of(derived[source].links())
    # train.align follows the rows of encoded/train (there is no train text file).
    train = data.split("train")
    lines = read_alignments(data.alignment_path("train"))
    assert len(lines) == len(train) == data.manifest["counts"]["train"]["kept"]
    for ids, gold in zip(train["src_ids"], lines, strict=True):
        assert gold == GoldAlignment.of(derived[data.tokenizers.source.decode(ids)].links())


def test_each_link_joins_a_target_word_to_the_source_word_it_translates(prepared):
    """Independently of the generator: every word is linked once, to a word of its category and lemma."""
    data = PreparedData.open(prepared)
    sources, targets = data.text("test", "source"), data.text("test", "target")
    for source, target, gold in zip(
        sources, targets, read_alignments(data.alignment_path("test")), strict=True
    ):
        source_words, target_words = source.split(), target.split()
        assert sorted(i for i, _ in gold.sure) == list(range(len(source_words)))
        assert sorted(j for _, j in gold.sure) == list(range(len(target_words)))
        for i, j in gold.sure:
            source_info, target_info = (
                synthetic.SOURCE_WORDS[source_words[i]],
                synthetic.TARGET_WORDS[target_words[j]],
            )
            assert (source_info.category, source_info.lemma) == (target_info.category, target_info.lemma)


def test_the_reverse_direction_swaps_the_links(prepared, tmp_path):
    out = tmp_path / "reverse"
    reverse = ("-s", synthetic.TARGET_LANG, "-t", synthetic.SOURCE_LANG)
    result = run_nmt("prepare", *PREPARE, "--max-tokens", "120", *reverse, "--out", out)
    assert result.exit_code == 0, result.stderr
    forward, backward = PreparedData.open(prepared), PreparedData.open(out)
    assert backward.text("dev", "source") == forward.text("dev", "target")
    swapped = [
        GoldAlignment.of((j, i) for i, j in gold.sure)
        for gold in read_alignments(forward.alignment_path("dev"))
    ]
    assert read_alignments(backward.alignment_path("dev")) == swapped


def test_a_corpus_without_alignments_has_no_align_files(tmp_path):
    for split, pairs in (("train", toy_pairs(120, seed=1)), ("dev", toy_pairs(8, seed=2))):
        for lang, side in (("de", 0), ("en", 1)):
            (tmp_path / f"{split}.{lang}").write_text(
                "".join(p[side] + "\n" for p in pairs), encoding="utf-8"
            )
    out = tmp_path / "data"
    result = run_nmt("prepare", "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train", "--dev-prefix",
                     tmp_path / "dev", "--test-size", "5", "--vocab-size", "48", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.stderr
    data = PreparedData.open(out)
    assert data.alignment_splits == [] and not list((out / "text").glob("*.align"))
    with pytest.raises(UserError, match="no word alignments"):
        data.alignment_path("test")


# ------------------------------------------------------------------------------------------------------------
# The Pharaoh format


def test_pharaoh_lines_parse_into_sure_and_possible_links(tmp_path):
    gold = parse_alignment("0-0 2-1  1p2 3p3\t4-4")
    assert gold.sure == {(0, 0), (2, 1), (4, 4)}
    assert gold.possible == gold.sure | {(1, 2), (3, 3)}
    assert parse_alignment("") == GoldAlignment.of([])
    assert format_alignment([(2, 1), (0, 0), (1, 2)]) == "0-0 1-2 2-1"
    links = [[(0, 0), (1, 2), (2, 1)], [], [(10, 3)]]
    write_alignments(tmp_path / "a.align", links)
    assert (tmp_path / "a.align").read_text(encoding="utf-8") == "0-0 1-2 2-1\n\n10-3\n"
    assert [sorted(g.sure) for g in read_alignments(tmp_path / "a.align")] == links


@pytest.mark.parametrize("bad", ["1-", "-2", "a-b", "1-2-3", "1:2", "1--2", "٣-1", "1 - 2", "0-0 x"])
def test_a_bad_link_names_the_file_and_the_line(tmp_path, bad):
    path = tmp_path / "gold.align"
    path.write_text(f"0-0 1-1\n{bad}\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"gold\.align line 2: '.*' is not a link"):
        read_alignments(path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "gold.align"
    path.write_bytes(b"0-0\n\xff-1\n")
    with pytest.raises(UserError, match=r"gold\.align line 2"):
        read_alignments(path)


# ------------------------------------------------------------------------------------------------------------
# Alignment error rate (Och and Ney 2003, Section 5)


def test_a_perfect_alignment_scores_zero_and_a_disjoint_one_scores_one():
    gold = [GoldAlignment.of([(0, 0), (1, 2), (2, 1)])]
    perfect = alignment_scores([[(0, 0), (1, 2), (2, 1)]], gold)
    assert (perfect.aer, perfect.precision, perfect.recall) == (0.0, 1.0, 1.0)
    disjoint = alignment_scores([[(0, 1), (1, 0), (2, 2)]], gold)
    assert (disjoint.aer, disjoint.precision, disjoint.recall) == (1.0, 0.0, 0.0)
    empty = alignment_scores([[]], gold)
    assert (empty.aer, empty.precision, empty.recall, empty.hypothesis) == (1.0, 0.0, 0.0, 0)


def test_possible_links_count_for_precision_but_not_for_recall():
    gold = [GoldAlignment.of(sure=[(0, 0)], possible=[(1, 1)])]
    scores = alignment_scores([[(0, 0), (1, 1), (2, 2)]], gold)
    # |A| = 3, |S| = 1, |P| = 2, |A n S| = 1, |A n P| = 2
    assert (scores.hypothesis, scores.sure, scores.possible) == (3, 1, 2)
    assert scores.precision == pytest.approx(2 / 3)
    assert scores.recall == 1.0
    assert scores.aer == pytest.approx(1 - (1 + 2) / (3 + 1))
    # Only sure links in the gold: P = S, and AER = 1 - F1 of precision and recall.
    only_sure = alignment_scores([[(0, 0), (1, 1)]], [GoldAlignment.of([(0, 0), (2, 2)])])
    f1 = 2 * only_sure.precision * only_sure.recall / (only_sure.precision + only_sure.recall)
    assert only_sure.aer == pytest.approx(1 - f1)


def test_the_corpus_score_sums_counts_over_sentences_rather_than_averaging_sentence_scores():
    gold = [GoldAlignment.of([(0, 0)]), GoldAlignment.of([(0, 0), (1, 1), (2, 2)])]
    hypotheses = [[(0, 0)], [(0, 1), (1, 0), (2, 2)]]  # sentence AERs 0 and 1 - 2/6: mean 1/3
    scores = alignment_scores(hypotheses, gold)
    assert scores.aer == pytest.approx(1 - (2 + 2) / (4 + 4))  # 0.5, not 1/3
    assert scores.to_dict()["aer"] == scores.aer and scores.to_dict()["hypothesis_links"] == 4


def test_a_gold_without_sure_links_cannot_score():
    with pytest.raises(UserError, match="no sure links"):
        alignment_scores([[(0, 0)]], [GoldAlignment.of([], possible=[(0, 0)])])


def test_the_report_puts_alignment_scores_beside_bleu_and_na_without_attention():
    sources, references = ["a b .", "c ."], ["B A .", "C ."]
    gold = [GoldAlignment.of([(0, 1), (1, 0), (2, 2)]), GoldAlignment.of([(0, 0), (1, 1)], possible=[(0, 1)])]
    hypotheses = {"att": [[(0, 1), (0, 0), (2, 2)], [(0, 0), (0, 1)]], "plain": None}
    config = EvalConfig(bootstrap_samples=0)
    systems = {"att": references, "plain": references}
    report = evaluate_systems(sources, references, systems, config, gold, hypotheses)
    assert report.alignment["plain"] is None
    # |A| = 5, |S| = 5, |A n S| = 2 + 1, |A n P| = 2 + 2
    assert report.alignment["att"].aer == pytest.approx(1 - (3 + 4) / (5 + 5))
    rows = {line.split()[0]: line.split() for line in report.format_table().splitlines() if line}
    assert rows["system"][-3:] == ["AER", "precision", "recall"]
    assert rows["att"][-3:] == ["30.0", "80.0", "60.0"] and rows["plain"][-3:] == ["n/a"] * 3
    written = {s["name"]: s for s in report.to_json_dict()["systems"]}
    assert written["att"]["alignment"] == report.alignment["att"].to_dict()
    assert written["plain"]["alignment"] is None

    plain = evaluate_systems(sources, references, {"att": references}, config)
    assert plain.alignment is None and "AER" not in plain.format_table()
    assert "alignment" not in plain.to_json_dict()["systems"][0]
    with pytest.raises(UserError, match="line counts differ"):
        evaluate_systems(sources, references, {"att": references}, config, gold[:1], {"att": [[]]})


# ------------------------------------------------------------------------------------------------------------
# From attention to word alignments


def test_pieces_group_into_words_at_each_word_start_mark():
    assert piece_words(["▁ta", "▁tav", "o", "▁", "é", "▁."]) == [0, 1, 1, 2, 2, 3]
    assert piece_words(["x", "y", "▁z"]) == [0, 0, 1]  # a first piece without the mark still starts a word
    assert piece_words([]) == []


def test_subword_attention_merges_into_word_attention_and_aligns_by_argmax():
    source_pieces = ["▁ta", "▁tav", "o", "▁bil", "o"]  # words 0, 1, 1, 2, 2
    target_pieces = ["▁dy", "▁dr", "ek", "▁gru", "no"]  # words 0, 1, 1, 2, 2
    attention = torch.tensor(
        [
            [0.30, 0.20, 0.20, 0.15, 0.15],  # the largest piece is word 0, the largest word (sum) is word 1
            [0.10, 0.60, 0.10, 0.10, 0.10],
            [0.10, 0.10, 0.10, 0.60, 0.10],
            [0.10, 0.10, 0.10, 0.60, 0.10],  # the mean of the last two rows: [0.3, 0.2, 0.5]; the last row
            [0.50, 0.10, 0.10, 0.20, 0.10],  # alone would say word 0
        ]
    )
    merged = word_attention(attention, piece_words(source_pieces), piece_words(target_pieces))
    expected = torch.tensor(
        [
            [0.30, 0.40, 0.30],
            [(0.1 + 0.1) / 2, (0.7 + 0.2) / 2, (0.2 + 0.7) / 2],
            [(0.1 + 0.5) / 2, (0.2 + 0.2) / 2, (0.7 + 0.3) / 2],
        ]
    )
    assert torch.allclose(merged, expected)
    assert argmax_alignment(merged) == [(1, 0), (1, 1), (2, 2)]
    assert align_from_attention(attention, source_pieces, target_pieces) == [(1, 0), (1, 1), (2, 2)]


class _PieceTokenizer:
    """A stand-in SentencePiece model: each word is cut into pieces of two letters, the first marked '▁'."""

    def __init__(self):
        self.vocabulary: dict[str, int] = {}

    def pieces(self, text: str) -> list[str]:
        return [("▁" if k == 0 else "") + w[k : k + 2] for w in text.split() for k in range(0, len(w), 2)]

    def encode(self, text: str) -> list[int]:
        return [self.vocabulary.setdefault(p, 4 + len(self.vocabulary)) for p in self.pieces(text)]


class _DiagonalAttention(Seq2Seq):
    """Attention maps made to order: target piece t attends to source piece t (0.3) and, most of all, to the
    source EOS (0.5) in the last layer, and to source piece S - 2 - t in the first layer; two heads each."""

    has_attention = True

    def __init__(self):
        super().__init__(config=None)
        self.batches: list[int] = []

    def attention_maps(self, src, src_lengths, tgt_in):
        self.batches.append(src.size(0))
        assert not self.training and not torch.is_grad_enabled()
        batch, queries, keys = src.size(0), tgt_in.size(1), src.size(1)
        layers = torch.zeros(2, batch, 2, queries, keys)
        for b, length in enumerate(src_lengths.tolist()):
            real = length - 1  # source pieces before the EOS
            for t in range(queries):
                for layer, column in ((1, min(t, real - 1)), (0, max(real - 1 - t, 0))):
                    layers[layer, b, :, t, :real] = 0.2 / real
                    layers[layer, b, :, t, column] = 0.3
                    layers[layer, b, :, t, real] = 0.5  # the EOS
        return AttentionMaps(cross=[layers[0], layers[1]])


def test_a_models_attention_gives_one_alignment_per_pair_in_input_order():
    tokenizer = _PieceTokenizer()
    tokenizers = type("Pair", (), {"source": tokenizer, "target": tokenizer})()
    sentences = ["alba bero", "", "cima dano eske fora gilu", "hopa", "alba  cimaro\tx"]
    model = _DiagonalAttention().train()
    alignments = align_words(model, tokenizers, sentences, sentences, "cpu", batch_tokens=12)
    # The last layer: each target word to the same source word, never to the EOS.
    assert alignments == [[(j, j) for j in range(len(line.split()))] for line in sentences]
    assert len(model.batches) > 1 and model.training  # several sorted batches; the mode is given back
    first_layer = align_words(model, tokenizers, ["alba bero cima"], ["alba bero cima"], "cpu", layer=0)
    assert first_layer == [[(2, 0), (1, 1), (0, 2)]]
    model.alignment_layer = 0  # by default, the layer the model calls its alignment
    assert align_words(model, tokenizers, ["alba bero cima"], ["alba bero cima"], "cpu") == first_layer


def test_a_model_without_attention_cannot_align():
    class NoAttention(Seq2Seq):
        has_attention = False

    with pytest.raises(UserError, match="no attention"):
        align_words(NoAttention(None), None, ["a"], ["b"], "cpu")


# ------------------------------------------------------------------------------------------------------------
# nmt eval --alignment


def test_eval_reports_the_aer_of_attention_and_na_without_it(prepared, tmp_path, one_thread):
    checkpoints = {
        arch: make_checkpoint(tmp_path / f"{arch}.pt", prepared, arch) for arch in ("rnnsearch", "rnn")
    }
    text = prepared / "text"
    result = run_nmt(
        "eval", "-s", text / "test.ul", "-r", text / "test.zk", "--alignment", text / "test.align",
        "--checkpoint", f"attention={checkpoints['rnnsearch']}",
        "--checkpoint", f"plain={checkpoints['rnn']}",
        "--system", f"reference={text / 'test.zk'}", "--beam", "1", "--device", "cpu", "--bootstrap", "0",
        "--json", tmp_path / "eval.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    alignment = {s["name"]: s["alignment"] for s in report["systems"]}
    assert alignment["plain"] is None and alignment["reference"] is None
    scores = alignment["attention"]
    target_words = sum(
        len(line.split()) for line in (text / "test.zk").read_text(encoding="utf-8").splitlines()
    )
    assert scores["hypothesis_links"] == scores["sure_links"] == target_words  # one link per target word
    assert 0 <= scores["aer"] <= 1 and scores["aer"] == pytest.approx(1 - scores["precision"], abs=1e-9)

    lines = result.stdout.splitlines()
    assert any(line.startswith("AER, precision, recall (%)") for line in lines)
    header = next(line for line in lines if line.startswith("system"))
    assert header.split()[-3:] == ["AER", "precision", "recall"]
    rows = {line.split()[0]: line.split() for line in lines[lines.index(header) + 1 :][:3]}
    assert rows["plain"][-3:] == rows["reference"][-3:] == ["n/a", "n/a", "n/a"]
    expected = [f"{100 * scores[key]:.1f}" for key in ("aer", "precision", "recall")]
    assert rows["attention"][-3:] == expected
