"""`nmt prepare` end to end: each input kind, each filter, dev/test kept whole, safe output, clear errors."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from conftest import corpus_path, run_nmt, toy_pairs

from nmt.data.prepared import PreparedData
from nmt.errors import UserError

TINY = ("--vocab-size", "48")  # the reversal task's words fit in a few dozen pieces


def write_side(path: Path, lines: list[str], gz: bool = False) -> None:
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def write_pairs(prefix: Path, pairs, src: str = "de", tgt: str = "en", gz: bool = False) -> Path:
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_side(Path(f"{prefix}.{src}"), [s for s, _ in pairs], gz)
    write_side(Path(f"{prefix}.{tgt}"), [t for _, t in pairs], gz)
    return prefix


def prepare(*args) -> tuple[int, str]:
    result = run_nmt("prepare", *TINY, *args)
    return result.exit_code, result.stdout + result.stderr


def check_consistent(path: Path) -> PreparedData:
    """What every prepared directory satisfies: counts add up, splits and text agree with the manifest."""
    data = PreparedData.open(path)
    manifest = data.manifest
    for name in ("train", "dev", "test"):
        counts = manifest["counts"][name]
        assert counts["read"] == counts["kept"] + sum(step["removed"] for step in counts["steps"])
        previous = counts["read"]
        for step in counts["steps"]:  # each step starts where the previous one ended
            assert step["before"] == previous and step["after"] == step["before"] - step["removed"]
            previous = step["after"]
        split = data.split(name)
        assert len(split) == counts["kept"]
        assert split.features["src_ids"].feature.dtype == "int32"
        lengths = [len(ids) for ids in split["src_ids"]]
        stats = manifest["statistics"][name]["source_tokens"]
        assert stats["max"] == max(lengths) and stats["p50"] <= stats["p90"] <= stats["p99"] <= stats["max"]
        if name != "train":
            assert manifest["counts"][name]["steps"] == []  # dev and test are never filtered
            assert len(data.text(name, "source")) == len(data.text(name, "target")) == len(split)
    vocab = manifest["vocabulary"]
    assert vocab["source_size"] == len(data.tokenizers.source)
    assert vocab["target_size"] == len(data.tokenizers.target)
    assert manifest["nmt_version"] and manifest["created"] and "seed" in manifest
    return data


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not [p for p in out.parent.glob(f".{out.name}*")]  # no temporary directory left behind


@pytest.fixture
def corpus(tmp_path) -> Path:
    """Line-aligned de/en files: train (200 pairs), dev, test."""
    write_pairs(tmp_path / "raw" / "train", toy_pairs(200, seed=1))
    write_pairs(tmp_path / "raw" / "dev", toy_pairs(15, seed=2))
    write_pairs(tmp_path / "raw" / "test", toy_pairs(12, seed=3))
    return tmp_path / "raw"


@pytest.fixture(autouse=True)
def _private_datasets_cache(tmp_path, monkeypatch):
    """Keep the Arrow caches that `datasets.load_dataset` writes for local files inside tmp_path."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


# ------------------------------------------------------------------------------------------------------------
# Input kinds


def test_local_files_with_dev_and_test(corpus, tmp_path):
    out = tmp_path / "data"
    code, output = prepare("-s", "de", "-t", "en", "--train-prefix", corpus / "train", "--dev-prefix",
                           corpus / "dev", "--test-prefix", corpus / "test", "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    assert (data.source_lang, data.target_lang) == ("de", "en")
    assert data.manifest["joint_vocabulary"] and (out / "spm.model").is_file()
    assert data.manifest["sources"]["dev"]["source"] == str((corpus / "dev.de").resolve())
    assert data.text("test", "target") == [t for _, t in toy_pairs(12, seed=3)]
    assert "train" in output and "vocabulary" in output  # the summary


def test_gzip_files_and_carved_dev_test(tmp_path):
    write_pairs(tmp_path / "raw" / "train", toy_pairs(200, seed=1), gz=True)
    out = tmp_path / "data"
    code, output = prepare("-s", "de", "-t", "en", "--train-prefix", tmp_path / "raw" / "train",
                           "--dev-size", "20", "--test-size", "10", "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    assert (len(data.split("dev")), len(data.split("test"))) == (20, 10)
    assert data.manifest["sources"]["train"]["source"].endswith("train.de.gz")
    assert data.manifest["sources"]["dev"]["kind"] == "carved"

    # Deduplication comes before carving, so no dev/test pair is also a training pair.
    def pairs(split) -> set:
        return set(zip(map(tuple, split["src_ids"]), map(tuple, split["tgt_ids"]), strict=True))

    for name in ("dev", "test"):
        assert not pairs(data.split("train")) & pairs(data.split(name))


def test_carving_is_deterministic_for_a_seed(corpus, tmp_path):
    def carved_dev(name: str, seed: int) -> list[str]:
        out = tmp_path / name
        code, output = prepare("-s", "de", "-t", "en", "--train-prefix", corpus / "train", "--dev-size", "10",
                               "--test-size", "10", "--seed", str(seed), "--out", out)  # fmt: skip
        assert code == 0, output
        return PreparedData.open(out).text("dev", "source")

    assert carved_dev("a", seed=1) == carved_dev("b", seed=1)
    assert carved_dev("a2", seed=1) != carved_dev("c", seed=2)


def _dataset_rows(pairs, layout: str) -> dict[str, list]:
    if layout == "translation":
        return {"translation": [{"de": s, "en": t} for s, t in pairs]}
    return {"de": [s for s, _ in pairs], "en": [t for _, t in pairs], "id": list(range(len(pairs)))}


@pytest.mark.parametrize("layout", ["flat", "translation"])
def test_dataset_directory(tmp_path, layout):
    from datasets import Dataset, DatasetDict

    splits = {
        "train": toy_pairs(200, seed=1),
        "validation": toy_pairs(15, seed=2),
        "test": toy_pairs(12, seed=3),
    }
    DatasetDict(
        {name: Dataset.from_dict(_dataset_rows(pairs, layout)) for name, pairs in splits.items()}
    ).save_to_disk(str(tmp_path / "ds"))
    out = tmp_path / "data"
    code, output = prepare("-s", "de", "-t", "en", "--dataset", tmp_path / "ds", "--out", out)
    assert code == 0, output
    data = check_consistent(out)
    assert data.manifest["sources"]["dev"]["kind"] == "dataset_directory"
    assert data.manifest["sources"]["dev"]["split"] == "validation"
    assert data.text("dev", "source") == [s for s, _ in splits["validation"]]


@pytest.mark.parametrize("layout", ["flat", "translation"])
def test_jsonl_file(tmp_path, layout):
    rows = _dataset_rows(toy_pairs(200, seed=1), layout)
    records = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    out = tmp_path / "data"
    code, output = prepare("-s", "en", "-t", "de", "--dataset", path, "--dev-size", "10", "--test-size", "10",
                           "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    assert (data.source_lang, data.target_lang) == ("en", "de")
    assert data.manifest["sources"]["train"]["kind"] == "data_file"
    assert data.manifest["sources"]["train"]["format"] == "json"


def test_synthetic_corpus_in_both_directions(tmp_path):
    from nmt.data import synthetic

    args = ("--dataset", "synthetic", "--synthetic-size", "300", "--dev-size", "20", "--test-size", "20")
    code, output = prepare(*args, "--out", tmp_path / "forward")
    assert code == 0, output
    forward = check_consistent(tmp_path / "forward")
    assert (forward.source_lang, forward.target_lang) == (synthetic.SOURCE_LANG, synthetic.TARGET_LANG)
    assert forward.manifest["sources"]["train"]["kind"] == "synthetic"

    reverse_args = ("-s", synthetic.TARGET_LANG, "-t", synthetic.SOURCE_LANG, "--out", tmp_path / "reverse")
    code, output = prepare(*args, *reverse_args)
    assert code == 0, output
    reverse = check_consistent(tmp_path / "reverse")
    assert reverse.text("dev", "source") == forward.text("dev", "target")


def test_separate_bpe_vocabularies(corpus, tmp_path):
    out = tmp_path / "data"
    code, output = prepare("-s", "de", "-t", "en", "--train-prefix", corpus / "train", "--dev-prefix",
                           corpus / "dev", "--test-prefix", corpus / "test", "--separate-vocabularies",
                           "--model-type", "bpe", "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    assert (out / "spm.src.model").is_file() and (out / "spm.tgt.model").is_file()
    assert not (out / "spm.model").exists() and not data.tokenizers.joint
    assert data.manifest["vocabulary"]["model_type"] == "bpe"


# ------------------------------------------------------------------------------------------------------------
# Cleaning


def test_each_filter_counts_what_it_removed_and_dev_test_stay_whole(tmp_path):
    good = list(dict.fromkeys(toy_pairs(150, seed=1, min_words=4)))  # <= 12 four-letter words: <= 60 pieces
    empty = [("", "ALBA"), ("alba", ""), (" \t ", "BERO")]
    duplicates = [
        good[0],
        good[1],
        ("  " + good[2][0].replace(" ", "\u00a0 "), good[2][1]),
    ]  # equal once cleaned
    too_long = [(" ".join(["alba"] * 400), " ".join(["ALBA"] * 400))]  # >= 400 pieces a side
    bad_ratio = [("cima", " ".join(["CIMA"] * 50))]  # <= 5 pieces against >= 50
    train = good[:60] + empty + good[60:120] + duplicates + too_long + good[120:] + bad_ratio
    write_pairs(tmp_path / "raw" / "train", train)
    dev = toy_pairs(10, seed=2) + empty + too_long + bad_ratio + [toy_pairs(1, seed=2)[0]]  # kept, every line
    write_pairs(tmp_path / "raw" / "dev", dev)
    write_pairs(tmp_path / "raw" / "test", toy_pairs(10, seed=3))
    out = tmp_path / "data"
    raw = tmp_path / "raw"
    code, output = prepare("-s", "de", "-t", "en", "--train-prefix", raw / "train",
                           "--dev-prefix", raw / "dev", "--test-prefix", raw / "test",
                           "--max-tokens", "300", "--max-length-ratio", "5", "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    removed = {step["name"]: step["removed"] for step in data.manifest["counts"]["train"]["steps"]}
    planted = {"empty": 3, "duplicate": 3, "too_long": 1, "length_ratio": 1}
    assert removed == planted
    assert data.manifest["counts"]["train"]["kept"] == len(good)
    assert len(data.split("dev")) == len(dev)
    assert data.text("dev", "source") == [s for s, _ in dev]  # exactly as read, empty and odd lines included
    assert data.split("dev")[len(toy_pairs(10, seed=2))]["src_ids"] == []  # the empty line, encoded empty


# ------------------------------------------------------------------------------------------------------------
# The output directory


def test_existing_output_is_refused_and_replaced_only_with_force(corpus, tmp_path):
    out = tmp_path / "data"
    args = (
        "-s",
        "de",
        "-t",
        "en",
        "--train-prefix",
        corpus / "train",
        "--dev-size",
        "10",
        "--test-size",
        "10",
    )
    assert prepare(*args, "--out", out)[0] == 0
    before = (out / "manifest.json").read_text()

    code, output = prepare(*args, "--seed", "2", "--out", out)
    assert code == 2 and "--force" in output and str(out) in output
    assert (out / "manifest.json").read_text() == before

    code, output = prepare(*args, "--seed", "2", "--out", out, "--force")
    assert code == 0, output
    assert check_consistent(out).manifest["seed"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_force_never_replaces_a_directory_that_is_not_prepared_data(corpus, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, output = prepare("-s", "de", "-t", "en", "--train-prefix", corpus / "train", "--dev-size", "10",
                           "--test-size", "10", "--out", precious, "--force")  # fmt: skip
    assert code == 2 and "not a prepared data directory" in output
    assert (precious / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------------------------------
# Bad input: one clear line, exit code 2, nothing written


def _fails(tmp_path, *args) -> str:
    out = tmp_path / "out"
    code, output = prepare(*args, "--dev-size", "5", "--test-size", "5", "--out", out)
    assert code == 2, output
    assert "Traceback" not in output
    assert_nothing_written(out)
    return output


def test_missing_file(tmp_path):
    output = _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "nope")
    assert "not found" in output and "nope.de" in output


def test_line_count_mismatch_names_both_files_and_counts(tmp_path):
    write_side(tmp_path / "train.de", ["a"] * 30)
    write_side(tmp_path / "train.en", ["A"] * 29)
    output = _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train")
    assert "train.de" in output and "train.en" in output and "30" in output and "29" in output


def test_invalid_utf8_names_file_and_line(tmp_path):
    write_pairs(tmp_path / "train", toy_pairs(30, seed=1))
    (tmp_path / "train.en").write_bytes(b"ok\n" * 4 + b"caf\xe9\n" + b"ok\n" * 25)
    output = _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train")
    assert "train.en" in output and "UTF-8" in output and "line 5" in output


def test_corpus_empty_after_filtering(tmp_path):
    write_pairs(tmp_path / "train", toy_pairs(30, seed=1))
    output = _fails(
        tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train", "--max-tokens", "1"
    )
    assert "no training pairs left" in output and "--max-tokens" in output


def test_corpus_of_empty_lines(tmp_path):
    write_pairs(tmp_path / "train", [("", "")] * 30)
    assert "empty" in _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train")


def test_empty_dev_file(tmp_path):
    write_pairs(tmp_path / "train", toy_pairs(30, seed=1))
    write_pairs(tmp_path / "dev", [])
    output = _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train", "--dev-prefix",
                    tmp_path / "dev")  # fmt: skip
    assert "dev data has no lines" in output and "dev.de" in output


def test_too_few_pairs_to_carve(tmp_path):
    write_pairs(tmp_path / "train", toy_pairs(8, seed=1))
    assert "too few" in _fails(tmp_path, "-s", "de", "-t", "en", "--train-prefix", tmp_path / "train")


def test_unknown_hub_dataset_offline(tmp_path):
    output = _fails(tmp_path, "-s", "de", "-t", "en", "--dataset", "no-such-user/no-such-dataset")
    assert "no-such-user/no-such-dataset" in output


def test_missing_dataset_file(tmp_path):
    assert "not found" in _fails(tmp_path, "-s", "de", "-t", "en", "--dataset", tmp_path / "nope.jsonl")


def test_language_the_dataset_does_not_have(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"de": s, "en": t}) + "\n" for s, t in toy_pairs(30, seed=1)))
    output = _fails(tmp_path, "-s", "de", "-t", "fr", "--dataset", path)
    assert "'fr'" in output and "de, en" in output


@pytest.mark.parametrize(
    "args, message",
    [
        (("-s", "de", "-t", "de", "--dataset", "synthetic"), "must differ"),
        (("-s", "de", "-t", "en"), "--train-prefix"),
        (("-s", "de", "-t", "en", "--train-prefix", "x", "--dataset", "synthetic"), "not both"),
        (("--train-prefix", "x"), "--source-lang"),
        (("-s", "de", "-t", "en", "--dataset", "synthetic"), "synthetic corpus has languages"),
    ],
)
def test_bad_options(tmp_path, args, message):
    assert message in _fails(tmp_path, *args)


def test_hub_dataset_with_translation_feature(monkeypatch):
    """The hub path, offline: what `load_dataset` would return for a wmt14-style dataset."""
    import datasets

    from nmt.data.corpus import read_dataset

    def split(pairs):
        rows = _dataset_rows(pairs, "translation")
        return datasets.Dataset.from_dict(rows).cast_column("translation", datasets.Translation(["de", "en"]))

    hub = datasets.DatasetDict({"train": split(toy_pairs(30, 1)), "validation": split(toy_pairs(5, 2))})
    calls = []

    def load_dataset(path, name=None, **kwargs):
        calls.append((path, name, kwargs.get("revision")))
        return hub

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    splits = read_dataset("someone/pairs", "de-en", "v1.0", "en", "de")
    assert calls == [("someone/pairs", "de-en", "v1.0")]
    assert set(splits) == {"train", "dev"}  # no test split: it will be carved
    assert splits["dev"].source == [t for _, t in toy_pairs(5, 2)]
    origin = splits["train"].origin
    assert (origin["kind"], origin["id"], origin["config"], origin["revision"]) == (
        "hub",
        "someone/pairs",
        "de-en",
        "v1.0",
    )
    assert origin["fingerprint"] and origin["split"] == "train"


@pytest.mark.parametrize(
    "raised, message",
    [
        ("not_found", "nor a dataset on the Hugging Face hub"),
        (ValueError("BuilderConfig 'xx-yy' not found. Available: ['de-en']"), "xx-yy"),
        (ConnectionError("Couldn't reach 'wmt14' on the Hub (OfflineModeIsEnabled)"), "cannot reach"),
        (FileNotFoundError("no data files"), "cannot load"),
    ],
)
def test_hub_errors_become_user_errors(monkeypatch, raised, message):
    import datasets

    from nmt.data.corpus import read_dataset

    if raised == "not_found":
        raised = datasets.exceptions.DatasetNotFoundError("Dataset 'someone/x' doesn't exist on the Hub")

    def load_dataset(*args, **kwargs):
        raise raised

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    with pytest.raises(UserError, match=message):
        read_dataset("someone/x", "xx-yy", None, "de", "en")


# ------------------------------------------------------------------------------------------------------------
# A real corpus (skipped when ../shared/corpora is absent)


@pytest.mark.corpora
@pytest.mark.slow
def test_multi30k_prepares_and_keeps_dev_test_whole(tmp_path):
    m30k = corpus_path("multi30k")
    out = tmp_path / "m30k"
    code, output = prepare("-s", "en", "-t", "de", "--train-prefix", m30k / "train",
                           "--dev-prefix", m30k / "val", "--test-prefix", m30k / "test2016",
                           "--vocab-size", "1000", "--spm-sample", "20000", "--out", out)  # fmt: skip
    assert code == 0, output
    data = check_consistent(out)
    with gzip.open(corpus_path("multi30k", "test2016.de.gz"), "rb") as file:
        assert data.text("test", "target") == file.read().decode("utf-8").split("\n")[:-1]
