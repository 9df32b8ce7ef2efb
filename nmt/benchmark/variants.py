"""The models the benchmark measures ours against: each computes what one of ours computes, another way.

- `StepLoopRNNSearch`: the straightforward RNNsearch of the same sizes, a reference.
- `TransformerWithoutCache`, `TransformerWithOneQuerySDPA`, `TanhRNNSearch`, `ContextEveryStepRNN` and
  `ReorderEverything`: one of our models with one fast path taken out, for the ablations.
- `marian_model`: Hugging Face's MarianMTModel at our Transformer's shape, a reference.
- `ctranslate2_model`, `ctranslate2_search`: our Transformer's own weights exported to CTranslate2 (float32 or
  int8) and decoded there, a reference.

Each is built from the same config as the model it stands beside, and the ablation variants load its weights,
so that decoding with both gives the same outputs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.data.batching import Batch
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.decoding.search import Hypothesis
from nmt.models.base import Seq2Seq, reorder_tree, source_pad_mask
from nmt.models.configs import RNNSearchConfig, TransformerConfig
from nmt.models.ctranslate2_export import save_spec, transformer_spec
from nmt.models.layers import embeddings
from nmt.models.rnn import RNNEncoderDecoder, RNNState
from nmt.models.rnnsearch import RNNSearch
from nmt.models.transformer import Transformer, TransformerEncoded

# ------------------------------------------------------------------------------------------------------------
# The step-loop RNNsearch (a reference)


@dataclass
class LoopEncoded:
    annotations: Tensor  # (B, S, 2H)
    pad_mask: Tensor  # (B, S) True at padding
    backward_first: Tensor  # (B, H)


@dataclass
class LoopState:
    hidden: Tensor  # (B, H)
    annotations: Tensor  # (B, S, 2H)
    pad_mask: Tensor  # (B, S) True at padding
    attention: Tensor | None = None  # (B, S)


class StepLoopRNNSearch(Seq2Seq):
    """The straightforward RNNsearch, the reference for ours: the same sizes and equations (Bahdanau et al.
    2014, App. A), written as a `GRUCell` loop that recomputes U_a h_j at every step, projects each input of
    every step separately (W_a s, the GRU's input and recurrent products, U_o s, V_o E y, C_o c) and
    applies the output layer step by step."""

    has_attention = True

    def __init__(self, config: RNNSearchConfig):
        super().__init__(config)
        E, H, A = config.embed_dim, config.hidden_dim, config.attention_dim
        self.src_embed, self.tgt_embed = embeddings(
            config.src_vocab_size, config.tgt_vocab_size, E, config.share_embeddings
        )
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.init_state = nn.Linear(H, H)
        self.W_a = nn.Linear(H, A, bias=False)
        self.U_a = nn.Linear(2 * H, A, bias=False)
        self.v_a = nn.Linear(A, 1, bias=False)
        self.cell = nn.GRUCell(E + 2 * H, H)
        self.maxout = config.maxout_dim > 0
        pre = 2 * config.maxout_dim if self.maxout else E
        self.U_o = nn.Linear(H, pre)
        self.V_o = nn.Linear(E, pre, bias=False)
        self.C_o = nn.Linear(2 * H, pre, bias=False)
        self.W_o = nn.Linear(config.maxout_dim if self.maxout else E, config.tgt_vocab_size)

    def encode(self, src: Tensor, src_lengths: Tensor) -> LoopEncoded:
        embedded = self.dropout(self.src_embed(src))  # (B, S, E)
        packed = pack_padded_sequence(embedded, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.encoder(packed)
        annotations, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))  # (B, S, 2H)
        return LoopEncoded(annotations, source_pad_mask(src), last[1])

    def start(self, encoded: LoopEncoded) -> LoopState:
        hidden = torch.tanh(self.init_state(encoded.backward_first))  # (B, H)
        return LoopState(hidden, encoded.annotations, encoded.pad_mask)

    def advance(self, embedded: Tensor, state: LoopState) -> tuple[Tensor, LoopState]:
        """Logits (B, V) and the next state from E y_{i-1} (B, E): eq. 4-6 and the output layer, one step."""
        keys = self.U_a(state.annotations)  # (B, S, A): recomputed at every step
        energy = torch.tanh(self.W_a(state.hidden)[:, None, :] + keys)  # (B, S, A)
        scores = self.v_a(energy).squeeze(-1).masked_fill(state.pad_mask, float("-inf"))  # (B, S)
        alpha = scores.softmax(dim=-1)  # (B, S)
        context = torch.bmm(alpha[:, None, :].to(state.annotations.dtype), state.annotations)[:, 0]  # (B, 2H)
        hidden = self.cell(torch.cat([embedded, context.to(embedded.dtype)], dim=-1), state.hidden)  # (B, H)
        pre = self.U_o(hidden) + self.V_o(embedded) + self.C_o(context)  # (B, 2l)
        readout = pre.unflatten(-1, (-1, 2)).amax(dim=-1) if self.maxout else torch.tanh(pre)
        logits = self.W_o(self.dropout(readout))  # (B, V)
        return logits, replace(state, hidden=hidden, attention=alpha)

    def forward(self, src: Tensor, src_lengths: Tensor, tgt_in: Tensor) -> Tensor:
        state = self.start(self.encode(src, src_lengths))
        embedded = self.dropout(self.tgt_embed(tgt_in))  # (B, T, E)
        logits = []
        for i in range(tgt_in.size(1)):
            step_logits, state = self.advance(embedded[:, i], state)
            logits.append(step_logits)
        return torch.stack(logits, dim=1)  # (B, T, V)

    def step(self, prev: Tensor, state: LoopState) -> tuple[Tensor, LoopState]:
        logits, state = self.advance(self.dropout(self.tgt_embed(prev)), state)
        return logits.float().log_softmax(dim=-1), state


# ------------------------------------------------------------------------------------------------------------
# Our models with one fast path taken out (the ablations)


@dataclass
class PrefixState:
    prefix: Tensor  # (B, t) the tokens fed so far, BOS first
    cross_keys: list[Tensor]  # per decoder layer (B, H, S, Dh)
    cross_values: list[Tensor]
    pad_mask: Tensor  # (B, S) True at padding
    attention: None = None


class TransformerWithoutCache(Seq2Seq):
    """A Transformer decoded without its key/value cache: every step runs the decoder over the whole prefix
    again (the encoder output and its cross-attention keys/values are still computed once)."""

    def __init__(self, model: Transformer):
        super().__init__(model.config)
        self.model = model

    def encode(self, src: Tensor, src_lengths: Tensor) -> TransformerEncoded:
        return self.model.encode(src, src_lengths)

    def start(self, encoded: TransformerEncoded) -> PrefixState:
        cross = [layer.cross_attn.keys_values(encoded.memory) for layer in self.model.decoder_layers]
        prefix = torch.zeros(encoded.memory.size(0), 0, dtype=torch.long, device=encoded.memory.device)
        return PrefixState(prefix, [k for k, _ in cross], [v for _, v in cross], encoded.pad_mask)

    def step(self, prev: Tensor, state: PrefixState) -> tuple[Tensor, PrefixState]:
        prefix = torch.cat([state.prefix, prev[:, None]], dim=1)  # (B, t + 1)
        states = self.model.decoder_states(prefix, state.cross_keys, state.cross_values, state.pad_mask)
        log_probs = self.model.logits(states[:, -1:])[:, 0].float().log_softmax(dim=-1)  # (B, V)
        return log_probs, replace(state, prefix=prefix)


class TransformerWithOneQuerySDPA(Transformer):
    """The Transformer with the one-query attention of its decoding steps on the CPU through SDPA, like the
    rest of its attention, instead of two batched products (see `nmt.models.transformer.attend`)."""

    one_query_sdpa = True


class TanhRNNSearch(RNNSearch):
    """RNNsearch with eq. 6 computed as written, v_a^T tanh(W_a s_{i-1} + U_a h_j), instead of the model's
    sigmoid form (same alignments)."""

    def align(self, query: Tensor, keys: Tensor, pad_mask: Tensor) -> Tensor:
        scores = self.v_a(torch.tanh(query[:, None, :] + keys)).squeeze(-1)  # (B, S)
        return scores.masked_fill(pad_mask, float("-inf")).softmax(dim=-1, dtype=torch.float32)


class ContextEveryStepRNN(RNNEncoderDecoder):
    """The rnn model stepping its decoder GRU on [E y_{i-1}; c], so that c is multiplied again at every step
    (the model's own `step` takes c's products from `start`). With c beside the reset gate, the default; with
    `context_in_reset`, `decoder_states` reads c's products from `start` too, and nothing differs."""

    def step(self, prev: Tensor, state: RNNState) -> tuple[Tensor, RNNState]:
        embedded = self.dropout(self.tgt_embed(prev))[:, None, :]  # (B, 1, E)
        states = self.decoder_states(embedded, state)  # (B, 1, H)
        logits = self.output(states[:, 0], embedded[:, 0], state.summary)  # (B, V)
        return logits.float().log_softmax(dim=-1), replace(state, hidden=states[:, 0].float())


class ReorderEverything(Seq2Seq):
    """A model whose `reorder` copies every row of the state, the source side included, at every step."""

    def __init__(self, model: Seq2Seq):
        super().__init__(model.config)
        self.model = model

    def encode(self, src: Tensor, src_lengths: Tensor) -> Any:
        return self.model.encode(src, src_lengths)

    def start(self, encoded: Any) -> Any:
        return self.model.start(encoded)

    def step(self, prev: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(prev, state)

    def reorder(self, state: Any, index: Tensor, same_sources: bool = False) -> Any:
        return reorder_tree(state, index)


# ------------------------------------------------------------------------------------------------------------
# MarianMTModel (a reference)


def marian_available() -> bool:
    """Whether `transformers` (the bench extra) can be imported."""
    try:
        importlib.import_module("transformers")
    except ImportError:
        return False
    return True


def marian_model(config: TransformerConfig) -> nn.Module:
    """A Hugging Face MarianMTModel of the same shape as our Transformer `config` (no download)."""
    # Deferred: transformers is optional (the bench extra) and slow to import.
    from transformers import MarianConfig, MarianMTModel

    marian = MarianConfig(
        vocab_size=config.tgt_vocab_size,
        d_model=config.d_model,
        encoder_layers=config.encoder_layers,
        decoder_layers=config.decoder_layers,
        encoder_attention_heads=config.num_heads,
        decoder_attention_heads=config.num_heads,
        encoder_ffn_dim=config.ffn_dim,
        decoder_ffn_dim=config.ffn_dim,
        activation_function="relu",
        dropout=config.dropout,
        attention_dropout=config.attention_dropout,
        activation_dropout=0.0,
        max_position_embeddings=config.max_positions,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        forced_eos_token_id=EOS_ID,
        decoder_start_token_id=BOS_ID,
    )
    return MarianMTModel(marian)


def marian_logits(model: nn.Module, batch: Batch) -> Tensor:
    """(B, T, V) teacher-forced logits of a MarianMTModel: the `logits_of` of its `Updater`."""
    mask = batch.src.ne(PAD_ID).long()  # (B, S) 1 at real tokens, Hugging Face's convention
    return model(input_ids=batch.src, attention_mask=mask, decoder_input_ids=batch.tgt_in).logits


# ------------------------------------------------------------------------------------------------------------
# CTranslate2 (a reference)


def ctranslate2_available() -> bool:
    """Whether `ctranslate2` (the ctranslate2 extra) can be imported."""
    try:
        importlib.import_module("ctranslate2")
    except ImportError:
        return False
    return True


def numbered_tokens(size: int) -> list[str]:
    """A vocabulary for the benchmark's random ids, which have no SentencePiece model: the special tokens'
    SentencePiece names at our special ids, "w<id>" for every other id."""
    names = {PAD_ID: "<pad>", UNK_ID: "<unk>", BOS_ID: "<s>", EOS_ID: "</s>"}
    return [names.get(i, f"w{i}") for i in range(size)]


def ctranslate2_model(model: Transformer, directory: Path, quantization: str) -> Path:
    """`model` exported to a CTranslate2 model directory (`nmt.models.ctranslate2_export`), its weights
    quantized to `quantization` ("float32", "int8")."""
    config = model.config
    spec = transformer_spec(
        model, numbered_tokens(config.src_vocab_size), numbered_tokens(config.tgt_vocab_size)
    )
    return save_spec(spec, directory, quantization)


def ctranslate2_translator(directory: Path, device: torch.device) -> Any:
    """A CTranslate2 `Translator` of an exported model on `device`, with as many threads as torch uses."""
    import ctranslate2  # deferred: optional (the ctranslate2 extra)

    return ctranslate2.Translator(
        str(directory),
        device=device.type,
        device_index=device.index or 0,
        intra_threads=torch.get_num_threads() if device.type == "cpu" else 0,
        inter_threads=1,
    )


def ctranslate2_search(
    translator: Any,
    vocab_size: int,
    src: Tensor,
    src_lengths: Tensor,
    beam_size: int,
    lengths: tuple[int, int],
    limit: int,
) -> Callable[[], list[Hypothesis]]:
    """One decoding run of `translator` over our batch `src` (ids + EOS; CTranslate2 appends the EOS itself):
    greedy for beam size 1, else beam search, every output held between `lengths` = (shortest, longest)
    tokens, EOS included (`min_decoding_length`, `max_decoding_length`), so that it does the work ours did.
    The hypotheses come back as our ids (of a joint vocabulary of `vocab_size`), cut to `limit` tokens (the
    most ours may produce without EOS)."""
    names = numbered_tokens(vocab_size)
    ids = {name: i for i, name in enumerate(names)}
    sources = [
        [names[i] for i in row[: n - 1]] for row, n in zip(src.tolist(), src_lengths.tolist(), strict=True)
    ]
    shortest, longest = lengths

    def search() -> list[Hypothesis]:
        results = translator.translate_batch(
            sources,
            beam_size=beam_size,
            min_decoding_length=shortest,
            max_decoding_length=longest,
            max_batch_size=0,  # the whole batch at once, as ours decodes it
        )
        return [
            Hypothesis(tokens=[ids.get(t, UNK_ID) for t in r.hypotheses[0]][:limit], score=0.0, log_prob=0.0)
            for r in results
        ]

    return search
