"""The work `nmt prepare` does on each chunk of pairs, and the worker processes that do it in parallel.

Two jobs, each a pure function of one chunk, so that chunks can go to any process and come back in order:

- `scan_chunk`: clean both sides and hash each non-empty pair (nmt/data/dedup.py), for counting and finding
  duplicates without keeping the text;
- `encode_chunk`: clean and encode both sides with SentencePiece, into Arrow arrays (nmt/data/shards.py).

`Workers.map` runs one of them over a stream of chunks in worker processes and yields the results in the order
of the chunks, with at most two chunks per worker in flight: memory stays bounded however long the stream is.
With one worker it runs in this process (no start-up cost, as the tests want).
"""

from __future__ import annotations

import collections
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import sentencepiece as spm

from nmt.data.corpus import normalize
from nmt.data.dedup import pair_hashes
from nmt.data.shards import IDS_TYPE, EncodedBatch

IN_FLIGHT_PER_WORKER = 2  # chunks queued per worker: one being worked on, one waiting


def scan_chunk(source: list[str], target: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) uint64: each cleaned pair's hash (`dedup.pair_hashes`), 0 where a side is empty once cleaned;
    and (N,) int64 each: the characters of the cleaned source and target sentences."""
    clean_source, clean_target = [normalize(s) for s in source], [normalize(t) for t in target]
    full = [i for i, (s, t) in enumerate(zip(clean_source, clean_target, strict=True)) if s and t]
    hashes = np.zeros(len(source), dtype=np.uint64)
    hashes[full] = pair_hashes([clean_source[i] for i in full], [clean_target[i] for i in full])
    characters = [np.fromiter(map(len, side), np.int64, len(side)) for side in (clean_source, clean_target)]
    return hashes, characters[0], characters[1]


_processors: tuple[Any, Any] | None = None  # this process's SentencePiece models, set by `start_encoder`


def start_encoder(source_model: bytes, target_model: bytes) -> None:
    """Load the SentencePiece models (serialized) that `encode_chunk` uses in this process."""
    global _processors
    _processors = tuple(spm.SentencePieceProcessor(model_proto=m) for m in (source_model, target_model))


def encode_chunk(source: list[str], target: list[str]) -> EncodedBatch:
    """Clean and encode pairs (subword ids without BOS/EOS), with the word counts of the cleaned text."""
    if _processors is None:
        raise RuntimeError("start_encoder must run in this process before encode_chunk")
    sides = []
    for processor, lines in zip(_processors, (source, target), strict=True):
        clean = [normalize(line) for line in lines]
        ids = pa.array(processor.encode(clean, out_type=int), type=IDS_TYPE)
        # The cleaned text has single spaces between words.
        words = np.fromiter((line.count(" ") + 1 if line else 0 for line in clean), np.int32, len(clean))
        sides.append((ids, words))
    (src_ids, src_words), (tgt_ids, tgt_words) = sides
    return EncodedBatch(src_ids, tgt_ids, src_words, tgt_words)


class Workers:
    """`workers` processes (spawned: they start clean, without a copy of this process's memory) that map a
    function over a stream of argument tuples in order; with one worker, this process does the work.

    A worker that dies (killed, out of memory) fails the run with `BrokenProcessPool` instead of leaving it
    waiting for a result that will never come.
    """

    def __init__(self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple = ()):
        self.workers = workers
        self._pool = None
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, context, initializer, initargs)
        elif initializer is not None:
            initializer(*initargs)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *error) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)  # after an error: drop the queued chunks

    def map(self, function: Callable[..., Any], arguments: Iterable[tuple]) -> Iterator[Any]:
        """`function(*args)` for each tuple of `arguments`, in order, with a bounded number in flight."""
        if self._pool is None:
            for args in arguments:
                yield function(*args)
            return
        pending: collections.deque = collections.deque()
        for args in arguments:
            pending.append(self._pool.submit(function, *args))
            if len(pending) >= IN_FLIGHT_PER_WORKER * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
