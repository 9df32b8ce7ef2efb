"""Reading a parallel corpus a chunk at a time, as often as the pipeline needs, in bounded memory.

`nmt prepare` reads its training data more than once (nmt/data/preparation.py): to count, clean and find
duplicates, to feed SentencePiece, and to encode. Each input is a `PairReader` whose `chunks(rows)` starts
over from the first pair every time and yields `RawChunk`s of `rows` pairs (the last one shorter), as read:

- `FilePairs`: line-aligned files `<prefix>.<lang>[.gz]`, read line by line on both sides at once; a line
  count mismatch is found where the shorter file ends, and reported with both files' full counts;
- `DatasetPairs`: a split of a `datasets` dataset, read in Arrow batches from its memory-mapped files;
- `SyntheticPairs`: the embedded synthetic pair, generated again from its seed, with each pair's word
  alignment (a Pharaoh line).

`open_inputs` turns a `PrepareConfig` into the reader of each split (None for a split to carve from train).
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from nmt.config import SYNTHETIC_DATASET, PrepareConfig
from nmt.data import synthetic
from nmt.data.corpus import DatasetSplit, find_file, open_dataset
from nmt.data.prepared import SPLITS, alignment_line
from nmt.errors import UserError
from nmt.files import decode_lines, open_binary

logger = logging.getLogger(__name__)


@dataclass
class RawChunk:
    """Consecutive pairs of a split, exactly as read, starting at pair `start` (0-based)."""

    start: int
    source: list[str]
    target: list[str]
    alignments: list[str] | None = None  # each pair's gold word alignment, for a corpus that has them

    def __len__(self) -> int:
        return len(self.source)


class PairReader(Protocol):
    origin: dict[str, Any]  # where the pairs come from, for the manifest
    has_alignments: bool

    def chunks(self, rows: int) -> Iterator[RawChunk]: ...


def _numbered(pieces: Iterator[tuple[list[str], list[str], list[str] | None]]) -> Iterator[RawChunk]:
    start = 0
    for source, target, alignments in pieces:
        yield RawChunk(start, source, target, alignments)
        start += len(source)


# ------------------------------------------------------------------------------------------------------------
# Line-aligned files


class FilePairs:
    """`<prefix>.<source_lang>[.gz]` and `<prefix>.<target_lang>[.gz]`, read together a chunk at a time.

    Lines are decoded by `nmt.files.decode_lines`, as every reader of text does: only "\\n" ends a line, and
    invalid UTF-8 is an error that names the file and the line.
    """

    has_alignments = False

    def __init__(self, prefix: Path, source_lang: str, target_lang: str):
        self.paths = (find_file(prefix, source_lang), find_file(prefix, target_lang))
        for path in self.paths:  # unreadable now, not after minutes of work on the other splits
            open_binary(path).close()
        self.origin = {
            "kind": "files",
            "source": str(self.paths[0].resolve()),
            "target": str(self.paths[1].resolve()),
        }

    def chunks(self, rows: int) -> Iterator[RawChunk]:
        return _numbered(self._pieces(rows))

    def _pieces(self, rows: int):
        source_path, target_path = self.paths
        with open_binary(source_path) as source_file, open_binary(target_path) as target_file:
            read = 0
            while True:
                source = _next_lines(source_file, rows, source_path, read)
                target = _next_lines(target_file, rows, target_path, read)
                if len(source) != len(target):
                    source_count = read + len(source) + _count_lines(source_file)
                    target_count = read + len(target) + _count_lines(target_file)
                    raise UserError(
                        f"line counts differ: {source_path} has {source_count} lines but {target_path} has "
                        f"{target_count}; the files of a parallel corpus must be line-aligned"
                    )
                if not source:
                    return
                read += len(source)
                yield source, target, None


def _next_lines(handle: IO[bytes], rows: int, path: Path, read: int) -> list[str]:
    """The next `rows` lines of `handle` (fewer at the end), `read` lines into the file."""
    try:
        data = b"".join(itertools.islice(handle, rows))
    except (OSError, EOFError, zlib.error) as error:  # e.g. a corrupt or truncated gzip stream
        raise UserError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    return decode_lines(data, str(path), first_line=read + 1)


def _count_lines(handle: IO[bytes]) -> int:
    """The lines left in `handle` (a last line without "\\n" counts)."""
    count, last = 0, b"\n"
    for block in iter(lambda: handle.read(1 << 20), b""):
        count += block.count(b"\n")
        last = block[-1:]
    return count + (last != b"\n")


# ------------------------------------------------------------------------------------------------------------
# `datasets` datasets and the synthetic pair


class DatasetPairs:
    """One split of a `datasets` dataset, read in batches of rows from its memory-mapped Arrow files."""

    has_alignments = False

    def __init__(self, split: DatasetSplit):
        self.split = split
        self.origin = split.origin

    def chunks(self, rows: int) -> Iterator[RawChunk]:
        return _numbered((*self.split.text(table), None) for table in self.split.tables(rows))


class SyntheticPairs:
    """`size` pairs of the synthetic corpus (nmt/data/synthetic.py) with each pair's word alignment as a
    Pharaoh line; `reverse` swaps the sides (Zerak -> Ulami).

    Generating a pair costs far more than reading one, so the first complete reading also writes the pairs to
    an anonymous temporary file (gone when closed, or when the process ends however it ends), and later
    readings read that file. One reading at a time.
    """

    has_alignments = True

    def __init__(self, size: int, seed: int, reverse: bool = False):
        if size < 1:
            raise UserError(f"--synthetic-size must be positive (got {size})")
        self.size, self.seed, self.reverse = size, seed, reverse
        self.origin = {"kind": "synthetic", "size": size, "seed": seed}
        self._spool: IO[bytes] | None = None

    def chunks(self, rows: int) -> Iterator[RawChunk]:
        return _numbered(self._spooled(rows) if self._spool is not None else self._generated(rows))

    def _generated(self, rows: int):
        spool = tempfile.TemporaryFile()  # noqa: SIM115 (kept open for the later readings)
        pairs = synthetic.iter_aligned(self.size, self.seed)
        while batch := list(itertools.islice(pairs, rows)):
            source, target = [p.source for p in batch], [p.target for p in batch]
            alignments = [alignment_line(p.links(), swap=self.reverse) for p in batch]
            if self.reverse:
                source, target = target, source
            # The generated words hold no tab and no line break.
            rows_text = zip(source, target, alignments, strict=True)
            spool.write("".join(f"{s}\t{t}\t{a}\n" for s, t, a in rows_text).encode())
            yield source, target, alignments
        self._spool = spool

    def _spooled(self, rows: int):
        self._spool.seek(0)
        while lines := list(itertools.islice(self._spool, rows)):
            fields = [line.decode().rstrip("\n").split("\t") for line in lines]
            yield [f[0] for f in fields], [f[1] for f in fields], [f[2] for f in fields]


# ------------------------------------------------------------------------------------------------------------
# The inputs of a run


@dataclass
class Inputs:
    """The reader of each split (None: a split to carve from train) and the language pair."""

    splits: dict[str, PairReader | None]
    source_lang: str
    target_lang: str


def open_inputs(config: PrepareConfig) -> Inputs:
    """The readers of the train/dev/test data that `config` names, opened (a missing file, dataset or
    language is an error now) but not read."""
    source_lang, target_lang = config.source_lang, config.target_lang
    splits: dict[str, PairReader | None] = dict.fromkeys(SPLITS)
    if config.train_prefix is not None:
        splits["train"] = FilePairs(config.train_prefix, source_lang, target_lang)
    elif config.dataset == SYNTHETIC_DATASET:
        pair = (synthetic.SOURCE_LANG, synthetic.TARGET_LANG)
        if source_lang is None and target_lang is None:
            source_lang, target_lang = pair
        elif (source_lang, target_lang) not in (pair, pair[::-1]):
            raise UserError(
                f"the synthetic corpus has languages '{pair[0]}' and '{pair[1]}', not "
                f"'{source_lang}' -> '{target_lang}'; leave out --source-lang/--target-lang"
            )
        reverse = (source_lang, target_lang) == pair[::-1]
        splits["train"] = SyntheticPairs(config.synthetic_size, config.seed, reverse)
    else:
        found = open_dataset(
            config.dataset, config.dataset_config, config.dataset_revision, source_lang, target_lang
        )
        splits.update({name: DatasetPairs(split) for name, split in found.items()})
    if config.dev_prefix is not None:
        splits["dev"] = FilePairs(config.dev_prefix, source_lang, target_lang)
    if config.test_prefix is not None:
        splits["test"] = FilePairs(config.test_prefix, source_lang, target_lang)
    return Inputs(splits, source_lang, target_lang)
