"""The one contract every architecture implements.

Everything outside `nmt/models/` (training, decoding, evaluation) uses only this interface:

    forward(src, src_lengths, tgt_in) -> logits (B, T, V)      teacher forcing, for training
    encode(src, src_lengths) -> Encoded                        run the encoder once
    start(encoded) -> State                                    decoder state before the first target token
    step(prev, state) -> (log_probs (B, V), State)             one decoder step, incremental
    reorder(state, index, same_sources=False) -> State         batch-first index_select, for beam search
    attention_maps(src, src_lengths, tgt_in) -> AttentionMaps  every attention weight, for plots and alignment

State goes in and comes back out: a model keeps no per-batch state on `self`. A state is a dataclass of
batch-first tensors (or lists/tuples of them), so the default `reorder` can select rows of every one of them;
beam search also uses `reorder` with a repeated index to expand each sentence into its beams.

State fields computed from the source sentence alone (the encoder's output, keys projected from it, the
padding mask) are declared with `source_side()`. They are the same in every beam of a sentence, so when beam
search only shuffles hypotheses among the beams of each sentence (`same_sources=True`) they are left where
they are instead of being copied at every step (as fairseq skips reordering its static encoder-decoder keys).

Conventions shared by all models:
- `src` (B, S) holds source ids followed by EOS and then PAD; `src_lengths` (B,) counts the real tokens
  including EOS. Batches are right-padded.
- `tgt_in` (B, T) is BOS followed by the target ids (teacher forcing input); the training target is the same
  ids followed by EOS.
- `pad_mask` is True at padding.
- `step` returns float32 log-probabilities, whatever the autocast dtype.
- The state exposes the decoder's attention over the source for the token just produced as
  `state.attention` (B, S), or None for a model without attention.
- `attention_maps` is for looking at attention, never for decoding: search does not compute it, so that
  translating without plots costs nothing extra. It reruns a given target through the model (teacher
  forcing) and returns every map the architecture has.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from nmt.data.special import BOS_ID, EOS_ID, PAD_ID


def source_side() -> Any:
    """Declare a state dataclass field as computed from the source alone (see the module docstring)."""
    return dataclasses.field(metadata={"source_side": True})


def is_source_side(field: dataclasses.Field) -> bool:
    return field.metadata.get("source_side", False)


def reorder_tree(value: Any, index: Tensor, same_sources: bool = False) -> Any:
    """Select rows `index` along dim 0 of every tensor in a (nested) dataclass, list, tuple or dict.

    With `same_sources`, dataclass fields declared `source_side()` are kept as they are: the caller promises
    that each new row i holds the same source sentence as old row index[i], so their rows would not change.
    """
    if isinstance(value, Tensor):
        return value.index_select(0, index)
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    if dataclasses.is_dataclass(value):
        changed = {
            f.name: reorder_tree(getattr(value, f.name), index, same_sources)
            for f in dataclasses.fields(value)
            if not (same_sources and is_source_side(f))
        }
        return dataclasses.replace(value, **changed)
    if isinstance(value, (list, tuple)):
        return type(value)(reorder_tree(item, index, same_sources) for item in value)
    if isinstance(value, dict):
        return {key: reorder_tree(item, index, same_sources) for key, item in value.items()}
    raise TypeError(f"cannot reorder a {type(value).__name__} in a decoder state")


@dataclass
class AttentionMaps:
    """Every attention weight of one teacher-forced pass: per layer, one float32 (B, heads, queries, keys).

    - `cross`: the decoder's attention over the source, per decoder layer (B, heads, T, S). Row i is what
      position i of `tgt_in` read while predicting target token i (the one after tgt_in[:, i]).
    - `encoder`: the encoder's self-attention, per encoder layer (B, heads, S, S).
    - `decoder`: the decoder's masked self-attention, per decoder layer (B, heads, T, T), zero above the
      diagonal.

    A kind the model does not have is an empty list (RNNsearch: one cross layer with one head, nothing else;
    the RNN encoder-decoder: nothing). Padded keys get exactly zero weight; rows of padded queries are
    meaningless and are cut by the caller, who knows the lengths.
    """

    cross: list[Tensor] = dataclasses.field(default_factory=list)
    encoder: list[Tensor] = dataclasses.field(default_factory=list)
    decoder: list[Tensor] = dataclasses.field(default_factory=list)


class Seq2Seq(nn.Module):
    """Base class of the encoder-decoder models. Subclasses implement forward, encode, start and step."""

    #: Whether `state.attention` holds real encoder-decoder attention weights.
    has_attention: ClassVar[bool] = False
    #: Whether torch.compile speeds up training (not for models that loop over time steps in Python).
    compiles_well: ClassVar[bool] = False
    #: The layer of `attention_maps().cross` whose mean over heads is `state.attention`, the model's own
    #: alignment (a model with several decoder layers chooses one; `nmt eval --alignment` scores it).
    alignment_layer: int = -1

    def __init__(self, config):
        super().__init__()
        self.config = config

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for `tgt_in` (B, T)."""
        raise NotImplementedError

    def encode(self, src: Tensor, src_lengths: Tensor):
        """Run the encoder over `src` (B, S)."""
        raise NotImplementedError

    def start(self, encoded) -> Any:
        """The decoder state before the first target token (BOS is fed by the first `step`)."""
        raise NotImplementedError

    def step(self, prev: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed `prev` (B,) token ids; return float32 log-probs (B, V) of the next token and the new state."""
        raise NotImplementedError

    def reorder(self, state: Any, index: Tensor, same_sources: bool = False) -> Any:
        """Keep rows `index` (a LongTensor on the state's device) of every tensor in the state.

        `same_sources=True` promises that new row i translates the same source sentence as old row index[i]
        (beams reordered within each sentence), so that `source_side()` fields need not move.
        """
        return reorder_tree(state, index, same_sources)

    def attention_maps(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> AttentionMaps:
        """Every attention weight while reading `tgt_in` (B, T) as the translation of `src` (teacher forcing).

        This default feeds `tgt_in` through `step` and stacks `state.attention`: one layer, one head, cross
        attention only. An architecture with more maps (self-attention, several heads) overrides it. Call it
        under `torch.no_grad()` in eval mode; it is as slow as decoding the target once.
        """
        if not self.has_attention:
            return AttentionMaps()
        state = self.start(self.encode(src, src_lengths))
        rows = []
        for i in range(tgt_in.size(1)):
            _, state = self.step(tgt_in[:, i], state)
            rows.append(state.attention)
        return AttentionMaps(cross=[torch.stack(rows, dim=1)[:, None].float()])  # [(B, 1, T, S)]

    def max_positions(self) -> int | None:
        """The most tokens the model takes on either side (the EOS included), or None for no limit."""
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def source_pad_mask(src: Tensor) -> Tensor:
    """(B, S) True at padding."""
    return src.eq(PAD_ID)


def add_bos(tgt: Tensor) -> Tensor:
    """Teacher-forcing input: BOS followed by the target ids without their last position."""
    bos = torch.full_like(tgt[:, :1], BOS_ID)
    return torch.cat([bos, tgt[:, :-1]], dim=1)


__all__ = [
    "AttentionMaps",
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "Seq2Seq",
    "add_bos",
    "is_source_side",
    "reorder_tree",
    "source_pad_mask",
    "source_side",
]
