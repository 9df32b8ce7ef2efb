"""Writing an encoded split as it is produced: Arrow shards that `datasets.load_from_disk` memory-maps, and
the length statistics of what was written.

`nmt prepare` hands `SplitWriter` one `EncodedBatch` per chunk of pairs; the writer appends it as an Arrow
record batch to the current shard file and starts a new shard past `SHARD_BYTES`, so memory holds one batch,
never the split. On `close` the shards take the names `datasets` gives them (data-00000-of-00003.arrow, ...)
and the directory gets the state.json and dataset_info.json of a `datasets.Dataset` saved with
`save_to_disk`: the prepared directory reads as it always has (nmt/data/prepared.py), memory-mapped.

The statistics are exact without keeping the lengths: `LengthHistogram` counts how many sentences have each
length, and nearest-rank percentiles are read off the cumulative counts.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from nmt.data.corpus import one_line
from nmt.data.prepared import ALIGNMENT_SUFFIX, encoded_features
from nmt.data.streaming import RawChunk

SHARD_BYTES = 256 << 20  # Arrow bytes per shard file (datasets' own default is 500 MB)
PERCENTILES = (50, 90, 99)
IDS_TYPE = pa.list_(pa.int32())


@dataclass
class EncodedBatch:
    """Encoded pairs: subword ids (Arrow list<int32>, without BOS/EOS) and word counts of the cleaned text."""

    src_ids: Any  # pyarrow.ListArray
    tgt_ids: Any
    src_words: np.ndarray  # (N,) int32
    tgt_words: np.ndarray

    def __len__(self) -> int:
        return len(self.src_words)

    @property
    def src_lens(self) -> np.ndarray:
        """(N,) subword tokens per source sentence."""
        return _lengths(self.src_ids)

    @property
    def tgt_lens(self) -> np.ndarray:
        return _lengths(self.tgt_ids)

    def take(self, indices: np.ndarray) -> EncodedBatch:
        rows = pa.array(np.asarray(indices, dtype=np.int64))
        return EncodedBatch(
            self.src_ids.take(rows), self.tgt_ids.take(rows), self.src_words[indices], self.tgt_words[indices]
        )

    def record_batch(self, schema: pa.Schema) -> pa.RecordBatch:
        columns = [self.src_ids, self.tgt_ids, pa.array(self.src_words), pa.array(self.tgt_words)]
        return pa.RecordBatch.from_arrays(columns, schema=schema)


def _lengths(ids) -> np.ndarray:
    return np.diff(ids.offsets.to_numpy()).astype(np.int64)


# ------------------------------------------------------------------------------------------------------------
# Statistics


@dataclass
class LengthStats:
    mean: float
    p50: int
    p90: int
    p99: int
    max: int


def length_stats(lengths: Sequence[int]) -> LengthStats:
    """Mean, nearest-rank percentiles 50/90/99 and maximum of `lengths` (all zero when empty)."""
    histogram = LengthHistogram()
    histogram.add(np.asarray(lengths, dtype=np.int64))
    return histogram.stats()


class LengthHistogram:
    """How many sentences have each length: exact statistics of any number of lengths in O(max length)."""

    def __init__(self):
        self.counts = np.zeros(0, dtype=np.int64)

    def add(self, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        counts = np.bincount(lengths)
        if len(counts) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(counts) - len(self.counts)))
        self.counts[: len(counts)] += counts

    def stats(self) -> LengthStats:
        n = int(self.counts.sum())
        if n == 0:
            return LengthStats(0.0, 0, 0, 0, 0)
        cumulative = np.cumsum(self.counts)

        def nearest_rank(p: int) -> int:  # the value at 1-based rank ceil(p/100 * n) of the sorted lengths
            rank = max(1, math.ceil(p / 100 * n))
            return int(np.searchsorted(cumulative, rank))

        total = int((self.counts * np.arange(len(self.counts))).sum())
        p50, p90, p99 = (nearest_rank(p) for p in PERCENTILES)
        return LengthStats(round(total / n, 2), p50, p90, p99, int(np.flatnonzero(self.counts)[-1]))


@dataclass
class SplitStatistics:
    """Length histograms of one split's encoded pairs, in subword tokens and in words."""

    source_tokens: LengthHistogram
    target_tokens: LengthHistogram
    source_words: LengthHistogram
    target_words: LengthHistogram

    @classmethod
    def empty(cls) -> SplitStatistics:
        return cls(LengthHistogram(), LengthHistogram(), LengthHistogram(), LengthHistogram())

    def add(self, batch: EncodedBatch) -> None:
        self.source_tokens.add(batch.src_lens)
        self.target_tokens.add(batch.tgt_lens)
        self.source_words.add(batch.src_words.astype(np.int64))
        self.target_words.add(batch.tgt_words.astype(np.int64))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: vars(getattr(self, name).stats()) for name in vars(self)}


# ------------------------------------------------------------------------------------------------------------
# Shards


class SplitWriter:
    """Write one split's `EncodedBatch`es into `directory` as the Arrow shards of a `datasets.Dataset`."""

    def __init__(self, directory: Path, shard_bytes: int | None = None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True)
        self.shard_bytes = shard_bytes or SHARD_BYTES
        self.features = encoded_features()
        self.schema = self.features.arrow_schema  # carries the features, as datasets' own writer stores them
        self.statistics = SplitStatistics.empty()
        self.rows = 0
        self._shards: list[Path] = []
        self._file = None
        self._stream = None

    def write(self, batch: EncodedBatch) -> None:
        if len(batch) == 0:
            return
        if self._stream is None or self._file.tell() >= self.shard_bytes:
            self._close_shard()
            self._open_shard()
        # Through a Python file, so that a full disk or a file-size limit raises the OSError it raised.
        self._stream.write_batch(batch.record_batch(self.schema))
        self.statistics.add(batch)
        self.rows += len(batch)

    def close(self) -> int:
        """Finish the last shard and describe the split for `datasets.load_from_disk`; the rows written."""
        if not self._shards:
            self._open_shard()  # an empty split is one shard with the schema and no rows
        self._close_shard()
        count = len(self._shards)
        names = [f"data-{i:05d}-of-{count:05d}.arrow" for i in range(count)]
        for shard, name in zip(self._shards, names, strict=True):
            shard.rename(self.directory / name)
        state = {
            "_data_files": [{"filename": name} for name in names],
            "_fingerprint": secrets.token_hex(8),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": None,
        }
        _write_json(self.directory / "state.json", state, sort_keys=True)
        _write_json(self.directory / "dataset_info.json", _dataset_info(self.features))
        return self.rows

    def abort(self) -> None:
        """Close the open shard file (the caller removes the directory)."""
        if self._file is not None:
            self._file.close()
            self._file = self._stream = None

    def _open_shard(self) -> None:
        path = self.directory / f".shard-{len(self._shards):05d}.arrow"
        self._file = open(path, "wb")  # noqa: SIM115 (closed in _close_shard or abort)
        self._stream = pa.ipc.new_stream(self._file, self.schema)
        self._shards.append(path)

    def _close_shard(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._file.close()
            self._file = self._stream = None


def _dataset_info(features) -> dict[str, Any]:
    """What `Dataset.save_to_disk` writes as dataset_info.json for a dataset of `features` (first-level keys
    sorted, as it sorts them)."""
    from datasets import DatasetInfo  # deferred: seconds to import

    info = asdict(DatasetInfo(features=features))
    return {key: info[key] for key in sorted(info)}


def write_dataset_dict(directory: Path, splits: Sequence[str]) -> None:
    """The dataset_dict.json that makes `directory` (one folder per split) a `datasets.DatasetDict`."""
    _write_json(Path(directory) / "dataset_dict.json", {"splits": list(splits)})


def _write_json(path: Path, value: Any, sort_keys: bool = False) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=sort_keys), encoding="utf-8")


class SplitOutput:
    """Everything written for one split: its Arrow shards; for dev and test, the text exactly as read (one
    line per pair, in `texts`: the source and target file names); the gold word alignments, if it has them."""

    def __init__(self, encoded: Path, text: Path, name: str, texts: tuple[str, str] | None, alignments: bool):
        self.writer = SplitWriter(encoded)
        paths = {}
        if texts is not None:
            paths["source"], paths["target"] = (text / name_ for name_ in texts)
        if alignments:
            paths["alignments"] = text / f"{name}.{ALIGNMENT_SUFFIX}"
        text.mkdir(exist_ok=True)
        self.files = {key: open(path, "wb") for key, path in paths.items()}  # noqa: SIM115 (closed below)

    def write(self, batch: EncodedBatch, chunk: RawChunk, rows: np.ndarray) -> None:
        """Write `batch`, the encoded pairs at positions `rows` of `chunk` (their text comes from there)."""
        self.writer.write(batch)
        for key, file in self.files.items():
            lines = getattr(chunk, key)
            file.write("".join(one_line(lines[i]) + "\n" for i in rows).encode())

    def close(self) -> None:
        self.writer.close()
        for file in self.files.values():
            file.close()

    def abort(self) -> None:
        self.writer.abort()
        for file in self.files.values():
            file.close()
