"""`nmt prepare`: raw parallel text in, a prepared data directory (nmt/data/prepared.py) out.

    read -> normalise -> drop empty and duplicate training pairs -> carve missing dev/test from train
         -> train SentencePiece -> encode -> drop too long / badly proportioned training pairs -> write

Dev and test are never filtered: the evaluator scores every line of the originals, so they keep every line
(empty ones too) and `text/` stays line-aligned with what was read. The manifest records, per split, how many
pairs were read and how many each step removed, so that `read == kept + sum(removed)`.

Everything is built in memory and written by `write_prepared` into a temporary directory beside `out`, which
is renamed into place only when complete: a failed run leaves nothing behind, and `force` replaces an old
directory only at the end.

A corpus that comes with gold word alignments (the synthetic pair, derived with them) carries each pair's
alignment, as a Pharaoh line, through every step with its pair, and `write_prepared` writes them beside the
text (text/{split}.align). Other corpora carry None, at no cost.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sentencepiece as spm
from tqdm.auto import tqdm

from nmt import __version__
from nmt.config import SYNTHETIC_DATASET, PrepareConfig, to_dict
from nmt.data import synthetic
from nmt.data.corpus import (
    FilterStep,
    ParallelText,
    carve,
    drop_duplicates,
    drop_empty,
    drop_length_ratio,
    drop_too_long,
    normalize,
    one_line,
    read_dataset,
    read_parallel_files,
)
from nmt.data.prepared import MANIFEST_FILE, SPLITS, EncodedSplit, alignment_line, write_prepared
from nmt.data.tokenizer import (
    SentencePieceSettings,
    Tokenizer,
    train_sentencepiece,
)
from nmt.errors import UserError
from nmt.files import check_writable

logger = logging.getLogger(__name__)

ENCODE_CHUNK = 20_000  # sentences per SentencePiece batch call (one progress-bar tick)
PERCENTILES = (50, 90, 99)


@dataclass
class PrepareResult:
    path: Path
    manifest: dict[str, Any]


@dataclass
class LengthStats:
    mean: float
    p50: int
    p90: int
    p99: int
    max: int


def length_stats(lengths: Sequence[int]) -> LengthStats:
    """Mean, nearest-rank percentiles 50/90/99 and maximum of `lengths` (all zero when empty)."""
    if not lengths:
        return LengthStats(0.0, 0, 0, 0, 0)
    ordered = sorted(lengths)
    n = len(ordered)
    p50, p90, p99 = (ordered[max(0, math.ceil(p / 100 * n) - 1)] for p in PERCENTILES)
    return LengthStats(round(sum(ordered) / n, 2), p50, p90, p99, ordered[-1])


@dataclass
class _Split:
    """A split on its way through the pipeline."""

    raw: ParallelText  # as read (the text/ files of dev and test)
    clean: ParallelText  # normalised (what is encoded)
    read: int
    steps: list[FilterStep] = field(default_factory=list)
    # Each pair's gold word alignment (a Pharaoh line), for a corpus that has them.
    alignments: list[str] | None = None

    def keep(self, indices: list[int], step: FilterStep | None = None) -> None:
        """Keep the pairs `indices` (text and alignments alike), and count them as `step` removed the rest."""
        self.raw, self.clean = self.raw.select(indices), self.clean.select(indices)
        self.alignments = _selected(self.alignments, indices)
        if step is not None:
            self.steps.append(step)

    def subset(self, indices: list[int], origin: dict[str, Any]) -> _Split:
        """A new split of the pairs `indices` (a carved dev or test set)."""
        return _Split(
            self.raw.select(indices, origin),
            self.clean.select(indices, origin),
            len(indices),
            alignments=_selected(self.alignments, indices),
        )


def _selected(lines: list[str] | None, indices: list[int]) -> list[str] | None:
    return None if lines is None else [lines[i] for i in indices]


@dataclass
class Inputs:
    """What `read_inputs` found: the text of each split and the language pair."""

    splits: dict[str, ParallelText | None]  # None: a split to carve from train
    alignments: dict[str, list[str]]  # the gold word alignments of the splits that come with them
    source_lang: str
    target_lang: str


# ------------------------------------------------------------------------------------------------------------
# The pipeline


def prepare_data(config: PrepareConfig, out: Path, force: bool = False) -> PrepareResult:
    """Read, clean, split, train SentencePiece, encode, and write the prepared data directory `out`."""
    started = time.perf_counter()
    out = Path(out)
    _check_config(config)
    _check_out(out, force)
    check_writable(out, is_file=False)  # fail before the work, not after it

    inputs = read_inputs(config)
    source_lang, target_lang = inputs.source_lang, inputs.target_lang
    splits = {
        name: _normalized(text, name, inputs.alignments.get(name)) for name, text in inputs.splits.items()
    }

    train = splits["train"]
    _drop(train, *drop_empty(train.clean))
    _drop(train, *drop_duplicates(train.clean))
    if len(train.clean) == 0:
        raise UserError("the training data is empty after removing empty and duplicate pairs")
    _carve_missing(splits, config)
    for name in ("dev", "test"):
        if len(splits[name].clean) == 0:
            origin = splits[name].raw.origin
            where = origin.get("source") or origin.get("path") or origin.get("id") or origin.get("kind")
            raise UserError(
                f"the {name} data has no lines ({where}); give a {name} set with at least one pair"
            )

    tokenizers = _train_tokenizers(train.clean, config)
    source_tok, target_tok = tokenizers
    encoded = {}
    for name in SPLITS:
        encoded[name] = _encode(splits[name].clean, source_tok, target_tok, config.num_workers, name)

    # Length filters need subword counts, so they come after encoding (training pairs only).
    enc = encoded["train"]
    keep = drop_too_long(enc.source_lens, enc.target_lens, config.max_tokens)
    train.steps.append(FilterStep("too_long", len(enc), len(keep)))
    enc = enc.select(keep)
    train.alignments = _selected(train.alignments, keep)
    keep = drop_length_ratio(enc.source_lens, enc.target_lens, config.max_length_ratio)
    train.steps.append(FilterStep("length_ratio", len(enc), len(keep)))
    encoded["train"] = enc.select(keep)
    train.alignments = _selected(train.alignments, keep)
    if len(encoded["train"]) == 0:
        raise UserError(
            f"no training pairs left after filtering ({_steps_text(train.steps)}); "
            "relax --max-tokens or --max-length-ratio"
        )

    manifest = _manifest(config, source_lang, target_lang, splits, encoded, tokenizers)
    verbatim = {name: (splits[name].raw.source, splits[name].raw.target) for name in ("dev", "test")}
    alignments = {name: splits[name].alignments for name in SPLITS if splits[name].alignments is not None}
    write_prepared(out, force, manifest, verbatim, encoded, tokenizers, alignments)
    logger.info("prepared %s in %.1f s", out, time.perf_counter() - started)
    return PrepareResult(out, manifest)


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


def read_inputs(config: PrepareConfig) -> Inputs:
    """The train/dev/test text as read (None for a split to carve from train), the gold word alignments of
    the splits that have them, and the language pair."""
    source_lang, target_lang = config.source_lang, config.target_lang
    splits: dict[str, ParallelText | None] = dict.fromkeys(SPLITS)
    alignments: dict[str, list[str]] = {}
    if config.train_prefix is not None:
        splits["train"] = read_parallel_files(config.train_prefix, source_lang, target_lang)
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
        splits["train"], alignments["train"] = synthetic_text(config.synthetic_size, config.seed, reverse)
    else:
        found = read_dataset(
            config.dataset, config.dataset_config, config.dataset_revision, source_lang, target_lang
        )
        splits.update(found)
    if config.dev_prefix is not None:
        splits["dev"] = read_parallel_files(config.dev_prefix, source_lang, target_lang)
    if config.test_prefix is not None:
        splits["test"] = read_parallel_files(config.test_prefix, source_lang, target_lang)
    return Inputs(splits, alignments, source_lang, target_lang)


def synthetic_text(size: int, seed: int, reverse: bool = False) -> tuple[ParallelText, list[str]]:
    """`size` pairs of the synthetic corpus (`nmt.data.synthetic`) and each pair's word alignment as a
    Pharaoh line, derived together by the grammar; `reverse` swaps the sides (Zerak -> Ulami)."""
    if size < 1:
        raise UserError(f"--synthetic-size must be positive (got {size})")
    pairs = synthetic.generate_aligned(size, seed)
    source, target = [p.source for p in pairs], [p.target for p in pairs]
    alignments = [alignment_line(p.links(), swap=reverse) for p in pairs]
    if reverse:
        source, target = target, source
    return ParallelText(source, target, {"kind": "synthetic", "size": size, "seed": seed}), alignments


def _normalized(text: ParallelText | None, name: str, alignments: list[str] | None) -> _Split | None:
    if text is None:
        return None
    clean = ParallelText(_normalize_all(text.source, name), _normalize_all(text.target, name), text.origin)
    raw = ParallelText([one_line(s) for s in text.source], [one_line(t) for t in text.target], text.origin)
    return _Split(raw, clean, read=len(text), alignments=alignments)


def _normalize_all(lines: list[str], name: str) -> list[str]:
    out: list[str] = []
    with tqdm(total=len(lines), desc=f"normalising {name}", unit="sent", disable=None, leave=False) as bar:
        for start in range(0, len(lines), ENCODE_CHUNK):
            out.extend(normalize(line) for line in lines[start : start + ENCODE_CHUNK])
            bar.update(min(ENCODE_CHUNK, len(lines) - start))
    return out


def _drop(split: _Split, keep: list[int], step: FilterStep) -> None:
    split.keep(keep, step)
    if step.removed:
        logger.info("train: removed %d %s pairs", step.removed, step.name.replace("_", " "))


def _carve_missing(splits: dict[str, _Split | None], config: PrepareConfig) -> None:
    """Carve dev and/or test from the (cleaned, deduplicated) training pairs when they were not given."""
    dev_size = config.dev_size if splits["dev"] is None else 0
    test_size = config.test_size if splits["test"] is None else 0
    if dev_size == 0 and test_size == 0:
        if splits["dev"] is None or splits["test"] is None:
            raise UserError("--dev-size and --test-size must be positive when there is no dev or test data")
        return
    train = splits["train"]
    carved = carve(len(train.clean), dev_size, test_size, config.seed)
    origin = {"kind": "carved", "from": "train", "seed": config.seed}
    remaining = len(train.clean)
    for name, indices in (("dev", carved.dev), ("test", carved.test)):
        if splits[name] is None:
            splits[name] = train.subset(indices, origin)
            train.steps.append(FilterStep(f"carved_{name}", remaining, remaining - len(indices)))
            remaining -= len(indices)
            logger.info("carved %d %s pairs from train (seed %d)", len(indices), name, config.seed)
    train.keep(carved.train)


# ------------------------------------------------------------------------------------------------------------
# SentencePiece


def _train_tokenizers(train: ParallelText, config: PrepareConfig) -> tuple[Tokenizer, Tokenizer]:
    settings = SentencePieceSettings(
        vocab_size=config.vocab_size,
        model_type=config.model_type.value,
        character_coverage=config.character_coverage,
        input_sentence_size=config.spm_sample,
        seed=config.seed,
        num_threads=config.num_workers,
    )
    started = time.perf_counter()
    if config.joint_vocabulary:
        tokenizer = Tokenizer(_train_sentencepiece(train.source + train.target, settings))
        tokenizers = (tokenizer, tokenizer)
    else:
        tokenizers = (
            Tokenizer(_train_sentencepiece(train.source, settings)),
            Tokenizer(_train_sentencepiece(train.target, settings)),
        )
    logger.info(
        "trained %s SentencePiece (%s): %s pieces in %.1f s",
        "a joint" if config.joint_vocabulary else "separate",
        config.model_type.value,
        " + ".join(str(t.vocab_size) for t in dict.fromkeys(tokenizers)),
        time.perf_counter() - started,
    )
    return tokenizers


def _train_sentencepiece(sentences: list[str], settings: SentencePieceSettings) -> bytes:
    try:
        return train_sentencepiece(sentences, settings)
    except RuntimeError as error:  # e.g. a vocabulary smaller than the corpus's character set
        message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise UserError(f"SentencePiece training failed: {message} (try another --vocab-size)") from None


# ------------------------------------------------------------------------------------------------------------
# Encoding


def _encode(
    text: ParallelText, source: Tokenizer, target: Tokenizer, num_workers: int, name: str
) -> EncodedSplit:
    """Batch-encode both sides with SentencePiece's own threads, chunk by chunk straight into Arrow arrays."""

    ids_type = pa.list_(pa.int32())
    processors = [spm.SentencePieceProcessor(model_proto=t.model_proto) for t in (source, target)]
    chunks: list[list] = [[], []]
    lens: list[list[int]] = [[], []]
    total = 2 * len(text)
    with tqdm(total=total, desc=f"encoding {name}", unit="sent", disable=None, leave=False) as bar:
        for side, (processor, lines) in enumerate(zip(processors, (text.source, text.target), strict=True)):
            for start in range(0, len(lines), ENCODE_CHUNK):
                batch = lines[start : start + ENCODE_CHUNK]
                ids = processor.encode(batch, out_type=int, num_threads=num_workers)
                lens[side].extend(len(x) for x in ids)
                chunks[side].append(pa.array(ids, type=ids_type))
                bar.update(len(batch))

    def words(lines: list[str]) -> list[int]:  # the cleaned text has single spaces between words
        return [line.count(" ") + 1 if line else 0 for line in lines]

    return EncodedSplit(
        pa.chunked_array(chunks[0], type=ids_type),
        pa.chunked_array(chunks[1], type=ids_type),
        lens[0],
        lens[1],
        words(text.source),
        words(text.target),
    )


# ------------------------------------------------------------------------------------------------------------
# The manifest and the directory


def _manifest(config, source_lang, target_lang, splits, encoded, tokenizers) -> dict[str, Any]:
    source_tok, target_tok = tokenizers
    counts, statistics, sources = {}, {}, {}
    for name in SPLITS:
        split, enc = splits[name], encoded[name]
        counts[name] = {
            "read": split.read,
            "steps": [
                {"name": s.name, "before": s.before, "after": s.after, "removed": s.removed}
                for s in split.steps
            ],
            "kept": len(enc),
        }
        assert split.read == len(enc) + sum(s.removed for s in split.steps), f"{name} counts do not add up"
        statistics[name] = {
            "source_tokens": vars(length_stats(enc.source_lens)),
            "target_tokens": vars(length_stats(enc.target_lens)),
            "source_words": vars(length_stats(enc.source_words)),
            "target_words": vars(length_stats(enc.target_words)),
        }
        sources[name] = split.raw.origin
    settings = to_dict(config)
    return {
        "source_lang": source_lang,
        "target_lang": target_lang,
        "joint_vocabulary": config.joint_vocabulary,
        "sources": sources,
        "counts": counts,
        "statistics": statistics,
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
        "alignments": [name for name in SPLITS if splits[name].alignments is not None],
        "seed": config.seed,
        "config": settings,
        "nmt_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _steps_text(steps: list[FilterStep]) -> str:
    return ", ".join(f"{s.removed} {s.name.replace('_', ' ')}" for s in steps) or "nothing removed"


def format_summary(manifest: dict[str, Any], path: Path) -> str:
    """A short human summary of a manifest: pairs per split, what was removed, vocabulary, lengths."""
    vocab = manifest["vocabulary"]
    sizes = (
        f"{vocab['source_size']} pieces"
        if vocab["joint"]
        else f"{vocab['source_size']} source + {vocab['target_size']} target pieces"
    )
    lines = [
        f"prepared {manifest['source_lang']} -> {manifest['target_lang']} in {path}",
        f"vocabulary: {'joint' if vocab['joint'] else 'separate'} {vocab['model_type']}, {sizes}",
        f"{'split':<6} {'pairs':>9}   {'source tokens':<36} target tokens",
        f"{'':<6} {'':>9}   {'mean/p50/p90/p99/max':<36} mean/p50/p90/p99/max",
    ]
    for name in SPLITS:
        stats = manifest["statistics"][name]
        cells = [
            f"{s['mean']:.1f}/{s['p50']}/{s['p90']}/{s['p99']}/{s['max']}"
            for s in (stats["source_tokens"], stats["target_tokens"])
        ]
        lines.append(f"{name:<6} {manifest['counts'][name]['kept']:>9,}   {cells[0]:<36} {cells[1]}")
    for name in SPLITS:
        counts = manifest["counts"][name]
        steps = [FilterStep(s["name"], s["before"], s["after"]) for s in counts["steps"]]
        if steps:
            lines.append(f"{name}: read {counts['read']:,}; removed {_steps_text(steps)}")
    return "\n".join(lines)
