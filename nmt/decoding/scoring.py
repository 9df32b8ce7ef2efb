"""Forced scoring: the log-probability a model (or an ensemble) gives a given translation of each sentence.

The target is read by teacher forcing, one `forward` per batch (no search): the log-probability of a pair is
the sum, over the target's subwords and then EOS, of log p(token | source, the tokens before it), the same
number that `step` gives token by token along the reference.

- Source and target lines are normalised and encoded as `nmt translate` and `nmt prepare` do (NFC, one
  space for any run of whitespace, the checkpoint's SentencePiece models).
- A source longer than the model can take is cut, as translation cuts it, with a logged warning; a target
  longer than the model can produce is refused (its score would be of another sentence).
- An empty line is scored like any other: an empty source is the model's input EOS alone, an empty target
  the log-probability of ending at once.
- Pairs are sorted by length and batched up to `batch_tokens` padded tokens; a batch that runs out of GPU
  memory is scored in halves (nmt/memory.py), and a pair that does not fit even alone is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from nmt.data.batching import length_batches, pad_sources, pad_targets
from nmt.data.corpus import normalize
from nmt.data.tokenizer import TokenizerPair
from nmt.decoding.search import source_limits
from nmt.errors import UserError
from nmt.memory import run_in_pieces
from nmt.models.base import Seq2Seq

logger = logging.getLogger(__name__)


@dataclass
class SentenceScore:
    """The forced score of one (source, target) pair."""

    index: int  # 0-based position of the pair in the input
    token_log_probs: list[float]  # log p of each target subword, then of EOS
    target_pieces: list[str]  # the target subwords the model read, without EOS
    truncated: bool = False  # the source was longer than the model can take and was cut

    @property
    def log_prob(self) -> float:
        """The log-probability of the whole target, EOS included."""
        return sum(self.token_log_probs)

    @property
    def normalized(self) -> float:
        """The log-probability per token (the target's subwords and EOS)."""
        return self.log_prob / len(self.token_log_probs)


@torch.inference_mode()
def forced_log_probs(
    model: Seq2Seq, src: Tensor, src_lengths: Tensor, targets: Sequence[Sequence[int]]
) -> list[Tensor]:
    """For each row of `src` (B, S), float32 log-probs (len(target) + 1,) of its target ids (without
    BOS/EOS) followed by EOS, read by teacher forcing. On the CPU."""
    tgt_in, tgt_out = pad_targets(targets)
    tgt_in, tgt_out = tgt_in.to(src.device), tgt_out.to(src.device)
    log_probs = model(src, src_lengths, tgt_in).float().log_softmax(dim=-1)  # (B, T, V)
    chosen = log_probs.gather(-1, tgt_out[..., None]).squeeze(-1).cpu()  # (B, T)
    return [chosen[row, : len(target) + 1] for row, target in enumerate(targets)]


def score_pairs(
    model: Seq2Seq,
    tokenizers: TokenizerPair,
    sources: Sequence[str],
    targets: Sequence[str],
    device: torch.device | str,
    *,
    batch_tokens: int = 8000,
    target_name: str = "the target",
) -> list[SentenceScore]:
    """The forced score of each pair (sources[i], targets[i]), in input order (see the module docstring).

    `target_name` names the target in the error about a target the model cannot produce (e.g. its file).
    """
    if len(sources) != len(targets):
        raise ValueError(f"{len(sources)} sources but {len(targets)} targets")
    if batch_tokens < 1:
        raise UserError(f"--batch-tokens must be at least 1 (got {batch_tokens})")
    device = torch.device(device)
    max_source, max_output = source_limits(model)
    source_ids = tokenizers.source.encode_batch([normalize(line) for line in sources])
    target_ids = tokenizers.target.encode_batch([normalize(line) for line in targets])
    for i, ids in enumerate(target_ids):
        if max_output is not None and len(ids) > max_output:
            raise UserError(
                f"{target_name} line {i + 1} has {len(ids)} subwords, more than this model can produce "
                f"({max_output}); leave it out or shorten it"
            )
    truncated = [False] * len(sources)
    for i, ids in enumerate(source_ids):
        if len(ids) > max_source:
            logger.warning(
                "source line %d has %d subwords, more than this model takes: only the first %d are read",
                i + 1,
                len(ids),
                max_source,
            )
            source_ids[i], truncated[i] = ids[:max_source], True

    def score(rows: list[int]) -> list[Tensor]:
        src, src_lengths = pad_sources([source_ids[i] for i in rows])
        return forced_log_probs(model, src.to(device), src_lengths.to(device), [target_ids[i] for i in rows])

    def does_not_fit(row: int) -> Tensor:
        raise UserError(
            f"pair {row + 1} ({len(source_ids[row])} and {len(target_ids[row])} subwords) does not fit in "
            f"{device.type.upper()} memory even alone; score with --device cpu"
        )

    scores: list[Tensor | None] = [None] * len(sources)
    sizes = [max(len(s), len(t)) + 1 for s, t in zip(source_ids, target_ids, strict=True)]
    for batch in length_batches(sizes, batch_tokens):  # longest first
        rows = batch.tolist()
        for i, result in zip(rows, run_in_pieces(score, rows, device, does_not_fit), strict=True):
            scores[i] = result
    return [
        SentenceScore(i, scores[i].tolist(), tokenizers.target.id_to_piece(target_ids[i]), truncated[i])
        for i in range(len(sources))
    ]


def format_score(score: SentenceScore, *, normalized: bool = False, per_token: bool = False) -> str:
    """One output line: the log-probability, then (tab-separated, when asked) the log-probability per token
    and the space-separated log-probs of each target subword and of EOS; ending in a newline."""
    columns = [f"{score.log_prob:.4f}"]
    if normalized:
        columns.append(f"{score.normalized:.4f}")
    if per_token:
        columns.append(" ".join(f"{value:.4f}" for value in score.token_log_probs))
    return "\t".join(columns) + "\n"


__all__ = ["SentenceScore", "forced_log_probs", "format_score", "score_pairs"]
