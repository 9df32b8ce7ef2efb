"""`nmt prepare`: raw parallel text in, a prepared data directory (nmt/data/prepared.py) out.

    read -> normalise -> drop empty and duplicate training pairs -> carve missing dev/test from train
         -> train SentencePiece -> encode -> drop too long / badly proportioned training pairs -> write

Dev and test are never filtered: the evaluator scores every line of the originals, so they keep every line
(empty ones too) and `text/` stays line-aligned with what was read. The manifest records, per split, how many
pairs were read and how many each step removed, so that `read == kept + sum(removed)`.

The corpus is streamed, never held: memory depends mostly on `chunk_size` (pairs per chunk) and the
SentencePiece sample, and grows only slowly with the corpus (below).
The training data is read three times, a chunk at a time (nmt/data/streaming.py):

1. scan: clean each pair, count the empty ones, and find duplicates by a 64-bit hash of the cleaned pair
   (nmt/data/dedup.py); what stays is one bit per pair. Dev/test pairs to carve are then drawn by their index
   among the pairs that stay (seeded, as `carve` always drew them), without the text;
2. SentencePiece reads the cleaned training sentences as a stream and keeps its own random sample of
   `spm_sample` of them (its reservoir sampler, seeded), so the model is the one it would train on a list;
   its training takes memory by the sample's characters, so the sample is cut to what fits in
   `memory_budget_mb` (`tokenizer.sample_within`; the manifest records a cut sample);
3. encode: chunks go to `num_workers` processes (nmt/data/encoding.py); the length filters apply per chunk,
   and each split is written as it comes, Arrow shards for encoded/ (nmt/data/shards.py) and text files.
   Length statistics are exact, from histograms.

What grows with the corpus is small: the hash table (12 to 23 bytes per distinct pair) and one byte per pair
read. Everything is written into a temporary directory beside `out` (`staging`), renamed into place only when
complete: a failed run leaves nothing behind, and `force` replaces an old directory only at the end.

A corpus that comes with gold word alignments (the synthetic pair, derived with them) carries each pair's
alignment, as a Pharaoh line, through every step with its pair, written beside the text (text/{split}.align).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from nmt.config import SYNTHETIC_DATASET, PrepareConfig, to_dict
from nmt.data.corpus import FilterStep, carve_held_out, normalize
from nmt.data.dedup import SeenHashes
from nmt.data.encoding import Workers, encode_chunk, scan_chunk, start_encoder
from nmt.data.prepared import (
    ENCODED_DIR,
    MANIFEST_FILE,
    SPLITS,
    TEXT_DIR,
    format_summary,
    staging,
    steps_text,
    write_manifest,
)
from nmt.data.shards import EncodedBatch, LengthStats, SplitOutput, length_stats, write_dataset_dict
from nmt.data.streaming import Inputs, PairReader, RawChunk, open_inputs
from nmt.data.tokenizer import (
    JOINT_MODEL_FILE,
    SOURCE_MODEL_FILE,
    TARGET_MODEL_FILE,
    SentencePieceSettings,
    Tokenizer,
    sample_within,
    train_sentencepiece,
)
from nmt.errors import UserError
from nmt.files import check_writable
from nmt.version import __version__

logger = logging.getLogger(__name__)

MIN_MEMORY_MB = 512  # below this, the libraries alone and a chunk in flight would not fit

__all__ = ["LengthStats", "PrepareResult", "format_summary", "length_stats", "prepare_data"]


@dataclass
class PrepareResult:
    path: Path
    manifest: dict[str, Any]


@dataclass
class SplitCounts:
    """How many pairs of a split were read, what each cleaning step removed, and where they came from."""

    read: int
    origin: dict[str, Any]
    steps: list[FilterStep] = field(default_factory=list)
    alignments: bool = False  # whether the split comes with gold word alignments
    characters: list[int] = field(default_factory=lambda: [0, 0])  # of the cleaned (source, target) kept

    def removed(self, step: FilterStep) -> None:
        self.steps.append(step)
        if step.removed and not step.name.startswith("carved"):
            logger.info("train: removed %d %s pairs", step.removed, step.name.replace("_", " "))


# ------------------------------------------------------------------------------------------------------------
# The pipeline


def prepare_data(config: PrepareConfig, out: Path, force: bool = False) -> PrepareResult:
    """Read, clean, split, train SentencePiece, encode, and write the prepared data directory `out`."""
    started = time.perf_counter()
    out = Path(out)
    _check_config(config)
    _check_out(out, force)
    check_writable(out, is_file=False)  # fail before the work, not after it
    inputs = open_inputs(config)
    with staging(out, force) as tmp:
        manifest = _prepare_into(tmp, config, inputs)
    logger.info("prepared %s in %.1f s", out, time.perf_counter() - started)
    return PrepareResult(out, manifest)


def _prepare_into(tmp: Path, config: PrepareConfig, inputs: Inputs) -> dict[str, Any]:
    train_reader = inputs.splits["train"]
    counts = {"train": SplitCounts(0, train_reader.origin, alignments=train_reader.has_alignments)}
    kept = _scan_train(train_reader, config, counts["train"])
    usable = int(kept.sum())
    if usable == 0:
        raise UserError("the training data is empty after removing empty and duplicate pairs")
    given = {name: reader for name, reader in inputs.splits.items() if name != "train" and reader is not None}
    for name, reader in given.items():  # read now: a bad file is an error before the long part
        counts[name] = SplitCounts(_count_pairs(reader, config.chunk_size), reader.origin)
    routing = _carve_missing(kept, usable, config, inputs, counts)
    for name in ("dev", "test"):
        if counts[name].read == 0:
            origin = counts[name].origin
            where = origin.get("source") or origin.get("path") or origin.get("id") or origin.get("kind")
            raise UserError(
                f"the {name} data has no lines ({where}); give a {name} set with at least one pair"
            )

    def sentences(side: int) -> Iterator[str]:
        return _training_sentences(train_reader, routing, side, config.chunk_size)

    carved = sum(counts[name].read for name in ("dev", "test") if inputs.splits[name] is None)
    train = counts["train"]
    tokenizers, samples = _train_tokenizers(sentences, config, usable - carved, train.characters)
    _write_tokenizers(tmp, tokenizers, config.joint_vocabulary)

    def texts(name: str) -> tuple[str, str] | None:  # the verbatim text files of dev and test
        return None if name == "train" else (f"{name}.{inputs.source_lang}", f"{name}.{inputs.target_lang}")

    with contextlib.ExitStack() as stack:
        outputs = {}
        for name in SPLITS:
            outputs[name] = SplitOutput(
                tmp / ENCODED_DIR / name, tmp / TEXT_DIR, name, texts(name), counts[name].alignments
            )
            stack.callback(outputs[name].abort)
        models = tuple(t.model_proto for t in tokenizers)
        with Workers(config.num_workers, start_encoder, models) as workers:
            _encode_train(train_reader, routing, outputs, counts["train"], workers, config)
            for name, reader in given.items():
                _encode_whole(reader, outputs[name], workers, config.chunk_size)
        for output in outputs.values():
            output.close()
        stack.pop_all()
    write_dataset_dict(tmp / ENCODED_DIR, SPLITS)
    if outputs["train"].writer.rows == 0:
        removed = steps_text([vars(step) for step in counts["train"].steps])
        raise UserError(
            f"no training pairs left after filtering ({removed}); relax --max-tokens or --max-length-ratio"
        )
    manifest = _manifest(config, inputs, counts, outputs, tokenizers)
    if any(size != config.spm_sample for size in samples):  # cut to fit --memory-budget-mb
        manifest["vocabulary"]["sampled"] = samples
    write_manifest(tmp, manifest)
    return manifest


# ------------------------------------------------------------------------------------------------------------
# Pass 1: count, clean, find duplicates; carve dev/test


def _scan_train(reader: PairReader, config: PrepareConfig, counts: SplitCounts) -> np.ndarray:
    """(read,) bool: which training pairs stay (non-empty once cleaned, first of their kind). Counts them, and
    the characters of their cleaned sides (`counts.characters`)."""
    seen = SeenHashes()
    characters = counts.characters
    kept: list[np.ndarray] = []
    full = 0
    arguments = ((chunk.source, chunk.target) for chunk in reader.chunks(config.chunk_size))
    bar = tqdm(desc="reading train", unit="pair", disable=None, leave=False)
    with bar, Workers(config.num_workers) as workers:
        for hashes, source_characters, target_characters in workers.map(scan_chunk, arguments):
            nonempty = hashes != 0
            new = np.zeros(len(hashes), dtype=bool)
            new[nonempty] = seen.add_new(hashes[nonempty])
            kept.append(new)
            characters[0] += int(source_characters[new].sum())
            characters[1] += int(target_characters[new].sum())
            full += int(nonempty.sum())
            bar.update(len(hashes))
    mask = np.concatenate(kept) if kept else np.zeros(0, dtype=bool)
    counts.read = len(mask)
    counts.removed(FilterStep("empty", len(mask), full))
    counts.removed(FilterStep("duplicate", full, int(mask.sum())))
    logger.info("read %d training pairs (%.0f MB of hashes)", len(mask), seen.nbytes / 2**20)
    return mask


def _count_pairs(reader: PairReader, rows: int) -> int:
    return sum(len(chunk) for chunk in reader.chunks(rows))


@dataclass
class _Routing:
    """Where each training pair goes: `kept` says which pairs stay; `dev` and `test` hold the indices, among
    the pairs that stay, of those carved out (sorted)."""

    kept: np.ndarray
    dev: np.ndarray
    test: np.ndarray

    def routes(
        self, chunks: Iterator[RawChunk]
    ) -> Iterator[tuple[RawChunk, np.ndarray, np.ndarray, np.ndarray]]:
        """Each chunk with the positions in it of its train, dev and test pairs (chunks in order)."""
        usable_before = 0
        for chunk in chunks:
            positions = np.flatnonzero(self.kept[chunk.start : chunk.start + len(chunk)])
            index = usable_before + np.arange(len(positions))
            in_dev, in_test = np.isin(index, self.dev), np.isin(index, self.test)
            yield chunk, positions[~(in_dev | in_test)], positions[in_dev], positions[in_test]
            usable_before += len(positions)


def _carve_missing(kept, usable: int, config: PrepareConfig, inputs: Inputs, counts) -> _Routing:
    """Carve dev and/or test from the (cleaned, deduplicated) training pairs when they were not given."""
    missing = [name for name in ("dev", "test") if inputs.splits[name] is None]
    dev_size = config.dev_size if "dev" in missing else 0
    test_size = config.test_size if "test" in missing else 0
    none = np.zeros(0, dtype=np.int64)
    if dev_size == 0 and test_size == 0:
        if missing:
            raise UserError("--dev-size and --test-size must be positive when there is no dev or test data")
        return _Routing(kept, none, none)
    dev, test = carve_held_out(usable, dev_size, test_size, config.seed)
    origin = {"kind": "carved", "from": "train", "seed": config.seed}
    remaining = usable
    for name, indices in (("dev", dev), ("test", test)):
        if name in missing:
            counts[name] = SplitCounts(len(indices), origin, alignments=counts["train"].alignments)
            counts["train"].removed(FilterStep(f"carved_{name}", remaining, remaining - len(indices)))
            remaining -= len(indices)
            logger.info("carved %d %s pairs from train (seed %d)", len(indices), name, config.seed)
    return _Routing(kept, np.asarray(dev, dtype=np.int64), np.asarray(test, dtype=np.int64))


# ------------------------------------------------------------------------------------------------------------
# Pass 2: SentencePiece


def _training_sentences(reader: PairReader, routing: _Routing, side: int, rows: int) -> Iterator[str]:
    """The cleaned sentences of one side (0: source, 1: target) of the training pairs, in corpus order."""
    for chunk, train, _, _ in routing.routes(reader.chunks(rows)):
        lines = chunk.target if side else chunk.source
        yield from (normalize(lines[i]) for i in train)


def _train_tokenizers(
    sentences, config: PrepareConfig, pairs: int, characters
) -> tuple[tuple[Tokenizer, Tokenizer], list[int]]:
    """SentencePiece on the training sentences (`pairs` pairs, `characters` = (source, target) characters),
    sampling at most --spm-sample sentences, fewer if that many would not fit in --memory-budget-mb. Returns
    the tokenizers and the sample size of each model trained."""
    samples = []

    def settings(sentence_count: int, character_count: int) -> SentencePieceSettings:
        size = sample_within(config.memory_budget_mb, config.spm_sample, sentence_count, character_count)
        if size != config.spm_sample:
            logger.info("SentencePiece samples %d sentences, what fits in --memory-budget-mb", size)
        samples.append(size)
        return SentencePieceSettings(
            vocab_size=config.vocab_size,
            model_type=config.model_type.value,
            character_coverage=config.character_coverage,
            input_sentence_size=size,
            seed=config.seed,
            num_threads=config.num_workers,
        )

    started = time.perf_counter()
    if config.joint_vocabulary:
        joint = settings(2 * pairs, sum(characters))
        tokenizer = Tokenizer(_train_sentencepiece(itertools.chain(sentences(0), sentences(1)), joint))
        tokenizers = (tokenizer, tokenizer)
    else:
        tokenizers = tuple(
            Tokenizer(_train_sentencepiece(sentences(side), settings(pairs, characters[side])))
            for side in (0, 1)
        )
    logger.info(
        "trained %s SentencePiece (%s): %s pieces in %.1f s",
        "a joint" if config.joint_vocabulary else "separate",
        config.model_type.value,
        " + ".join(str(t.vocab_size) for t in dict.fromkeys(tokenizers)),
        time.perf_counter() - started,
    )
    return tokenizers, samples


def _train_sentencepiece(sentences: Iterator[str], settings: SentencePieceSettings) -> bytes:
    try:
        return train_sentencepiece(sentences, settings)
    except RuntimeError as error:  # e.g. a vocabulary smaller than the corpus's character set
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UserError(f"SentencePiece training failed: {message} (try another --vocab-size)") from None


def _write_tokenizers(directory: Path, tokenizers: tuple[Tokenizer, Tokenizer], joint: bool) -> None:
    source, target = tokenizers
    if joint:
        (directory / JOINT_MODEL_FILE).write_bytes(source.model_proto)
    else:
        (directory / SOURCE_MODEL_FILE).write_bytes(source.model_proto)
        (directory / TARGET_MODEL_FILE).write_bytes(target.model_proto)


# ------------------------------------------------------------------------------------------------------------
# Pass 3: encode, filter, write


def _encode_train(reader, routing: _Routing, outputs, counts: SplitCounts, workers: Workers, config) -> None:
    """Encode the training pairs that stay and the carved dev/test pairs; filter training pairs by length."""
    pending: collections.deque = collections.deque()
    too_long = FilterStep("too_long", 0, 0)
    ratio = FilterStep("length_ratio", 0, 0)

    def arguments():
        for chunk, *routes in routing.routes(reader.chunks(config.chunk_size)):
            pending.append((chunk, routes))
            rows = np.concatenate(routes)
            yield [chunk.source[i] for i in rows], [chunk.target[i] for i in rows]

    work = workers.map(encode_chunk, arguments())
    with tqdm(desc="encoding train", unit="pair", disable=None, leave=False) as bar:
        for batch in work:
            chunk, routes = pending.popleft()
            start = 0
            for name, rows in zip(SPLITS, routes, strict=True):
                part = batch.take(np.arange(start, start + len(rows)))
                start += len(rows)
                if name == "train":
                    short, keep = _length_filter(part, config.max_tokens, config.max_length_ratio)
                    too_long.before, too_long.after = too_long.before + len(part), too_long.after + short
                    ratio.before, ratio.after = ratio.before + short, ratio.after + len(keep)
                    part, rows = part.take(keep), rows[keep]
                outputs[name].write(part, chunk, rows)
            bar.update(len(chunk))
    # Length filters need subword counts, so they come after encoding (training pairs only).
    counts.removed(too_long)
    counts.removed(ratio)


def _length_filter(batch: EncodedBatch, max_tokens: int, max_ratio: float) -> tuple[int, np.ndarray]:
    """How many pairs have at most `max_tokens` tokens a side, and the positions of those whose longer side
    also has at most `max_ratio` times the tokens of the shorter (misaligned pairs often exceed it)."""
    source, target = batch.src_lens, batch.tgt_lens
    short = (source <= max_tokens) & (target <= max_tokens)
    ratio = np.maximum(source, target) / np.maximum(1, np.minimum(source, target))
    return int(short.sum()), np.flatnonzero(short & (ratio <= max_ratio))


def _encode_whole(reader: PairReader, output: SplitOutput, workers: Workers, rows: int) -> None:
    """Encode every pair of a given dev or test split, unfiltered."""
    chunks: collections.deque = collections.deque()

    def arguments():
        for chunk in reader.chunks(rows):
            chunks.append(chunk)
            yield chunk.source, chunk.target

    for batch in workers.map(encode_chunk, arguments()):
        chunk = chunks.popleft()
        output.write(batch, chunk, np.arange(len(chunk)))


# ------------------------------------------------------------------------------------------------------------
# The manifest


def _manifest(config, inputs: Inputs, counts, outputs, tokenizers) -> dict[str, Any]:
    source_tok, target_tok = tokenizers
    sections: dict[str, dict] = {"counts": {}, "statistics": {}, "sources": {}}
    for name in SPLITS:
        split, written = counts[name], outputs[name].writer
        sections["counts"][name] = {
            "read": split.read,
            "steps": [
                {"name": s.name, "before": s.before, "after": s.after, "removed": s.removed}
                for s in split.steps
            ],
            "kept": written.rows,
        }
        removed = sum(s.removed for s in split.steps)
        assert split.read == written.rows + removed, f"{name} counts do not add up"
        sections["statistics"][name] = written.statistics.as_dict()
        sections["sources"][name] = split.origin
    return {
        "source_lang": inputs.source_lang,
        "target_lang": inputs.target_lang,
        "joint_vocabulary": config.joint_vocabulary,
        **{key: sections[key] for key in ("sources", "counts", "statistics")},
        "cleaning": {
            "normalization": "NFC, whitespace runs made one space",
            "max_tokens": config.max_tokens,
            "max_length_ratio": config.max_length_ratio,
            "filtered_splits": ["train"],
        },
        "vocabulary": {
            "joint": config.joint_vocabulary,
            "model_type": config.model_type.value,
            "requested_size": config.vocab_size,
            "character_coverage": config.character_coverage,
            "sample": config.spm_sample,
            "source_size": source_tok.vocab_size,
            "target_size": target_tok.vocab_size,
        },
        "alignments": [name for name in SPLITS if counts[name].alignments],
        "seed": config.seed,
        "config": to_dict(config),
        "nmt_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------------------------
# Checks and the summary


def _check_config(config: PrepareConfig) -> None:
    if config.train_prefix is None and config.dataset is None:
        raise UserError(
            "no training data: give --train-prefix (files PREFIX.SRC and PREFIX.TGT) or --dataset "
            f"(a hub id, a dataset directory or file, or '{SYNTHETIC_DATASET}')"
        )
    if config.train_prefix is not None and config.dataset is not None:
        raise UserError("give either --train-prefix or --dataset, not both")
    if config.dataset != SYNTHETIC_DATASET and (config.source_lang is None or config.target_lang is None):
        raise UserError(
            "--source-lang and --target-lang are required (for example --source-lang de --target-lang en)"
        )
    if config.source_lang is not None and config.source_lang == config.target_lang:
        raise UserError(f"--source-lang and --target-lang are both '{config.source_lang}'; they must differ")
    if config.vocab_size < 8:
        raise UserError(f"--vocab-size must be at least 8 (got {config.vocab_size})")
    if config.max_tokens < 1:
        raise UserError(f"--max-tokens must be positive (got {config.max_tokens})")
    if config.max_length_ratio < 1:
        raise UserError(f"--max-length-ratio must be at least 1 (got {config.max_length_ratio})")
    if not 0 < config.character_coverage <= 1:
        raise UserError(f"--character-coverage must be in (0, 1] (got {config.character_coverage})")
    if config.num_workers < 1:
        raise UserError(f"--num-workers must be at least 1 (got {config.num_workers})")
    if config.chunk_size < 1:
        raise UserError(f"--chunk-size must be at least 1 (got {config.chunk_size})")
    if config.memory_budget_mb < MIN_MEMORY_MB:
        raise UserError(
            f"--memory-budget-mb must be at least {MIN_MEMORY_MB} (got {config.memory_budget_mb})"
        )


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise UserError(f"{out} already exists; choose another --out or pass --force to replace it")
    # --force replaces a prepared data directory (or an empty one), never anything else a typo could name.
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file()):
        raise UserError(
            f"{out} exists and is not a prepared data directory; refusing to replace it even with --force"
        )
