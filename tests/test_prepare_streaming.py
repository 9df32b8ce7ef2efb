"""`nmt prepare` streams: chunk boundaries and worker processes change nothing in the output, duplicates found
by hash are those found by string, dev/test are carved as from a list, the training split is written as
several memory-mapped shards, and a failure half-way leaves nothing behind."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_pairs
from test_prepare import check_consistent, write_pairs

from nmt.config import PrepareConfig, build
from nmt.data import preparation, shards
from nmt.data.corpus import ParallelText, carve, drop_duplicates, drop_empty, normalize
from nmt.data.dedup import SeenHashes, pair_hashes
from nmt.data.prepared import PreparedData
from nmt.errors import UserError


def planted_corpus(n: int = 300) -> list[tuple[str, str]]:
    """Toy pairs with empty pairs and duplicates planted, some equal only once cleaned."""
    pairs = toy_pairs(n, seed=5, max_words=6)  # short sentences from 12 words: many repeat by chance
    pairs[10] = ("", "ALBA")
    pairs[40] = (" \t ", " ")
    pairs[50] = pairs[3]
    pairs[77] = ("  " + pairs[60][0].replace(" ", "\u00a0 "), pairs[60][1] + " ")  # equal once cleaned
    pairs[150] = pairs[149]
    return pairs


def config(tmp_path: Path, pairs, **values) -> PrepareConfig:
    prefix = write_pairs(tmp_path / "raw" / "train", pairs)
    settings = {"source_lang": "de", "target_lang": "en", "train_prefix": prefix, "vocab_size": 48}
    return build(PrepareConfig, {"dev_size": 20, "test_size": 15, **settings, **values}, "test")


def snapshot(path: Path) -> dict:
    """What a prepared directory holds, apart from when it was made and the settings that must not matter."""
    data = PreparedData.open(path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.pop("created")
    for key in ("chunk_size", "num_workers"):
        manifest["config"].pop(key)
    splits = {name: data.split(name).with_format("arrow")[:].to_pydict() for name in ("train", "dev", "test")}
    texts = {p.name: p.read_bytes() for p in sorted((path / "text").iterdir())}
    return {"manifest": manifest, "splits": splits, "texts": texts, "spm": (path / "spm.model").read_bytes()}


def test_chunk_boundaries_do_not_change_the_output(tmp_path):
    pairs = planted_corpus()
    whole = preparation.prepare_data(config(tmp_path, pairs), tmp_path / "whole")
    chunked = preparation.prepare_data(config(tmp_path, pairs, chunk_size=7), tmp_path / "chunked")
    check_consistent(whole.path)
    assert snapshot(whole.path) == snapshot(chunked.path)


def test_worker_processes_do_not_change_the_output(tmp_path, monkeypatch):
    # SentencePiece trains with one thread per worker, and its threads may sum in any order: train it with
    # one thread both times, so that only the encoding differs (in this process, or in two workers).
    train = preparation.train_sentencepiece
    monkeypatch.setattr(
        preparation,
        "train_sentencepiece",
        lambda lines, settings: train(lines, replace(settings, num_threads=1)),
    )
    pairs = planted_corpus(200)
    one = preparation.prepare_data(config(tmp_path, pairs, chunk_size=50), tmp_path / "one")
    two = preparation.prepare_data(config(tmp_path, pairs, chunk_size=50, num_workers=2), tmp_path / "two")
    assert snapshot(one.path) == snapshot(two.path)


def test_duplicates_by_hash_are_the_duplicates_by_string(tmp_path):
    pairs = planted_corpus()
    text = ParallelText([normalize(s) for s, _ in pairs], [normalize(t) for _, t in pairs])
    full, _ = drop_empty(text)
    by_string, step = drop_duplicates(text.select(full))
    assert step.removed >= 3  # the planted ones, and chance repeats

    clean = text.select(full)
    seen = SeenHashes(capacity=4)  # tiny: it must grow on the way
    new = np.concatenate(
        [
            seen.add_new(pair_hashes(clean.source[i : i + 13], clean.target[i : i + 13]))
            for i in range(0, len(clean), 13)
        ]
    )
    assert np.flatnonzero(new).tolist() == by_string

    # And end to end: the pairs kept, and dev/test carved, as from the cleaned list.
    result = preparation.prepare_data(config(tmp_path, pairs, chunk_size=11), tmp_path / "data")
    steps = {s["name"]: s["removed"] for s in result.manifest["counts"]["train"]["steps"]}
    assert steps["empty"] == len(pairs) - len(full) and steps["duplicate"] == step.removed
    carved = carve(len(by_string), 20, 15, seed=1)
    kept = [pairs[full[i]] for i in by_string]  # as read: the text files hold the pairs verbatim
    data = PreparedData.open(result.path)
    assert data.text("dev", "source") == [kept[i][0] for i in carved.dev]
    assert data.text("test", "target") == [kept[i][1] for i in carved.test]


def test_seen_hashes_first_occurrences_match_a_python_set():
    rng = np.random.default_rng(0)
    values = rng.integers(1, 3000, size=20_000).astype(np.uint64)
    seen, reference, found = SeenHashes(capacity=16), set(), []
    for batch in np.array_split(values, 9):
        found.append(seen.add_new(batch))
    expected = []
    for value in values.tolist():
        expected.append(value not in reference)
        reference.add(value)
    assert np.concatenate(found).tolist() == expected and len(seen) == len(reference)


def test_the_training_split_is_several_memory_mapped_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "SHARD_BYTES", 2_000)  # a few chunks per shard
    result = preparation.prepare_data(config(tmp_path, planted_corpus(), chunk_size=20), tmp_path / "data")
    files = sorted(p.name for p in (result.path / "encoded" / "train").glob("*.arrow"))
    assert len(files) > 2 and files[0] == f"data-00000-of-{len(files):05d}.arrow"
    train = check_consistent(result.path).split("train")
    assert sorted(Path(f["filename"]).name for f in train.cache_files) == files  # read from the files, mapped
    assert len(train) == result.manifest["counts"]["train"]["kept"]


def test_statistics_from_histograms_equal_those_of_the_lengths():
    rng = np.random.default_rng(1)
    for lengths in ([], [7], rng.integers(0, 90, size=1001).tolist()):
        histogram = shards.LengthHistogram()
        for part in np.array_split(np.asarray(lengths, dtype=np.int64), 4):
            histogram.add(part)
        ordered, n = sorted(lengths), len(lengths)
        if n:
            p50, p90, p99 = (ordered[max(0, -(-p * n // 100) - 1)] for p in (50, 90, 99))
            assert histogram.stats() == shards.LengthStats(
                round(sum(ordered) / n, 2), p50, p90, p99, ordered[-1]
            )
        else:
            assert histogram.stats() == shards.LengthStats(0.0, 0, 0, 0, 0)


def test_a_failure_half_way_leaves_nothing_and_keeps_the_old_directory(tmp_path, monkeypatch):
    settings = config(tmp_path, planted_corpus(), chunk_size=30)
    out = tmp_path / "data"
    preparation.prepare_data(settings, out)
    before = snapshot(out)
    calls = []
    real = preparation.encode_chunk

    def failing(source, target):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("the machine fell over")
        return real(source, target)

    monkeypatch.setattr(preparation, "encode_chunk", failing)
    with pytest.raises(RuntimeError, match="fell over"):
        preparation.prepare_data(settings, out, force=True)
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "raw"]  # no .data.partial-* left


def test_line_counts_and_bad_bytes_are_found_past_the_first_chunk(tmp_path):
    pairs = toy_pairs(40, seed=5)
    uneven = write_pairs(tmp_path / "uneven", pairs)
    Path(f"{uneven}.en").write_text("".join(t + "\n" for _, t in pairs[:-1]), encoding="utf-8")
    settings = config(tmp_path, pairs, chunk_size=7)
    with pytest.raises(UserError, match=r"uneven.de has 40 lines but .*uneven.en has 39"):
        preparation.prepare_data(replace(settings, train_prefix=uneven), tmp_path / "o")
    bad = write_pairs(tmp_path / "bad", pairs)
    Path(f"{bad}.de").write_bytes(b"".join((s + "\n").encode() for s, _ in pairs[:19]) + b"caf\xe9\n" * 21)
    with pytest.raises(UserError, match=r"bad.de line 20 is not valid UTF-8"):
        preparation.prepare_data(replace(settings, train_prefix=bad), tmp_path / "o")
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".o.*"))


def test_a_chunk_size_below_one_is_refused(tmp_path):
    with pytest.raises(UserError, match="--chunk-size"):
        preparation.prepare_data(config(tmp_path, toy_pairs(50, seed=5), chunk_size=0), tmp_path / "o")


def test_the_sentencepiece_sample_is_cut_only_when_it_would_not_fit():
    from nmt.data.tokenizer import sample_within

    # 100 characters a sentence: a million sentences need about 2 GB to train on, 10,000 about 20 MB.
    assert sample_within(1800, 1_000_000, 10_000, 1_000_000) == 1_000_000  # all 10,000 fit: as asked
    assert sample_within(1800, 0, 10_000, 1_000_000) == 0  # "every sentence", and they fit
    cut = sample_within(1800, 1_000_000, 5_000_000, 500_000_000)
    assert 0 < cut < 1_000_000 and sample_within(3600, 1_000_000, 5_000_000, 500_000_000) > cut
    assert sample_within(1800, 0, 5_000_000, 500_000_000) == cut


def test_a_cut_sample_is_recorded_in_the_manifest(tmp_path, monkeypatch):
    from nmt.data import tokenizer

    monkeypatch.setattr(tokenizer, "TRAINING_BYTES_PER_CHARACTER", 10**6)  # as if each character took 1 MB
    monkeypatch.setattr(tokenizer, "MIN_SAMPLE", 200)  # of the ~540 sentences
    result = preparation.prepare_data(config(tmp_path, planted_corpus()), tmp_path / "data")
    assert result.manifest["vocabulary"]["sampled"] == [200]
    check_consistent(result.path)
