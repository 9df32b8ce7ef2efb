"""Validation during training: dev loss, perplexity and BLEU of greedy translations, on a fixed dev prefix.

The prefix is always the same (`TrainConfig.dev_sentences` first dev pairs), and so is the BLEU tokenizer
(`TrainConfig.bleu_tokenize`, by default the target language's, as `nmt eval` chooses it: nmt/languages.py),
so that dev scores are comparable over the whole run.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import sacrebleu
import torch

from nmt.config import DecodeConfig, TrainConfig
from nmt.data.batching import TokenizedPairs, collate, sorted_batches
from nmt.data.prepared import PreparedData
from nmt.data.tokenizer import Tokenizer
from nmt.decoding.search import greedy_search, max_output_lengths, source_limits
from nmt.errors import UserError
from nmt.languages import resolve_bleu_tokenizer, tokenizer_warning
from nmt.memory import run_in_pieces
from nmt.models.base import Seq2Seq
from nmt.training.state import Progress
from nmt.training.update import token_loss

logger = logging.getLogger(__name__)


@dataclass
class Validation:
    dev_loss: float  # cross-entropy per target token, without label smoothing
    perplexity: float
    bleu: float  # sacreBLEU corpus BLEU of greedy translations of the fixed dev prefix (DevSet.bleu_tokenize)


@dataclass
class DevSet:
    pairs: TokenizedPairs  # the whole dev split, encoded
    references: list[str]  # the target text of the scored prefix
    batches: list[np.ndarray]  # the prefix's example indices, in length-sorted batches
    bleu_tokenize: str  # sacreBLEU's tokenizer for dev BLEU (`dev_bleu_tokenizer`)


def dev_bleu_tokenizer(data: PreparedData, config: TrainConfig) -> str:
    """The tokenizer of dev BLEU: `config.bleu_tokenize`, else the one for the data's target language; a
    `UserError` at once when it is unknown or needs a package that is not installed."""
    return resolve_bleu_tokenizer(config.bleu_tokenize, data.target_lang, option="--bleu-tokenize")


def dev_bleu(hypotheses: list[str], references: list[str], tokenize: str) -> float:
    """sacreBLEU's corpus BLEU of the dev translations, tokenized by `tokenize`."""
    return sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenize).score


def load_dev_set(data: PreparedData, config: TrainConfig) -> DevSet:
    """The dev prefix that validation scores, batched as for decoding, and the tokenizer of its BLEU."""
    tokenize = dev_bleu_tokenizer(data, config)
    warning = tokenizer_warning(tokenize, data.target_lang)
    if warning:
        logger.warning("dev %s", warning)
    logger.info("dev BLEU tokenizer: %s (target language %s)", tokenize, data.target_lang)
    pairs = TokenizedPairs.from_dataset(data.split("dev"))
    references = data.text("dev", "target")
    if len(references) != len(pairs):
        raise UserError(
            f"{data.path}: the dev split has {len(pairs)} pairs but {len(references)} reference lines"
        )
    count = len(pairs) if config.dev_sentences == 0 else min(len(pairs), config.dev_sentences)
    if count == 0:
        raise UserError(f"{data.path} has an empty dev split; validation needs dev sentences")
    # Without gradients a batch needs far less memory than in training: batch as for decoding.
    budget = max(config.batch_tokens, DecodeConfig().batch_tokens)
    return DevSet(pairs, references[:count], sorted_batches(pairs, np.arange(count), budget), tokenize)


@torch.no_grad()
def validate(
    model: Seq2Seq, dev: DevSet, tokenizer: Tokenizer, device: torch.device, autocast: bool
) -> Validation:
    """Dev loss, perplexity and BLEU of greedy translations (decoded with `tokenizer`) of the dev prefix.

    A batch that runs out of accelerator memory is split (`run_in_pieces`); a sentence that never fits is
    scored as an empty translation, with a warning.
    """
    decode = DecodeConfig()
    _, max_output_len = source_limits(model)
    loss_sum = torch.zeros((), device=device)
    tokens = 0
    hypotheses = [""] * len(dev.references)

    def score(indices: list[int]) -> list[str]:
        """Greedy translations of dev pairs `indices`; their loss is added only if the batch fits."""
        nonlocal loss_sum, tokens
        batch = collate(dev.pairs, np.asarray(indices)).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
            found = greedy_search(
                model,
                batch.src,
                batch.src_lengths,
                max_len_a=decode.max_len_a,
                max_len_b=decode.max_len_b,
                max_output_len=max_output_len,
            )
        loss_sum += token_loss(logits, batch.tgt_out, label_smoothing=0.0)
        tokens += batch.num_tokens
        return [tokenizer.decode(hypothesis.tokens) for hypothesis in found]

    def does_not_fit(index: int) -> str:
        logger.warning("dev sentence %d does not fit in memory even alone: scored as empty", index + 1)
        return ""

    model.eval()
    try:
        for indices in dev.batches:
            indices = indices.tolist()
            texts = run_in_pieces(score, indices, device, does_not_fit, what="dev batch")
            for index, text in zip(indices, texts, strict=True):
                hypotheses[index] = text
    finally:
        model.train()
    dev_loss = float(loss_sum) / max(1, tokens)
    bleu = dev_bleu(hypotheses, dev.references, dev.bleu_tokenize)
    return Validation(dev_loss=dev_loss, perplexity=math.exp(min(dev_loss, 100.0)), bleu=bleu)


@torch.no_grad()
def estimate_validation_seconds(
    model: Seq2Seq,
    dev: DevSet,
    device: torch.device,
    autocast: bool,
    clock: Callable[[], float],
    share: float = 0.1,
) -> float:
    """What `validate` should take now, in seconds of `clock`, from running a `share` of it.

    Validation time is mostly steps: greedy decoding steps and, for the recurrent models, the steps of the dev
    loss's forward pass, each costing about the same within a batch (a Transformer's cached decoding step
    attends over more positions as it goes, little next to its feed-forward work at these lengths). So each
    validation batch, whole, runs the first `share` of its greedy steps and of its target, and that time is
    scaled to all of its steps. Whole batches keep the cost of a step at the batch's size, which a sample of
    fewer sentences would not: on a busy CPU a small batch costs far more per sentence than a large one, and
    on a GPU hardly less. A first, untimed pass of one step per batch pays first what only the first run in a
    process costs (memory the allocator has yet to take from the system, kernels set up for new shapes),
    which the scaling would otherwise multiply. The estimate errs long rather than short: the scaling also
    multiplies what happens once per batch (the encoder, the Transformer's parallel forward pass), and it
    counts every sentence to the length limit, where an untrained model goes but a trained one often stops
    earlier.
    """
    decode = DecodeConfig()
    _, max_output_len = source_limits(model)
    seconds = 0.0

    def run_share(indices: list[int], warm_up: bool) -> list[None]:
        nonlocal seconds
        batch = collate(dev.pairs, np.asarray(indices)).to(device)
        limits = max_output_lengths(batch.src_lengths, decode.max_len_a, decode.max_len_b, max_output_len)
        steps = int(limits.max()) + 1  # as greedy_search takes them
        probe = 1 if warm_up else max(1, math.ceil(share * steps))
        start = clock()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch.src, batch.src_lengths, batch.tgt_in[:, :probe])
            greedy_search(model, batch.src, batch.src_lengths, max_len_a=0.0, max_len_b=probe - 1)
        float(token_loss(logits, batch.tgt_out[:, :probe], label_smoothing=0.0))  # waits for the device
        if not warm_up:
            seconds += (clock() - start) * steps / probe
        return [None] * len(indices)

    model.eval()
    try:
        for warm_up in (True, False):
            for indices in dev.batches:
                run = functools.partial(run_share, warm_up=warm_up)
                run_in_pieces(run, indices.tolist(), device, lambda index: None, what="dev batch")
    finally:
        model.train()
    start = clock()
    dev_bleu(dev.references, dev.references, dev.bleu_tokenize)  # as costly as scoring the translations
    return seconds + clock() - start


def validation_entry(
    result: Validation,
    *,
    progress: Progress,
    minutes: float,
    lr: float,
    train_loss: float | None,
    speed: float | None,
    padding: float | None,
    scheduled: bool,
    improved: bool,
) -> dict:
    """The log.jsonl entry of a validation at `progress`, also logged as a line.

    `scheduled` is false for the validation at the end of a session, which counts for neither the best BLEU,
    the plateau schedule nor early stopping; when it beat them all (`improved`), its model is in best.pt until
    the run goes on ("provisional_best")."""
    best_bleu = None if progress.best_bleu == -math.inf else progress.best_bleu  # of scheduled ones: null
    entry = {
        "step": progress.step,
        "epoch": progress.epoch,
        "minutes": round(minutes, 3),
        "train_loss": train_loss,
        "dev_loss": result.dev_loss,
        "dev_ppl": result.perplexity,
        "dev_bleu": result.bleu,
        "best_bleu": best_bleu,
        "lr": lr,
        "tokens_per_s": speed,
        "padding": padding,
        "scheduled": scheduled,
    }
    if not scheduled:
        entry["provisional_best"] = improved
    logger.info(
        "step %d%s: dev loss %.3f, ppl %.2f, BLEU %.2f (best %s), lr %.2e%s",
        progress.step,
        "" if scheduled else " (end)",
        result.dev_loss,
        result.perplexity,
        result.bleu,
        "none" if best_bleu is None else f"{best_bleu:.2f}",
        lr,
        "; in best.pt until the run goes on" if not scheduled and improved else "",
    )
    return entry
