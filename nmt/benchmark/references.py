"""References: ours against what a user might otherwise pick, at the same sizes.

- RNNsearch against `StepLoopRNNSearch`, the straightforward step loop of the same equations: training at
  the small and the paper preset, and greedy decoding;
- the Transformer against Hugging Face's MarianMTModel of the same shape (when `transformers` is installed):
  training at both presets, and our beam search against `MarianMTModel.generate`.
"""

from __future__ import annotations

import logging
from functools import partial

import torch
from torch import nn

from nmt.benchmark.comparisons import decoding_contender
from nmt.benchmark.decoding import decode, output_limit
from nmt.benchmark.session import BenchSession
from nmt.benchmark.variants import StepLoopRNNSearch, marian_available, marian_logits, marian_model
from nmt.config import DecodeConfig
from nmt.data.special import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.search import Hypothesis

logger = logging.getLogger(__name__)

RNNSEARCH, TRANSFORMER = "rnnsearch", "transformer"  # the architectures that have a reference


def add_references(session: BenchSession) -> None:
    """Every reference comparison, added to `session.references`."""
    _step_loop_rnnsearch(session)
    if not marian_available():
        session.notes.append(
            "transformers is not importable: the MarianMTModel reference was skipped "
            "(pip install -e '.[bench]')"
        )
        return
    _marian(session)


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
