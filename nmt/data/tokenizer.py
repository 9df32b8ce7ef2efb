"""SentencePiece subword models: training, encoding, decoding.

SentencePiece is trained to use exactly the special ids of nmt/data/special.py.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID


@dataclass(frozen=True)
class SentencePieceSettings:
    vocab_size: int = 8000
    model_type: str = "unigram"  # or "bpe"
    character_coverage: float = 1.0
    input_sentence_size: int = 1_000_000  # sentences sampled for training on large corpora; 0 = all
    seed: int = 1
    num_threads: int = 2


def train_sentencepiece(sentences: Iterable[str], settings: SentencePieceSettings) -> bytes:
    """Train a SentencePiece model on `sentences`; return the serialized model.

    `hard_vocab_limit=False` lets a tiny corpus (tests, the synthetic pair) ask for more pieces than it can
    support without failing: the vocabulary is then simply smaller.
    """
    model = io.BytesIO()
    spm.set_random_generator_seed(settings.seed)  # input sampling is then reproducible
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=settings.vocab_size,
        model_type=settings.model_type,
        character_coverage=settings.character_coverage,
        input_sentence_size=settings.input_sentence_size,
        shuffle_input_sentence=True,
        hard_vocab_limit=False,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        num_threads=settings.num_threads,
        minloglevel=2,
    )
    return model.getvalue()


# SentencePiece's training takes memory in proportion to the text of its sample. Measured on Europarl it-en
# (unigram, 8,000 pieces, peak resident memory of `nmt prepare`): 2.1 GB with a sample of 97M characters, at
# least 3.7 GB with 166M, about 20-22 bytes per character over the rest of the process.
TRAINING_BYTES_PER_CHARACTER = 21
PROCESS_MB = 300  # the rest: the libraries (about 180 MB on a tiny corpus), the hash table, chunks in flight
MIN_SAMPLE = 1000  # SentencePiece refuses samples of 100 sentences or fewer; so few teach it little anyway


def sample_within(memory_mb: int, requested: int, sentences: int, characters: int) -> int:
    """The `input_sentence_size` to train on: `requested` (0: every sentence) as long as sampling that many of
    these `sentences` (of `characters` characters in all) fits in `memory_mb`, else as many as fit."""
    wanted = min(requested or sentences, sentences)
    per_sentence = max(1.0, characters / max(1, sentences))
    fits = int((memory_mb - PROCESS_MB) * 2**20 / (TRAINING_BYTES_PER_CHARACTER * per_sentence))
    return requested if wanted <= max(fits, MIN_SAMPLE) else max(fits, MIN_SAMPLE)


class Tokenizer:
    """One SentencePiece model. Ids never include BOS/EOS: the models add them where they need them."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        return cls(Path(path).read_bytes())

    def __len__(self) -> int:
        return self._sp.get_piece_size()

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self._sp.encode(text, out_type=int)

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return self._sp.encode(list(texts), out_type=int)

    def pieces(self, text: str) -> list[str]:
        return self._sp.encode(text, out_type=str)

    def id_to_piece(self, ids: Sequence[int]) -> list[str]:
        return [self._sp.id_to_piece(int(i)) for i in ids]

    def decode(self, ids: Sequence[int]) -> str:
        return self._sp.decode([int(i) for i in ids if int(i) not in (PAD_ID, BOS_ID, EOS_ID)])

    def __getstate__(self):  # picklable for multiprocessing workers
        return {"model_proto": self.model_proto}

    def __setstate__(self, state):
        self.__init__(state["model_proto"])


@dataclass
class TokenizerPair:
    """The source and target tokenizers; the same object twice when the vocabulary is joint."""

    source: Tokenizer
    target: Tokenizer

    @property
    def joint(self) -> bool:
        return self.source.model_proto == self.target.model_proto


# File names inside a prepared data directory.
JOINT_MODEL_FILE = "spm.model"
SOURCE_MODEL_FILE = "spm.src.model"
TARGET_MODEL_FILE = "spm.tgt.model"


def load_tokenizers(data_dir: Path) -> TokenizerPair:
    """The tokenizers of a prepared data directory (joint or separate)."""
    data_dir = Path(data_dir)
    joint = data_dir / JOINT_MODEL_FILE
    if joint.is_file():
        tokenizer = Tokenizer.load(joint)
        return TokenizerPair(tokenizer, tokenizer)
    return TokenizerPair(
        Tokenizer.load(data_dir / SOURCE_MODEL_FILE), Tokenizer.load(data_dir / TARGET_MODEL_FILE)
    )
