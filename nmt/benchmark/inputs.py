"""What the benchmark's models read: batches of random word ids of a fixed shape, and the presets' model
configs at the benchmark's vocabulary."""

from __future__ import annotations

import torch

from nmt.data.batching import Batch
from nmt.data.special import BOS_ID, EOS_ID, SPECIAL_IDS
from nmt.models import ModelConfig, model_config

FIRST_WORD_ID = max(SPECIAL_IDS.values()) + 1  # random tokens avoid PAD, UNK, BOS and EOS


def random_batch(
    sentences: int, source_len: int, target_len: int, vocab_size: int, generator: torch.Generator
) -> Batch:
    """A batch of random word ids with no padding: every source has `source_len` tokens (EOS last) and every
    target `target_len` (BOS + ids as input, ids + EOS as output)."""
    src_ids = torch.randint(FIRST_WORD_ID, vocab_size, (sentences, source_len - 1), generator=generator)
    tgt_ids = torch.randint(FIRST_WORD_ID, vocab_size, (sentences, target_len - 1), generator=generator)
    return Batch(
        src=torch.cat([src_ids, torch.full((sentences, 1), EOS_ID)], dim=1),  # (B, S)
        src_lengths=torch.full((sentences,), source_len, dtype=torch.long),  # (B,)
        tgt_in=torch.cat([torch.full((sentences, 1), BOS_ID), tgt_ids], dim=1),  # (B, T)
        tgt_out=torch.cat([tgt_ids, torch.full((sentences, 1), EOS_ID)], dim=1),  # (B, T)
        num_tokens=sentences * target_len,
    )


def bench_model_config(arch: str, preset: str, vocab_size: int) -> ModelConfig:
    """The preset's model config with a joint vocabulary of `vocab_size` (one shared embedding table)."""
    overrides = {"src_vocab_size": vocab_size, "tgt_vocab_size": vocab_size, "share_embeddings": True}
    return model_config(arch, preset, overrides)
