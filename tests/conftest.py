"""Shared test fixtures. Tests never touch the network: the Hugging Face libraries are forced offline."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

CORPORA = Path(__file__).resolve().parent.parent.parent / "shared" / "corpora"


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_nmt(*args: str, input: str | None = None) -> CliResult:
    """Run the `nmt` command in-process, as a user would from a shell."""
    from typer.testing import CliRunner

    from nmt.cli.main import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input, catch_exceptions=False)
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from threads, and on a busy machine spinning threads slow them down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


def corpus_path(*parts: str) -> Path:
    """A path in ../shared/corpora, skipping the test when the corpora are not there."""
    path = CORPORA.joinpath(*parts)
    if not CORPORA.is_dir():
        pytest.skip("../shared/corpora is not available")
    return path


def toy_pairs(n: int, seed: int, min_words: int = 2, max_words: int = 12) -> list[tuple[str, str]]:
    """A reversal task: the target is the source's words in reverse order, spelled in upper case."""
    import random

    rng = random.Random(seed)
    words = ["alba", "bero", "cima", "dano", "eske", "fora", "gilu", "hopa", "ivra", "juno", "kela", "lumo"]
    pairs = []
    for _ in range(n):
        sentence = [rng.choice(words) for _ in range(rng.randint(min_words, max_words))]
        pairs.append((" ".join(sentence), " ".join(w.upper() for w in reversed(sentence))))
    return pairs


def make_prepared(path: Path, train, dev, test, vocab_size: int = 64, joint: bool = True) -> Path:
    """Write a prepared data directory (the layout of nmt/data/prepared.py) straight from lists of pairs.

    For tests of training, translation and evaluation that should not depend on `nmt prepare` itself.
    """
    import json

    from datasets import Dataset, DatasetDict

    from nmt.data.prepared import ENCODED_DIR, MANIFEST_FILE, TEXT_DIR, encoded_features
    from nmt.data.tokenizer import (
        JOINT_MODEL_FILE,
        SOURCE_MODEL_FILE,
        TARGET_MODEL_FILE,
        SentencePieceSettings,
        Tokenizer,
        train_sentencepiece,
    )

    path.mkdir(parents=True, exist_ok=True)
    settings = SentencePieceSettings(vocab_size=vocab_size)
    if joint:
        proto = train_sentencepiece([s for pair in train for s in pair], settings)
        (path / JOINT_MODEL_FILE).write_bytes(proto)
        source = target = Tokenizer(proto)
    else:
        src_proto = train_sentencepiece([s for s, _ in train], settings)
        tgt_proto = train_sentencepiece([t for _, t in train], settings)
        (path / SOURCE_MODEL_FILE).write_bytes(src_proto)
        (path / TARGET_MODEL_FILE).write_bytes(tgt_proto)
        source, target = Tokenizer(src_proto), Tokenizer(tgt_proto)

    def encode(pairs):
        return Dataset.from_dict(
            {
                "src_ids": source.encode_batch([s for s, _ in pairs]),
                "tgt_ids": target.encode_batch([t for _, t in pairs]),
                "src_words": [len(s.split()) for s, _ in pairs],
                "tgt_words": [len(t.split()) for _, t in pairs],
            },
            features=encoded_features(),  # int32, as `nmt prepare` writes them
        )

    DatasetDict({"train": encode(train), "dev": encode(dev), "test": encode(test)}).save_to_disk(
        str(path / ENCODED_DIR)
    )
    (path / TEXT_DIR).mkdir(exist_ok=True)
    for split, pairs in (("dev", dev), ("test", test)):
        (path / TEXT_DIR / f"{split}.src").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
        (path / TEXT_DIR / f"{split}.tgt").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    manifest = {"source_lang": "src", "target_lang": "tgt", "joint_vocabulary": joint}
    (path / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    """A small prepared reversal task, shared by the tests of the whole session (read-only)."""
    return make_prepared(
        tmp_path_factory.mktemp("toy-data"),
        toy_pairs(400, seed=1),
        toy_pairs(40, seed=2),
        toy_pairs(40, seed=3),
    )


def make_checkpoint(path: Path, data_dir: Path, arch: str, preset: str = "tiny", seed: int = 0) -> Path:
    """Save a freshly initialised (untrained) model of `arch` with the tokenizers of a prepared directory.

    Enough for tests of file formats, line counts and error handling, which do not need good translations.
    """
    from nmt.checkpoint import Checkpoint, save_checkpoint
    from nmt.data.prepared import PreparedData
    from nmt.models import build_model, model_config

    data = PreparedData.open(data_dir)
    vocab = {"src_vocab_size": len(data.tokenizers.source), "tgt_vocab_size": len(data.tokenizers.target)}
    config = model_config(arch, preset, vocab)
    torch.manual_seed(seed)
    model = build_model(arch, config)
    languages = {"source": data.source_lang, "target": data.target_lang}
    save_checkpoint(path, Checkpoint(arch, config, model.state_dict(), data.tokenizers, languages))
    return path


@pytest.fixture(scope="session")
def tiny_checkpoint(toy_data, tmp_path_factory):
    """`tiny_checkpoint(arch)`: the path of an untrained tiny-preset checkpoint of `arch` on `toy_data`
    (made once per architecture and session; read-only)."""
    made: dict[str, Path] = {}
    directory = tmp_path_factory.mktemp("tiny-checkpoints")

    def get(arch: str) -> Path:
        if arch not in made:
            made[arch] = make_checkpoint(directory / f"{arch}.pt", toy_data, arch)
        return made[arch]

    return get


def snapshot(directory: Path) -> dict[str, str]:
    """Every file and folder under `directory` (hidden ones too), files with a hash of their bytes: equal
    snapshots before and after a command mean it changed, created and removed nothing there."""
    import hashlib

    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file()
        else "dir"
        for path in sorted(directory.rglob("*"))
    }


class _RunsCodeWhenLoaded:
    """Unpickling this calls Path.touch(marker): what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def save_checkpoint_that_runs_code(path: Path, marker: Path) -> Path:
    """A file shaped like an nmt checkpoint whose unpickling would create `marker`."""
    torch.save({"format": "nmt-checkpoint", "version": 1, "model": _RunsCodeWhenLoaded(marker)}, path)
    return path
