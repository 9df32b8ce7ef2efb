"""A prepared data directory, as written by `nmt prepare` and read by everything after it.

Layout:

    manifest.json                 languages, sources, per-split counts before/after each filter, statistics
    spm.model                     the joint SentencePiece model, or spm.src.model and spm.tgt.model
    encoded/                      a `datasets.DatasetDict` (save_to_disk; Arrow, memory-mapped) with splits
                                  train, dev, test and columns
                                    src_ids, tgt_ids     list[int32]: subword ids without BOS/EOS
                                    src_words, tgt_words int32: whitespace word counts of the cleaned text
    text/{dev,test}.{lang}        the dev/test text exactly as read, one sentence per line, for scoring
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from nmt.errors import UserError
from nmt.tokenizer import TokenizerPair, load_tokenizers

MANIFEST_FILE = "manifest.json"
ENCODED_DIR = "encoded"
TEXT_DIR = "text"
SPLITS = ("train", "dev", "test")


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
        from datasets import load_from_disk

        return load_from_disk(str(self.path / ENCODED_DIR))

    def split(self, name: str):
        """The encoded split `name` as a memory-mapped `datasets.Dataset`."""
        if name not in self._splits:
            raise UserError(f"{self.path} has no '{name}' split (it has {', '.join(self._splits)})")
        return self._splits[name]

    def text_path(self, split: str, lang: str) -> Path:
        return self.path / TEXT_DIR / f"{split}.{lang}"

    def text(self, split: str, side: str) -> list[str]:
        """The verbatim text of a dev/test split; side is 'source' or 'target'."""
        lang = self.source_lang if side == "source" else self.target_lang
        path = self.text_path(split, lang)
        if not path.is_file():
            raise UserError(f"{path} is missing from the prepared data directory")
        return path.read_text(encoding="utf-8").split("\n")[:-1] if path.stat().st_size else []
