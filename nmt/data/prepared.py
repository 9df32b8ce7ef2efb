"""The prepared data directory: its layout, its schema, and how it is written (by `nmt prepare`) and read
(by everything after it).

Layout:

    manifest.json                 languages, sources, per-split counts before/after each filter, statistics
    spm.model                     the joint SentencePiece model, or spm.src.model and spm.tgt.model
    encoded/                      a `datasets.DatasetDict` (save_to_disk; Arrow, memory-mapped) with splits
                                  train, dev, test and columns
                                    src_ids, tgt_ids     list[int32]: subword ids without BOS/EOS
                                    src_words, tgt_words int32: whitespace word counts of the cleaned text
    text/{dev,test}.{lang}        the dev/test text exactly as read, one sentence per line, for scoring
    text/{split}.align            only for a corpus with gold word alignments (the synthetic pair): one
                                  Pharaoh line per pair, "i-j" links (0-based source word i, target word j,
                                  words split at spaces); dev/test line for line with their text files,
                                  train with the rows of encoded/train. The manifest's "alignments" lists
                                  the splits that have one.

A directory is written into a temporary directory beside its place and renamed into place only when complete:
a failed run leaves nothing behind, and `force` replaces an old directory only at the very end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from nmt.data.tokenizer import (
    JOINT_MODEL_FILE,
    SOURCE_MODEL_FILE,
    TARGET_MODEL_FILE,
    Tokenizer,
    TokenizerPair,
    load_tokenizers,
)
from nmt.errors import UserError
from nmt.files import cannot_write, fixable_os_error, read_lines

MANIFEST_FILE = "manifest.json"
ENCODED_DIR = "encoded"
TEXT_DIR = "text"
SPLITS = ("train", "dev", "test")
ALIGNMENT_SUFFIX = "align"


def alignment_line(links: Iterable[tuple[int, int]], swap: bool = False) -> str:
    """A word alignment, (source word, target word) index pairs, as a Pharaoh line: "0-0 1-2 2-1".
    `swap` exchanges the sides (the alignment of the reverse direction). nmt.evaluation.alignment reads it."""
    pairs = sorted((j, i) for i, j in links) if swap else sorted(links)
    return " ".join(f"{i}-{j}" for i, j in pairs)


# ------------------------------------------------------------------------------------------------------------
# Writing


@dataclass
class EncodedSplit:
    """Subword ids (Arrow list<int32> arrays, without BOS/EOS) and lengths of one split."""

    source_ids: Any  # pyarrow.ChunkedArray
    target_ids: Any
    source_lens: list[int]
    target_lens: list[int]
    source_words: list[int]
    target_words: list[int]

    def __len__(self) -> int:
        return len(self.source_lens)

    def select(self, indices: list[int]) -> EncodedSplit:
        import pyarrow as pa  # deferred, as datasets below: seconds to import, and most readers never need it

        take = pa.array(indices, type=pa.int64())
        return EncodedSplit(
            self.source_ids.take(take),
            self.target_ids.take(take),
            [self.source_lens[i] for i in indices],
            [self.target_lens[i] for i in indices],
            [self.source_words[i] for i in indices],
            [self.target_words[i] for i in indices],
        )


def encoded_features():
    """The `datasets.Features` of an encoded split (the schema of `encoded/`)."""
    from datasets import Features, List, Value  # deferred: seconds to import

    return Features(
        {
            "src_ids": List(Value("int32")),
            "tgt_ids": List(Value("int32")),
            "src_words": Value("int32"),
            "tgt_words": Value("int32"),
        }
    )


def _dataset(encoded: EncodedSplit):
    import pyarrow as pa  # deferred: seconds to import, with datasets
    from datasets import Dataset

    columns = {
        "src_ids": encoded.source_ids.combine_chunks(),
        "tgt_ids": encoded.target_ids.combine_chunks(),
        "src_words": pa.array(encoded.source_words, type=pa.int32()),
        "tgt_words": pa.array(encoded.target_words, type=pa.int32()),
    }
    return Dataset.from_dict(columns, features=encoded_features())


def write_prepared(
    out: Path,
    force: bool,
    manifest: dict[str, Any],
    verbatim: dict[str, tuple[list[str], list[str]]],
    encoded: dict[str, EncodedSplit],
    tokenizers: tuple[Tokenizer, Tokenizer],
    alignments: dict[str, list[str]] | None = None,
) -> None:
    """Write a prepared directory into a temporary directory beside `out`, then rename it into place.

    `verbatim` holds the (source, target) lines of dev and test exactly as read; `encoded` every split;
    `alignments` the Pharaoh lines of the splits with gold word alignments, one per pair.
    """
    from datasets import DatasetDict  # deferred: seconds to import

    created_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any new directory
    try:
        source_tok, target_tok = tokenizers
        if manifest["joint_vocabulary"]:
            (tmp / JOINT_MODEL_FILE).write_bytes(source_tok.model_proto)
        else:
            (tmp / SOURCE_MODEL_FILE).write_bytes(source_tok.model_proto)
            (tmp / TARGET_MODEL_FILE).write_bytes(target_tok.model_proto)
        with _quiet_datasets():  # saving is quick; its progress bars would only clutter the log
            DatasetDict({name: _dataset(encoded[name]) for name in SPLITS}).save_to_disk(
                str(tmp / ENCODED_DIR)
            )
        (tmp / TEXT_DIR).mkdir()
        for name in ("dev", "test"):
            source, target = verbatim[name]
            for lang, lines in ((manifest["source_lang"], source), (manifest["target_lang"], target)):
                (tmp / TEXT_DIR / f"{name}.{lang}").write_bytes(
                    "".join(line + "\n" for line in lines).encode()
                )
        for name, lines in (alignments or {}).items():
            if len(lines) != len(encoded[name]):  # a pipeline bug, never the user's
                raise ValueError(f"{name}: {len(encoded[name])} pairs but {len(lines)} alignments")
            (tmp / TEXT_DIR / f"{name}.{ALIGNMENT_SUFFIX}").write_bytes(
                "".join(line + "\n" for line in lines).encode()
            )
        (tmp / MANIFEST_FILE).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        _move_into_place(tmp, out, force)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent and not any(out.parent.iterdir()):
            out.parent.rmdir()
        cause = fixable_os_error(error)
        if cause is not None:
            raise cannot_write(out, cause) from None
        raise


@contextlib.contextmanager
def _quiet_datasets():
    import datasets  # deferred: seconds to import

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def _move_into_place(tmp: Path, out: Path, force: bool) -> None:
    if not out.exists():
        tmp.rename(out)
        return
    if not force:  # it appeared while we were working
        raise UserError(f"{out} already exists; choose another --out or pass --force to replace it")
    old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
    old.rmdir()
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------------------
# Reading


@dataclass
class PreparedData:
    path: Path

    @classmethod
    def open(cls, path: Path) -> PreparedData:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"data directory not found: {path} (create it with 'nmt prepare')")
        if not (path / MANIFEST_FILE).is_file() or not (path / ENCODED_DIR).is_dir():
            raise UserError(
                f"{path} is not a prepared data directory (no {MANIFEST_FILE}; run 'nmt prepare')"
            )
        return cls(path)

    @cached_property
    def manifest(self) -> dict:
        try:
            return json.loads((self.path / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise UserError(f"cannot read {self.path / MANIFEST_FILE}: {error}") from None

    @property
    def source_lang(self) -> str:
        return self.manifest["source_lang"]

    @property
    def target_lang(self) -> str:
        return self.manifest["target_lang"]

    @cached_property
    def tokenizers(self) -> TokenizerPair:
        return load_tokenizers(self.path)

    @cached_property
    def _splits(self):
        from datasets import load_from_disk  # deferred: takes seconds to import; many readers never need it

        return load_from_disk(str(self.path / ENCODED_DIR))

    def split(self, name: str):
        """The encoded split `name` as a memory-mapped `datasets.Dataset`."""
        if name not in self._splits:
            raise UserError(f"{self.path} has no '{name}' split (it has {', '.join(self._splits)})")
        return self._splits[name]

    def text_path(self, split: str, lang: str) -> Path:
        return self.path / TEXT_DIR / f"{split}.{lang}"

    @property
    def alignment_splits(self) -> list[str]:
        """The splits that come with gold word alignments (none for a directory prepared before them)."""
        return list(self.manifest.get("alignments", []))

    def alignment_path(self, split: str) -> Path:
        """text/{split}.align: the gold word alignments of a split, in the Pharaoh format."""
        if split not in self.alignment_splits:
            raise UserError(f"{self.path} has no word alignments for the '{split}' split")
        return self.path / TEXT_DIR / f"{split}.{ALIGNMENT_SUFFIX}"

    def text(self, split: str, side: str) -> list[str]:
        """The verbatim text of a dev/test split; side is 'source' or 'target'."""
        lang = self.source_lang if side == "source" else self.target_lang
        path = self.text_path(split, lang)
        if not path.is_file():
            raise UserError(f"{path} is missing from the prepared data directory")
        return read_lines(path)
