"""Reading parallel corpora, cleaning them, and carving dev/test splits.

Two kinds of input give the same thing, a `ParallelText` per split:

- line-aligned files `<prefix>.<lang>` or `<prefix>.<lang>.gz` (fairseq's convention);
- a `datasets` dataset: a Hugging Face hub id, a directory written by `save_to_disk`, or a local
  JSON/JSONL/CSV/Parquet file, with either a `translation: {lang: text}` column or one column per language.

(The embedded synthetic pair is generated with its word alignments by `nmt.data.streaming.SyntheticPairs`.)

`nmt prepare` reads through `open_dataset` and `nmt.data.streaming`, a chunk at a time; `read_parallel_files`
and `read_dataset` read a corpus whole, for small inputs and tests.

Every split remembers where it came from (`origin`, a JSON-friendly dict for the manifest). The text is kept
exactly as read; `normalize` gives the cleaned form that is encoded.
"""

from __future__ import annotations

import logging
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.errors import UserError
from nmt.files import read_lines

logger = logging.getLogger(__name__)

DEV_SPLIT_NAMES = (
    "validation",
    "dev",
    "valid",
    "val",
)  # what datasets call the dev split, in order of preference
TRANSLATION_COLUMN = "translation"
DATA_FILE_BUILDERS = {  # local data file suffix -> the `datasets` packaged builder that reads it
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
}


@dataclass
class ParallelText:
    """One split: line-aligned source and target sentences, exactly as read."""

    source: list[str]
    target: list[str]
    origin: dict[str, Any] = field(default_factory=dict)  # where the lines came from, for the manifest

    def __post_init__(self):
        if len(self.source) != len(self.target):  # readers check this with a better message first
            raise ValueError(f"{len(self.source)} source lines but {len(self.target)} target lines")

    def __len__(self) -> int:
        return len(self.source)

    def select(self, indices: Sequence[int], origin: dict[str, Any] | None = None) -> ParallelText:
        return ParallelText(
            [self.source[i] for i in indices], [self.target[i] for i in indices], origin or self.origin
        )


@dataclass
class FilterStep:
    """One cleaning step applied to a split: how many pairs went in and how many came out."""

    name: str
    before: int
    after: int

    @property
    def removed(self) -> int:
        return self.before - self.after


# ------------------------------------------------------------------------------------------------------------
# Line-aligned files


def find_file(prefix: Path, lang: str) -> Path:
    """`<prefix>.<lang>`, or `<prefix>.<lang>.gz` when only that exists."""
    plain = Path(f"{prefix}.{lang}")
    gzipped = Path(f"{prefix}.{lang}.gz")
    if plain.is_file():
        if gzipped.is_file():
            logger.warning("both %s and %s exist; reading %s", plain, gzipped, plain)
        return plain
    if gzipped.is_file():
        return gzipped
    if plain.exists() or gzipped.exists():
        raise UserError(f"{plain if plain.exists() else gzipped} is not a readable text file (a directory?)")
    raise UserError(f"file not found: {plain} (nor {gzipped.name}); check the prefix and the language code")


def read_parallel_files(prefix: Path, source_lang: str, target_lang: str) -> ParallelText:
    """Read `<prefix>.<source_lang>[.gz]` and `<prefix>.<target_lang>[.gz]`, which must have as many lines.

    Lines are read by `nmt.files.read_lines`: only "\\n" ends a line, so that Unicode line separators inside
    a sentence do not break the alignment.
    """
    source_path, target_path = find_file(prefix, source_lang), find_file(prefix, target_lang)
    source, target = read_lines(source_path), read_lines(target_path)
    if len(source) != len(target):
        raise UserError(
            f"line counts differ: {source_path} has {len(source)} lines but {target_path} has {len(target)}; "
            "the files of a parallel corpus must be line-aligned"
        )
    logger.info("read %d lines from %s and %s", len(source), source_path, target_path)
    origin = {"kind": "files", "source": str(source_path.resolve()), "target": str(target_path.resolve())}
    return ParallelText(source, target, origin)


# ------------------------------------------------------------------------------------------------------------
# `datasets` datasets


@dataclass
class DatasetSplit:
    """One split of a `datasets` dataset (memory-mapped Arrow), where it came from, and its text layout."""

    dataset: Any  # datasets.Dataset
    origin: dict[str, Any]
    layout: str | None  # TRANSLATION_COLUMN, or None for one column per language
    source_lang: str
    target_lang: str

    def __len__(self) -> int:
        return len(self.dataset)

    def text(self, table) -> tuple[list[str], list[str]]:
        """The source and target text of `table` (rows of this split, a pyarrow.Table), as Python strings
        (None becomes the empty string)."""
        import pyarrow.compute as pc  # deferred with `datasets`, whose columns it reads

        out = []
        for lang in (self.source_lang, self.target_lang):
            column = pc.struct_field(table.column(self.layout), lang) if self.layout else table.column(lang)
            out.append(["" if value is None else str(value) for value in column.to_pylist()])
        return out[0], out[1]

    def tables(self, rows: int):
        """The text columns of the split, `rows` rows at a time (pyarrow.Tables read from the mapped file)."""
        columns = [self.layout] if self.layout else [self.source_lang, self.target_lang]
        yield from self.dataset.select_columns(columns).with_format("arrow").iter(batch_size=rows)


def open_dataset(
    name: str, config: str | None, revision: str | None, source_lang: str, target_lang: str
) -> dict[str, DatasetSplit]:
    """The splits of a hub id, dataset directory or data file, train and dev/test if it has them, unread:
    `datasets` keeps them as memory-mapped Arrow files, read a batch at a time."""
    path = Path(name)
    if path.is_dir():
        splits, origin = _load_directory(path)
    elif path.is_file():
        splits, origin = _load_data_file(path)
    elif path.suffix.lower() in DATA_FILE_BUILDERS or name.startswith((".", "/", "~")):
        raise UserError(f"dataset file not found: {name}")
    else:
        splits, origin = _load_hub(name, config, revision)
    if "train" not in splits:
        raise UserError(f"dataset {name} has no 'train' split (it has: {', '.join(splits)})")
    wanted = {"train": "train", "dev": next((s for s in DEV_SPLIT_NAMES if s in splits), None)}
    wanted["test"] = "test" if "test" in splits else None
    out = {}
    for split, dataset_split in wanted.items():
        if dataset_split is None:
            continue
        dataset = splits[dataset_split]
        _check_languages(dataset, name, source_lang, target_lang)
        info = dataset.info
        layout = TRANSLATION_COLUMN if TRANSLATION_COLUMN in dataset.features else None
        split_origin = {
            **origin,
            "split": dataset_split,
            "fingerprint": getattr(dataset, "_fingerprint", None),
            "version": str(info.version) if info.version is not None else None,
        }
        out[split] = DatasetSplit(dataset, split_origin, layout, source_lang, target_lang)
    return out


def read_dataset(
    name: str, config: str | None, revision: str | None, source_lang: str, target_lang: str
) -> dict[str, ParallelText]:
    """The splits of a hub id, dataset directory or data file, read whole: train, and dev/test if it has
    them."""
    out = {}
    for split, found in open_dataset(name, config, revision, source_lang, target_lang).items():
        columns = [found.layout] if found.layout else [source_lang, target_lang]
        source, target = found.text(found.dataset.select_columns(columns).with_format("arrow")[:])
        out[split] = ParallelText(source, target, found.origin)
        logger.info("read %d pairs from %s (split %s)", len(source), name, found.origin["split"])
    return out


def _as_splits(loaded) -> dict:
    """A DatasetDict, or a single Dataset taken as the training split, as a plain dict of splits."""
    import datasets  # deferred: takes seconds to import, and translating (normalize) never needs it

    return {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)


def _load_directory(path: Path) -> tuple[dict, dict[str, Any]]:
    """A directory written by `save_to_disk`, or a folder of data files that `load_dataset` understands."""
    import datasets  # deferred: takes seconds to import, and translating (normalize) never needs it

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        try:
            loaded = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as error:
            raise UserError(f"cannot load the dataset directory {path}: {error}") from None
        return _as_splits(loaded), {"kind": "dataset_directory", "path": str(path.resolve())}
    try:
        loaded = datasets.load_dataset(str(path))
    except (datasets.exceptions.DatasetsError, FileNotFoundError, ValueError, OSError) as error:
        raise UserError(f"cannot load a dataset from the directory {path}: {_first_line(error)}") from None
    return _as_splits(loaded), {"kind": "dataset_directory", "path": str(path.resolve())}


def _load_data_file(path: Path) -> tuple[dict, dict[str, Any]]:
    """A local JSON/JSONL/CSV/Parquet file (optionally .gz): one training split."""
    import datasets  # deferred: takes seconds to import, and translating (normalize) never needs it

    suffixes = [s.lower() for s in path.suffixes]
    suffix = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else path.suffix.lower()
    if suffix not in DATA_FILE_BUILDERS:
        raise UserError(
            f"cannot tell the format of {path}: use a .json, .jsonl, .csv or .parquet file, a dataset "
            "directory, or --train-prefix for line-aligned text files"
        )
    builder = DATA_FILE_BUILDERS[suffix]
    try:
        loaded = datasets.load_dataset(builder, data_files={"train": str(path)})
    except (datasets.exceptions.DatasetsError, FileNotFoundError, ValueError, OSError) as error:
        cause = error.__cause__ or error
        raise UserError(f"cannot read {path} as {builder}: {_first_line(cause)}") from None
    return _as_splits(loaded), {"kind": "data_file", "path": str(path.resolve()), "format": builder}


def _load_hub(name: str, config: str | None, revision: str | None) -> tuple[dict, dict[str, Any]]:
    """A dataset from the Hugging Face hub (or its local cache when offline)."""
    import datasets  # deferred: takes seconds to import, and translating (normalize) never needs it

    try:
        loaded = datasets.load_dataset(name, config, revision=revision)
    except datasets.exceptions.DatasetNotFoundError:
        raise UserError(
            f"dataset '{name}' is neither a local file or directory nor a dataset on the Hugging Face hub"
        ) from None
    except ConnectionError as error:  # also HF_HUB_OFFLINE=1 with a dataset that is not in the local cache
        raise UserError(
            f"cannot reach the Hugging Face hub for dataset '{name}' and it is not in the local cache "
            f"({_first_line(error)})"
        ) from None
    except ValueError as error:  # typically an unknown config name; the message lists the available ones
        raise UserError(
            f"cannot load dataset '{name}' with config '{config}': {_first_line(error)}"
        ) from None
    except (datasets.exceptions.DatasetsError, FileNotFoundError, OSError) as error:
        raise UserError(f"cannot load dataset '{name}': {_first_line(error)}") from None
    splits = _as_splits(loaded)
    commit = next((c for c in map(_hub_commit, splits.values()) if c), None)
    origin = {"kind": "hub", "id": name, "config": config, "revision": revision, "commit": commit}
    return splits, origin


_COMMIT = re.compile(r"(?<![0-9a-f])[0-9a-f]{40}(?![0-9a-f])")


def _hub_commit(dataset) -> str | None:
    """The hub commit a dataset was built from, where its cache paths or download records name one."""
    texts = [f.get("filename", "") for f in dataset.cache_files]
    texts += list((dataset.info.download_checksums or {}).keys())
    return next((m.group(0) for m in map(_COMMIT.search, texts) if m), None)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def dataset_languages(dataset) -> list[str]:
    """The language codes a dataset offers: keys of its `translation` column, or else its text columns."""
    features = dataset.features
    if TRANSLATION_COLUMN in features:
        column = features[TRANSLATION_COLUMN]
        languages = getattr(column, "languages", None)  # datasets.Translation
        return list(languages) if languages is not None else list(column)
    return [
        name
        for name, feature in features.items()
        if getattr(feature, "dtype", None) in ("string", "large_string")
    ]


def _check_languages(dataset, name: str, source_lang: str, target_lang: str) -> None:
    languages = dataset_languages(dataset)
    for lang in (source_lang, target_lang):
        if lang not in languages:
            raise UserError(
                f"dataset {name} has no language '{lang}' "
                f"(it has: {', '.join(languages) or 'no text columns'}); check --source-lang/--target-lang"
            )


# ------------------------------------------------------------------------------------------------------------
# Cleaning


def normalize(text: str) -> str:
    """Unicode NFC; every run of whitespace (tabs, no-break spaces, ...) made one space, none at the ends."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def one_line(text: str) -> str:
    """`text` with the line breaks it may contain made spaces, so that a text file stays line-aligned."""
    return (
        text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
        if "\n" in text or "\r" in text
        else text
    )


def drop_empty(text: ParallelText) -> tuple[list[int], FilterStep]:
    """Indices of the pairs whose sides are both non-empty."""
    keep = [i for i, (s, t) in enumerate(zip(text.source, text.target, strict=True)) if s and t]
    return keep, FilterStep("empty", len(text), len(keep))


def drop_duplicates(text: ParallelText) -> tuple[list[int], FilterStep]:
    """Indices of the first occurrence of each exact (source, target) pair."""
    seen: set[tuple[str, str]] = set()
    keep = []
    for i, pair in enumerate(zip(text.source, text.target, strict=True)):
        if pair not in seen:
            seen.add(pair)
            keep.append(i)
    return keep, FilterStep("duplicate", len(text), len(keep))


def length_ratio(source_len: int, target_len: int) -> float:
    """The longer side's length over the shorter side's (at least 1, for an empty side)."""
    return max(source_len, target_len) / max(1, min(source_len, target_len))


def drop_too_long(source_lens: Sequence[int], target_lens: Sequence[int], max_tokens: int) -> list[int]:
    """Indices of the pairs whose sides both have at most `max_tokens` tokens."""
    return [
        i
        for i, (s, t) in enumerate(zip(source_lens, target_lens, strict=True))
        if s <= max_tokens and t <= max_tokens
    ]


def drop_length_ratio(source_lens: Sequence[int], target_lens: Sequence[int], max_ratio: float) -> list[int]:
    """Indices of the pairs whose length ratio is at most `max_ratio` (misaligned pairs often exceed it)."""
    return [
        i
        for i, (s, t) in enumerate(zip(source_lens, target_lens, strict=True))
        if length_ratio(s, t) <= max_ratio
    ]


# ------------------------------------------------------------------------------------------------------------
# Carving dev/test from train


@dataclass
class Carved:
    train: list[int]
    dev: list[int]
    test: list[int]


def carve_held_out(n: int, dev_size: int, test_size: int, seed: int) -> tuple[list[int], list[int]]:
    """The dev and test indices carved from 0..n-1 at random (reproducibly for `seed`), each in order.

    Only the held-out indices are drawn, so that carving from millions of pairs takes memory for the few
    thousand held out, not for the corpus: `random.sample` over a range draws without listing it.
    """
    if dev_size < 0 or test_size < 0:
        raise UserError("--dev-size and --test-size cannot be negative")
    if dev_size + test_size >= n:
        raise UserError(
            f"the training data has {n} usable pairs, too few to carve {dev_size} dev and {test_size} test "
            "pairs from it; pass smaller --dev-size/--test-size, or give dev/test data"
        )
    chosen = random.Random(seed).sample(range(n), dev_size + test_size)
    return sorted(chosen[:dev_size]), sorted(chosen[dev_size:])


def carve(n: int, dev_size: int, test_size: int, seed: int) -> Carved:
    """Split 0..n-1 at random (reproducibly for `seed`) into train, dev and test indices, each in order."""
    dev, test = carve_held_out(n, dev_size, test_size, seed)
    held_out = set(dev) | set(test)
    return Carved([i for i in range(n) if i not in held_out], dev, test)
