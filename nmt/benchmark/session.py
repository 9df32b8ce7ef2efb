"""One benchmark run's shared state: the settings and the device, the seeded inputs and models, the training
setups and comparisons built from them, and the results so far. `run.py`, `references.py` and
`ablations.py` add their measurements to it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn

from nmt.benchmark.comparisons import Contender, compare, decoding_contender, training_contender
from nmt.benchmark.decoding import decode
from nmt.benchmark.inputs import bench_model_config, random_batch
from nmt.benchmark.report import Comparison, DecodingResult, TrainingResult
from nmt.benchmark.settings import BenchSettings
from nmt.benchmark.timing import bf16_peak_flops
from nmt.benchmark.training import LogitsOf, TrainingSetup, count_training_flops, training_setup
from nmt.data.batching import Batch
from nmt.decoding.search import Hypothesis
from nmt.devices import resolve_device
from nmt.models import ModelConfig, build_model, train_config
from nmt.models.base import Seq2Seq
from nmt.training.update import teacher_forced_logits

logger = logging.getLogger(__name__)

Search = Callable[[], list[Hypothesis]]  # one decoding run: the best hypothesis of each sentence


class BenchSession:
    """One benchmark run: the settings, the device, and the results so far."""

    def __init__(self, settings: BenchSettings):
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.cuda = self.device.type == "cuda"
        self.peak = bf16_peak_flops(torch.cuda.get_device_name(self.device)) if self.cuda else None
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.notes: list[str] = []
        self.training: list[TrainingResult] = []
        self.decoding: list[DecodingResult] = []
        self.references: list[Comparison] = []
        self.ablations: list[Comparison] = []
        self.decode_batch = self.batch(settings.decode_sentences)  # every decoding measurement decodes it

    # --------------------------------------------------------------------------------------------------------
    # Inputs and models

    def batch(self, sentences: int) -> Batch:
        """The next random batch of `sentences` at the settings' lengths and vocabulary."""
        s = self.settings
        return random_batch(sentences, s.source_len, s.target_len, s.vocab_size, self.generator)

    def on_device(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(src, src_lengths) of `batch` on the device, what a search reads."""
        return batch.src.to(self.device), batch.src_lengths.to(self.device)

    def model_config(self, arch: str, preset: str) -> ModelConfig:
        return bench_model_config(arch, preset, self.settings.vocab_size)

    def build(self, arch: str, preset: str) -> nn.Module:
        """`arch` at `preset`, initialised from the settings' seed: the same weights every time."""
        torch.manual_seed(self.settings.seed)
        return build_model(arch, self.model_config(arch, preset))

    def build_variant(self, variant: type[nn.Module], arch: str, preset: str) -> nn.Module:
        """`variant` (a subclass of `arch`'s model computing something another way) with `build`'s weights."""
        model = variant(self.model_config(arch, preset))
        model.load_state_dict(self.build(arch, preset).state_dict())
        return model

    def maker(self, arch: str, preset: str) -> Callable[[], nn.Module]:
        return lambda: self.build(arch, preset)

    # --------------------------------------------------------------------------------------------------------
    # Training

    def setup(
        self,
        label: str,
        arch: str,
        preset: str,
        make: Callable[[], nn.Module],
        batch: Batch,
        logits_of: LogitsOf = teacher_forced_logits,
        bf16: bool | None = None,
        fused: bool | None = None,
        compiled: bool = False,
    ) -> TrainingSetup:
        """The model `make()` trained like `arch` at `preset` (its training config), with the trainer's
        choices unless told otherwise: bf16 autocast and fused AdamW on CUDA. `label` names it in a
        comparison."""
        bf16 = self.cuda if bf16 is None else bf16
        fused = self.cuda if fused is None else fused
        config = train_config(arch, preset)
        setup = training_setup(
            arch, label, preset, make(), logits_of, config, batch, self.device, bf16, fused, compiled
        )
        for _ in range(self.settings.compile_warmup if compiled else 0):
            setup.update()  # the first updates compile
        return setup

    def sizes(self, preset: str) -> tuple[int, int]:
        """(sentences, timed repeats) of a training measurement at `preset`."""
        s = self.settings
        if preset in s.paper_presets.values():
            return s.paper_train_sentences, s.paper_train_repeats
        return s.train_sentences, s.train_repeats

    def flops(
        self, make: Callable[[], nn.Module], logits_of: LogitsOf, label_smoothing: float, sentences: int
    ) -> int:
        """Model FLOPs of one update of `sentences` sentences, counted on two and scaled (they are linear in
        the batch size at fixed lengths)."""
        return count_training_flops(make(), logits_of, self.batch(2), label_smoothing) * sentences // 2

    # --------------------------------------------------------------------------------------------------------
    # Comparisons

    def compare_training(self, name: str, candidate: TrainingSetup, baseline: TrainingSetup) -> Comparison:
        """One update of each setup, timed in turn, at the candidate preset's number of repeats."""
        s, batch = self.settings, candidate.batch
        work = f"one update of {batch.src.size(0)} x {batch.tgt_in.size(1)} target tokens"
        logger.info("comparing %s", name)
        return compare(
            name,
            work,
            training_contender(candidate),
            training_contender(baseline),
            self.device,
            s.train_warmup,
            self.sizes(candidate.preset)[1],
        )

    def compare_searches(self, name: str, work: str, candidate: Contender, baseline: Contender) -> Comparison:
        """Two decoding contenders timed in turn at the settings' decoding warmup and repeats."""
        s = self.settings
        logger.info("comparing %s", name)
        return compare(name, work, candidate, baseline, self.device, s.decode_warmup, s.decode_repeats)

    def compare_decoding(
        self, name: str, work: str, candidate: tuple[str, Search], baseline: tuple[str, Search]
    ) -> Comparison:
        """Two (label, search) pairs with the same weights, timed in turn; `agreement`: outputs that match."""
        return self.compare_searches(
            name,
            work,
            decoding_contender(*candidate, same_model=True),
            decoding_contender(*baseline, same_model=True),
        )

    def compare_beam_search(
        self, name: str, candidate: tuple[str, Seq2Seq], baseline: tuple[str, Seq2Seq]
    ) -> Comparison:
        """Beam search over the decoding batch with two (label, model) pairs of the same weights."""
        beam_size = self.settings.beam_size
        src, src_lengths = self.on_device(self.decode_batch)
        return self.compare_decoding(
            name,
            f"beam {beam_size} over {src.size(0)} sentences",
            *(
                (label, partial(decode, model, src, src_lengths, beam_size))
                for label, model in (candidate, baseline)
            ),
        )
