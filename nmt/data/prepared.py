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

A directory is written into a temporary directory beside its place (`staging`) and renamed into place only
when complete: a failed run leaves nothing behind, and `force` replaces an old directory only at the very end.
`nmt prepare` writes encoded/ a chunk at a time (nmt/data/shards.py): each split's folder holds one or more
Arrow shard files, as `save_to_disk` would write them; directories written whole by earlier versions (one
shard per split) read the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from nmt.data.tokenizer import TokenizerPair, load_tokenizers
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


@contextlib.contextmanager
def staging(out: Path, force: bool) -> Iterator[Path]:
    """A temporary directory beside `out` to write a prepared directory into, renamed into place when the
    block succeeds.

    When the block fails (or is interrupted), the temporary directory is removed, with `out`'s parent if it
    was made for it, and `out` is left as it was; an OS error a user can fix (a full disk, no permission)
    becomes `cannot write OUT: ...`.
    """
    created_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any new directory
    try:
        yield tmp
        _move_into_place(tmp, out, force)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if created_parent and out.parent.exists() and not any(out.parent.iterdir()):
            out.parent.rmdir()
        cause = None if isinstance(error, UserError) else fixable_os_error(error)
        if cause is not None:
            raise cannot_write(out, cause) from None
        raise


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    (directory / MANIFEST_FILE).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


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
# The manifest in words


def steps_text(steps: list[dict[str, Any]]) -> str:
    """What cleaning steps removed, in words: "3 empty, 0 duplicate, ..." (steps as in the manifest)."""
    removed = (f"{s['before'] - s['after']} {s['name'].replace('_', ' ')}" for s in steps)
    return ", ".join(removed) or "nothing removed"


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
        if counts["steps"]:
            lines.append(f"{name}: read {counts['read']:,}; removed {steps_text(counts['steps'])}")
    return "\n".join(lines)


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
