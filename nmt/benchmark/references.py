"""References: ours against what a user might otherwise pick, at the same sizes.

- RNNsearch against `StepLoopRNNSearch`, the straightforward step loop of the same equations: training at
  the small and the paper preset, and greedy decoding;
- the Transformer against Hugging Face's MarianMTModel of the same shape (when `transformers` is installed):
  training at both presets, and our beam search against `MarianMTModel.generate`;
- the Transformer against CTranslate2 running its own weights, exported in float32 and in int8 (when
  `ctranslate2` is installed): greedy and beam search at both presets, CTranslate2's output lengths held to
  ours, with the peak memory of each engine alone.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from nmt.benchmark.comparisons import Contender, compare_with_each, decoding_contender
from nmt.benchmark.decoding import decode, decoding_row, output_limit
from nmt.benchmark.report import DecodingResult
from nmt.benchmark.session import BenchSession, Search
from nmt.benchmark.timing import Timing, peak_memory_mb, reset_peak_memory
from nmt.benchmark.variants import (
    StepLoopRNNSearch,
    ctranslate2_available,
    ctranslate2_model,
    ctranslate2_search,
    ctranslate2_translator,
    marian_available,
    marian_logits,
    marian_model,
)
from nmt.config import DecodeConfig
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.search import Hypothesis

logger = logging.getLogger(__name__)

RNNSEARCH, TRANSFORMER = "rnnsearch", "transformer"  # the architectures that have a reference


def add_references(session: BenchSession) -> None:
    """Every reference comparison, added to `session.references`."""
    _step_loop_rnnsearch(session)
    if marian_available():
        _marian(session)
    else:
        session.notes.append(
            "transformers is not importable: the MarianMTModel reference was skipped "
            "(pip install -e '.[bench]')"
        )
    if ctranslate2_available():
        add_ctranslate2_references(session)
    else:
        session.notes.append(
            "ctranslate2 is not importable: the CTranslate2 reference was skipped (pip install -e '.[bench]')"
        )


def _presets(session: BenchSession, arch: str) -> list[str]:
    """`arch`'s small and paper presets that the settings ask for."""
    s = session.settings
    return [p for p in (s.small_presets.get(arch), s.paper_presets.get(arch)) if p]


def _step_loop_rnnsearch(session: BenchSession) -> None:
    """Ours (keys U_a h_j once per sentence, the input products of all steps in one go) against the
    straightforward step loop of the same sizes: training, then greedy decoding."""
    s = session.settings
    presets = _presets(session, RNNSEARCH)

    def make_loop(preset: str) -> nn.Module:
        torch.manual_seed(s.seed)
        return StepLoopRNNSearch(session.model_config(RNNSEARCH, preset))

    for preset in presets:
        batch = session.batch(session.sizes(preset)[0])
        ours = session.setup("nmt rnnsearch", RNNSEARCH, preset, session.maker(RNNSEARCH, preset), batch)
        loop = session.setup("step-loop RNNsearch", RNNSEARCH, preset, partial(make_loop, preset), batch)
        session.references.append(session.compare_training(f"rnnsearch {preset} training", ours, loop))
        del ours, loop
    if not presets:
        return
    preset = presets[0]
    ours_model = session.build(RNNSEARCH, preset).to(session.device).eval()
    loop_model = make_loop(preset).to(session.device).eval()
    src, src_lengths = session.on_device(session.decode_batch)
    session.references.append(
        session.compare_searches(
            f"rnnsearch {preset} greedy decoding",
            f"greedy search of {src.size(0)} sentences",
            decoding_contender("nmt rnnsearch", partial(decode, ours_model, src, src_lengths, 1), False),
            decoding_contender(
                "step-loop RNNsearch", partial(decode, loop_model, src, src_lengths, 1), False
            ),
        )
    )


def _marian(session: BenchSession) -> None:
    """Our Transformer against a MarianMTModel of the same shape: training at each preset, then decoding."""
    s = session.settings
    presets = _presets(session, TRANSFORMER)

    def make_marian(preset: str) -> nn.Module:
        torch.manual_seed(s.seed)
        return marian_model(session.model_config(TRANSFORMER, preset))

    for preset in presets:
        batch = session.batch(session.sizes(preset)[0])
        ours = session.setup(
            "nmt transformer", TRANSFORMER, preset, session.maker(TRANSFORMER, preset), batch
        )
        theirs = session.setup(
            "transformers MarianMTModel",
            TRANSFORMER,
            preset,
            partial(make_marian, preset),
            batch,
            logits_of=marian_logits,
        )
        session.references.append(session.compare_training(f"transformer {preset} training", ours, theirs))
        del ours, theirs
    if presets:
        _beam_search_against_generate(session, presets[0], make_marian(presets[0]))


def _beam_search_against_generate(session: BenchSession, preset: str, marian: nn.Module) -> None:
    """Our beam search against MarianMTModel.generate: same sentences, beam size and length limit."""
    s = session.settings
    ours = session.build(TRANSFORMER, preset).to(session.device).eval()
    theirs = marian.to(session.device).eval()
    src, src_lengths = session.on_device(session.decode_batch)
    mask = src.ne(PAD_ID).long()  # (B, S) 1 at real tokens, Hugging Face's convention
    limit = output_limit(src_lengths)

    @torch.inference_mode()
    def generate() -> list[Hypothesis]:
        # At most `limit` tokens and then EOS (forced at the last position), like ours: limit + 1 new tokens.
        out = theirs.generate(
            input_ids=src,
            attention_mask=mask,
            num_beams=s.beam_size,
            max_new_tokens=limit + 1,
            length_penalty=DecodeConfig().length_penalty,
            do_sample=False,
            suppress_tokens=[PAD_ID, BOS_ID],  # ours never produces them either
        )[:, 1:]  # (B, L) without the decoder start token, PAD after EOS
        return [
            Hypothesis(tokens=[t for t in row if t not in (PAD_ID, EOS_ID)], score=0.0, log_prob=0.0)
            for row in out.tolist()
        ]

    session.references.append(
        session.compare_searches(
            f"transformer {preset} beam search",
            f"beam {s.beam_size} over {src.size(0)} sentences, up to {limit} tokens + EOS",
            decoding_contender(
                "nmt beam_search", partial(decode, ours, src, src_lengths, s.beam_size), same_model=False
            ),
            decoding_contender("transformers MarianMTModel.generate", generate, same_model=False),
        )
    )


# ------------------------------------------------------------------------------------------------------------
# CTranslate2

CT2_QUANTIZATIONS = ("float32", "int8")


def add_ctranslate2_references(session: BenchSession) -> None:
    """Our Transformer against CTranslate2 decoding the same weights (exported by
    `nmt.models.ctranslate2_export`, float32 and int8): greedy and beam search at each preset."""
    if session.cuda:
        session.notes.append(
            "CTranslate2 allocates GPU memory outside torch: its rows' peak memory is not measured on CUDA"
        )
    with tempfile.TemporaryDirectory(prefix="nmt-bench-ctranslate2-") as directory:
        for preset in _presets(session, TRANSFORMER):
            model = session.build(TRANSFORMER, preset).eval()
            exported = {
                q: ctranslate2_model(model, Path(directory) / f"{preset}-{q}", q) for q in CT2_QUANTIZATIONS
            }
            del model
            for beam_size in (1, session.settings.beam_size):
                _against_ctranslate2(session, preset, exported, beam_size)


def _against_ctranslate2(
    session: BenchSession, preset: str, exported: dict[str, Path], beam_size: int
) -> None:
    """One search with ours and with each CTranslate2 export: first each engine's peak memory with only its
    own model loaded, then all of them timed in turn; a comparison and a decoding-table row for each export
    (and one for ours at a preset that the decoding table lacks)."""
    s = session.settings
    search = "greedy" if beam_size == 1 else f"beam {beam_size}"
    ours_peak, found = _alone(session, lambda: _ours(session, preset, beam_size))
    produced = [len(h.tokens) + 1 for h in found]  # with EOS: what CTranslate2 is held to
    lengths = (min(produced), max(produced))
    peaks = [
        float("nan") if session.cuda else _alone(session, partial(_theirs, session, d, beam_size, lengths))[0]
        for d in exported.values()
    ]
    candidate = decoding_contender(f"nmt {search}", _ours(session, preset, beam_size), same_model=True)
    contenders = [
        decoding_contender(f"CTranslate2 {q}", _theirs(session, d, beam_size, lengths), same_model=True)
        for q, d in exported.items()
    ]
    work = (
        f"{search} over {s.decode_sentences} sentences, {lengths[0] - 1} to {lengths[1] - 1} tokens + EOS as "
        "ours produced (CTranslate2 held to those lengths)"
    )
    names = [f"transformer {preset} {search} against {c.label}" for c in contenders]
    logger.info("comparing transformer %s %s against CTranslate2", preset, search)
    comparisons = compare_with_each(
        names, work, candidate, contenders, session.device, s.decode_warmup, s.decode_repeats
    )
    session.references.extend(comparisons)
    rows = [
        (c.label, c, comparison.baseline_s, peak, precision)
        for c, comparison, peak, precision in zip(contenders, comparisons, peaks, exported, strict=True)
    ]
    if preset not in s.small_presets.values():  # the decoding table has ours at the small presets only
        rows.insert(0, (TRANSFORMER, candidate, comparisons[0].candidate_s, ours_peak, "float32"))
    for model, contender, seconds, peak, precision in rows:
        session.decoding.append(
            _decoding_row(session, model, preset, beam_size, contender, seconds, peak, precision)
        )


def _ours(session: BenchSession, preset: str, beam_size: int) -> Search:
    """Our search over the decoding batch, with the preset's seeded weights loaded now."""
    model = session.build(TRANSFORMER, preset).to(session.device).eval()
    src, src_lengths = session.on_device(session.decode_batch)
    return partial(decode, model, src, src_lengths, beam_size)


def _theirs(session: BenchSession, directory: Path, beam_size: int, lengths: tuple[int, int]) -> Search:
    """CTranslate2's search over the decoding batch with the export in `directory`, loaded now."""
    src, src_lengths = session.on_device(session.decode_batch)
    vocab = session.settings.vocab_size
    limit = output_limit(session.decode_batch.src_lengths)
    translator = ctranslate2_translator(directory, session.device)
    return ctranslate2_search(translator, vocab, src, src_lengths, beam_size, lengths, limit)


def _alone(session: BenchSession, load: Callable[[], Search]) -> tuple[float, list[Hypothesis]]:
    """The peak memory (`peak_memory_mb`) of one run of the search that `load` loads, with no other model of
    this comparison loaded, and what it found."""
    search = load()
    reset_peak_memory(session.device)  # garbage collected and heap trimmed: the last engine's model goes
    found = search()
    return peak_memory_mb(session.device), found


def _decoding_row(
    session: BenchSession,
    model: str,
    preset: str,
    beam_size: int,
    contender: Contender,
    seconds: Timing,
    peak: float,
    precision: str,
) -> DecodingResult:
    """A row of the decoding table from a comparison's timing of `contender` and its own peak memory
    (`precision`: the weights it multiplies by, float32 or int8)."""
    batch = session.decode_batch
    return decoding_row(model, preset, batch, beam_size, contender.tokens(), seconds, peak, precision)
