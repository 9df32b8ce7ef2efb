"""`nmt export --format ctranslate2`: the exported model translates as ours does (greedy, float32, token for
token) for every way the Transformer can be configured, its vocabularies keep our ids, and what cannot be
exported is refused before anything is written. Skipped when ctranslate2 is not installed, except the tests
that need no ctranslate2 (its absence is one clear line; other architectures are refused)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import run_nmt, snapshot
from model_checks import perturbed_model, small_tokenizer
from test_models import reversal_batch

from nmt.checkpoint import Checkpoint, load_checkpoint
from nmt.config import BeamStop, LengthNormalization
from nmt.data.batching import pad_sources
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.data.tokenizer import SentencePieceSettings, Tokenizer, TokenizerPair, train_sentencepiece
from nmt.decoding.search import beam_search, greedy_search, max_output_lengths
from nmt.errors import UserError
from nmt.models import build_model, model_config
from nmt.models.ctranslate2_export import export_ctranslate2

MAX_LEN_A, MAX_LEN_B = 1.5, 4  # short outputs: the perturbed models rarely stop by themselves
SOURCES = [[5, 6, 7, 8, 9, 10, 11], [12, 13], [14, 15, 16, 17], [18], [30, 4, 22, 9, 9]]
REVERSAL_STEPS = 70


@pytest.fixture(scope="module")
def ctranslate2():
    return pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return small_tokenizer()


@pytest.fixture(scope="module")
def other_tokenizer() -> Tokenizer:
    """A target side of another size than the source, for separate vocabularies."""
    sentences = ["un chat sur le tapis", "le chien court", "les oiseaux chantent", "chats et chiens"]
    return Tokenizer(train_sentencepiece(sentences * 5, SentencePieceSettings(vocab_size=34)))


def transformer_checkpoint(source: Tokenizer, target: Tokenizer, seed: int = 0, **overrides) -> Checkpoint:
    """A perturbed tiny Transformer (generic weights, see `perturbed_model`) with these tokenizers."""
    sizes = {"src_vocab_size": len(source), "tgt_vocab_size": len(target)}
    model = perturbed_model("transformer", seed=seed, **sizes, **overrides)
    return Checkpoint("transformer", model.config, model.state_dict(), TokenizerPair(source, target), {})


def ours(checkpoint: Checkpoint, beam_size: int = 1, sources=SOURCES, **options) -> list[list[int]]:
    """Our translations of `sources` (ids without EOS), greedy or by beam search."""
    model = checkpoint.build_model()
    src, lengths = pad_sources(sources)
    limits = {"max_len_a": MAX_LEN_A, "max_len_b": MAX_LEN_B}
    if beam_size == 1:
        return [h.tokens for h in greedy_search(model, src, lengths, **limits)]
    found = beam_search(model, src, lengths, beam_size=beam_size, **limits, **options)
    return [hypotheses[0].tokens for hypotheses in found]


def theirs(
    ctranslate2, model_dir, checkpoint: Checkpoint, beam_size: int = 1, sources=SOURCES, **options
) -> list[list[int]]:
    """CTranslate2's translations of `sources`, sentence by sentence (its length limit is one per batch), at
    our length limit: the source's pieces in, the target's pieces back to ids."""
    source, target = checkpoint.tokenizers.source, checkpoint.tokenizers.target
    ids = {piece: i for i, piece in enumerate(target.id_to_piece(range(len(target))))}
    _, lengths = pad_sources(sources)
    limits = max_output_lengths(lengths, MAX_LEN_A, MAX_LEN_B).tolist()
    translator = ctranslate2.Translator(str(model_dir), device="cpu", intra_threads=1)
    outputs = []
    for sentence, limit in zip(sources, limits, strict=True):
        (result,) = translator.translate_batch(
            [source.id_to_piece(sentence)],
            beam_size=beam_size,
            min_decoding_length=0,  # ours may end at once; CTranslate2's default minimum is 1
            max_decoding_length=limit,
            **options,
        )
        outputs.append([ids[piece] for piece in result.hypotheses[0]])
    return outputs


VARIANTS = {
    "pre-norm, sinusoidal": {},
    "post-norm, sinusoidal": {"norm_first": False},
    "learned positions": {"positions": "learned"},
    "no positions": {"positions": "none", "norm_first": False},
    "rotary positions": {"positions": "rotary"},
    "unscaled attention": {"scale_attention": False},
    "untied output, alignment layer 0": {"tie_output": False, "alignment_layer": 0},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_translations_equal_ours_in_float32(variant, ctranslate2, tokenizer, tmp_path, one_thread):
    overrides = dict(VARIANTS[variant])
    checkpoint = transformer_checkpoint(tokenizer, tokenizer, **overrides)
    export_ctranslate2(checkpoint, tmp_path / "ct2")
    assert theirs(ctranslate2, tmp_path / "ct2", checkpoint) == ours(checkpoint)


def test_returned_attention_is_our_alignment(ctranslate2, tokenizer, tmp_path, one_thread):
    """CTranslate2's `return_attention`: our `alignment_layer`'s cross-attention, averaged over the heads, on
    the source's pieces (it leaves out the EOS it appends itself)."""
    checkpoint = transformer_checkpoint(tokenizer, tokenizer, alignment_layer=0)
    export_ctranslate2(checkpoint, tmp_path / "ct2")
    sentence = SOURCES[4]
    src, lengths = pad_sources([sentence])
    limit = int(max_output_lengths(lengths, MAX_LEN_A, MAX_LEN_B))
    (ours_found,) = greedy_search(
        checkpoint.build_model(),
        src,
        lengths,
        max_len_a=MAX_LEN_A,
        max_len_b=MAX_LEN_B,
        return_attention=True,
    )
    translator = ctranslate2.Translator(str(tmp_path / "ct2"), device="cpu", intra_threads=1)
    (result,) = translator.translate_batch(
        [tokenizer.id_to_piece(sentence)],
        min_decoding_length=0,
        max_decoding_length=limit,
        return_attention=True,
    )
    theirs_attention = torch.tensor(result.attention[0])  # (tokens, source pieces)
    assert theirs_attention.shape == (len(ours_found.tokens), len(sentence))
    torch.testing.assert_close(theirs_attention, ours_found.attention[:-1, :-1], atol=1e-5, rtol=0)


def test_separate_and_shared_vocabularies_translate_alike(
    ctranslate2, tokenizer, other_tokenizer, tmp_path, one_thread
):
    separate = transformer_checkpoint(tokenizer, other_tokenizer, seed=1)
    export_ctranslate2(separate, tmp_path / "separate")
    assert theirs(ctranslate2, tmp_path / "separate", separate) == ours(separate)
    shared = transformer_checkpoint(tokenizer, tokenizer, seed=2, share_embeddings=True)
    export_ctranslate2(shared, tmp_path / "shared")
    assert theirs(ctranslate2, tmp_path / "shared", shared) == ours(shared)


def test_vocabularies_and_special_tokens_keep_our_ids(ctranslate2, tokenizer, other_tokenizer, tmp_path):
    checkpoint = transformer_checkpoint(tokenizer, other_tokenizer)
    export_ctranslate2(checkpoint, tmp_path / "ct2")
    for side, tok in (("source", tokenizer), ("target", other_tokenizer)):
        written = json.loads((tmp_path / "ct2" / f"{side}_vocabulary.json").read_text(encoding="utf-8"))
        assert written == [tok.id_to_piece([i])[0] for i in range(len(tok))]
    config = json.loads((tmp_path / "ct2" / "config.json").read_text(encoding="utf-8"))
    pieces = other_tokenizer.id_to_piece([UNK_ID, BOS_ID, EOS_ID])
    assert [config["unk_token"], config["bos_token"], config["eos_token"]] == pieces
    assert config["decoder_start_token"] == pieces[1]
    assert config["add_source_eos"] is True and config["add_source_bos"] is False
    assert config["layer_norm_epsilon"] == pytest.approx(1e-5)


def test_pad_and_bos_are_never_produced(ctranslate2, tokenizer, tmp_path, one_thread):
    """A model pushed to prefer PAD and BOS: ours masks them, and so does the export."""
    checkpoint = transformer_checkpoint(tokenizer, tokenizer)
    state = dict(checkpoint.model_state)
    state["tgt_embed.weight"] = state["tgt_embed.weight"].clone()
    state["tgt_embed.weight"][[PAD_ID, BOS_ID]] *= 50  # tied output: these logits now dominate
    checkpoint.model_state = state
    export_ctranslate2(checkpoint, tmp_path / "ct2")
    found = theirs(ctranslate2, tmp_path / "ct2", checkpoint)
    assert found == ours(checkpoint)
    assert all(PAD_ID not in tokens and BOS_ID not in tokens for tokens in found)


@pytest.fixture(scope="module")
def reverser(tokenizer) -> Checkpoint:
    """A tiny Transformer trained briefly on the reversal task (ids 4..11): unlike a perturbed one, it ends
    its outputs by itself, before the length limit, so that beam search ranks finished hypotheses."""
    vocab = len(tokenizer)
    config = model_config("transformer", "tiny", {"src_vocab_size": vocab, "tgt_vocab_size": vocab})
    torch.manual_seed(0)
    model = build_model("transformer", config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for _ in range(REVERSAL_STEPS):
        src, src_lengths, tgt_in, tgt = reversal_batch(generator)
        logits = model(src, src_lengths, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.set_num_threads(threads)
    pair = TokenizerPair(tokenizer, tokenizer)
    return Checkpoint("transformer", config, model.eval().state_dict(), pair, {})


def test_beam_search_without_normalisation_equals_ours(ctranslate2, reverser, tmp_path, one_thread):
    """Beam 5 finds the same translations when neither side normalises by length (CTranslate2's
    length_penalty 0, our `none`): with no normaliser, its stop (once the best hypothesis has finished) is our
    `exact` one. With normalisation they part: CTranslate2 divides by |y| (our `average`, not GNMT's), and its
    log-probs are renormalised without PAD and BOS where ours are masked, so rankings can differ."""
    sources = [row[: n - 1] for row, n in zip(*reversal_sources(), strict=True)]
    export_ctranslate2(reverser, tmp_path / "ct2")
    expected = ours(reverser, 5, sources, normalization=LengthNormalization.none, stop=BeamStop.exact)
    found = theirs(ctranslate2, tmp_path / "ct2", reverser, 5, sources, length_penalty=0.0)
    assert found == expected
    _, lengths = pad_sources(sources)
    limits = max_output_lengths(lengths, MAX_LEN_A, MAX_LEN_B).tolist()
    ended = sum(len(tokens) < limit for tokens, limit in zip(expected, limits, strict=True))
    assert ended >= len(sources) // 2  # most end by themselves: the finished hypotheses were ranked


def reversal_sources() -> tuple[list[list[int]], list[int]]:
    """24 reversal sources (ids + EOS, with padding) and their lengths."""
    src, lengths, _, _ = reversal_batch(torch.Generator().manual_seed(1), batch_size=24)
    return src.tolist(), lengths.tolist()


def test_int8_export_translates(ctranslate2, tokenizer, tmp_path, one_thread):
    checkpoint = transformer_checkpoint(tokenizer, tokenizer)
    export_ctranslate2(checkpoint, tmp_path / "f32")
    export_ctranslate2(checkpoint, tmp_path / "int8", quantization="int8")
    assert (tmp_path / "int8" / "model.bin").stat().st_size < (tmp_path / "f32" / "model.bin").stat().st_size
    found = theirs(ctranslate2, tmp_path / "int8", checkpoint)
    _, lengths = pad_sources(SOURCES)
    limits = max_output_lengths(lengths, MAX_LEN_A, MAX_LEN_B).tolist()
    assert all(len(tokens) <= limit for tokens, limit in zip(found, limits, strict=True))


# ------------------------------------------------------------------------------------------------------------
# Refusals


def test_other_architectures_are_refused_before_anything_is_written(tmp_path):
    for arch in ("rnn", "rnnsearch"):
        model = perturbed_model(arch, src_vocab_size=40, tgt_vocab_size=40)
        pair = TokenizerPair(small_tokenizer(), small_tokenizer())
        checkpoint = Checkpoint(arch, model.config, model.state_dict(), pair, {})
        with pytest.raises(UserError, match=f"only the transformer .* {arch} model"):
            export_ctranslate2(checkpoint, tmp_path / "out")
        assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_replaced_only_with_force_and_only_if_an_export(
    ctranslate2, tokenizer, tmp_path
):
    first = transformer_checkpoint(tokenizer, tokenizer, seed=4)
    second = transformer_checkpoint(tokenizer, tokenizer, seed=5)
    out = tmp_path / "ct2"
    export_ctranslate2(first, out)
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="--force"):
        export_ctranslate2(second, out)
    assert snapshot(tmp_path) == before
    export_ctranslate2(second, out, force=True)
    assert snapshot(tmp_path) != before and sorted(p.name for p in tmp_path.iterdir()) == ["ct2"]
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("keep me\n")
    with pytest.raises(UserError, match="not a CTranslate2 model directory"):
        export_ctranslate2(second, other, force=True)
    assert (other / "todo.txt").read_text() == "keep me\n"


def test_a_vocabulary_that_does_not_fit_is_refused(ctranslate2, tokenizer, other_tokenizer, tmp_path):
    checkpoint = transformer_checkpoint(tokenizer, tokenizer)
    checkpoint.tokenizers = TokenizerPair(tokenizer, other_tokenizer)  # fewer pieces than embeddings
    sizes = f"{len(other_tokenizer)} pieces but the model has {len(tokenizer)} embeddings"
    with pytest.raises(UserError, match=f"target vocabulary has {sizes}"):
        export_ctranslate2(checkpoint, tmp_path / "ct2")
    assert list(tmp_path.iterdir()) == []


def test_missing_ctranslate2_is_one_line_naming_the_extra(monkeypatch, tiny_checkpoint, tmp_path):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` now raises ImportError
    result = run_nmt("export", "-c", tiny_checkpoint("transformer"), "--out", tmp_path / "ct2")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: exporting to CTranslate2 needs the ctranslate2 package: "
        "pip install 'nmt-bottleneck[ctranslate2]'"
    ]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------------------
# The command


def test_nmt_export_end_to_end(ctranslate2, tiny_checkpoint, tmp_path, one_thread):
    """`nmt export` of a checkpoint on disk, then CTranslate2 translates text as `greedy_search` does."""
    path = tiny_checkpoint("transformer")
    for quantization in ("float32", "int8"):
        out = tmp_path / quantization
        result = run_nmt(
            "export", "-c", path, "--format", "ctranslate2", "--out", out, "--quantization", quantization
        )
        assert result.exit_code == 0, result.stderr
        assert (out / "model.bin").is_file() and (out / "config.json").is_file()
    checkpoint = load_checkpoint(path)
    model = checkpoint.build_model()
    source, target = checkpoint.tokenizers.source, checkpoint.tokenizers.target
    text = ["alba bero cima", "dano"]
    src, lengths = pad_sources([source.encode(line) for line in text])
    expected = [
        target.decode(h.tokens) for h in greedy_search(model, src, lengths, max_len_a=1.0, max_len_b=3)
    ]
    translator = ctranslate2.Translator(str(tmp_path / "float32"), device="cpu", intra_threads=1)
    limits = max_output_lengths(lengths, 1.0, 3).tolist()
    ids = {piece: i for i, piece in enumerate(target.id_to_piece(range(len(target))))}
    found = []
    for line, limit in zip(text, limits, strict=True):
        (result,) = translator.translate_batch(
            [source.pieces(line)], beam_size=1, min_decoding_length=0, max_decoding_length=limit
        )
        found.append(target.decode([ids[piece] for piece in result.hypotheses[0]]))
    assert found == expected
    before = snapshot(tmp_path)
    again = run_nmt("export", "-c", path, "--out", tmp_path / "float32")
    assert again.exit_code == 2 and "--force" in again.stderr
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------------------------------------
# The benchmark's reference


def test_the_benchmark_reference_decodes_our_weights(ctranslate2, one_thread):
    """`make bench`'s CTranslate2 reference: a comparison and a decoding row per search and export, at the
    lengths ours produced; in float32, greedy, CTranslate2 finds ours exactly (the same weights)."""
    from nmt.benchmark.references import add_ctranslate2_references
    from nmt.benchmark.session import BenchSession
    from nmt.benchmark.settings import BenchSettings

    settings = BenchSettings(
        vocab_size=64,
        source_len=6,
        small_presets={"transformer": "tiny"},
        paper_presets={},
        decode_sentences=3,
        decode_warmup=0,
        decode_repeats=1,
    )
    session = BenchSession(settings)
    add_ctranslate2_references(session)
    names = [c.name for c in session.references]
    assert len(names) == 4 and all("against CTranslate2" in name for name in names)
    greedy = next(c for c in session.references if "greedy" in c.name and "float32" in c.baseline)
    assert greedy.agreement == 1.0
    rows = [r for r in session.decoding if r.model.startswith("CTranslate2")]
    assert sorted((r.model, r.beam_size) for r in rows) == [
        ("CTranslate2 float32", 1),
        ("CTranslate2 float32", 5),
        ("CTranslate2 int8", 1),
        ("CTranslate2 int8", 5),
    ]
    assert all(r.peak_memory_mb > 0 and r.mean_output_len <= r.max_output_len + 1 for r in rows)
