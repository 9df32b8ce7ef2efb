"""The whole benchmark: every measurement that the settings ask for, in one report.

    report = run_benchmark(quick_settings("cpu"), command="python -m nmt.cli.bench --quick")
    write_report(report, path)    # nmt.benchmark.report

Training and decoding tables first, then the references and the ablations (each adds its comparisons to the
session), then the padding of the trainer's batches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from nmt.benchmark.ablations import add_ablations
from nmt.benchmark.decoding import measure_decoding
from nmt.benchmark.padding import corpus_name, measure_padding, prepared_pairs, synthetic_pairs
from nmt.benchmark.references import add_references
from nmt.benchmark.report import BenchReport, PaddingResult, jsonable
from nmt.benchmark.session import BenchSession
from nmt.benchmark.settings import BenchSettings
from nmt.benchmark.timing import describe_machine, library_versions, load_average, memory_measure
from nmt.benchmark.training import measure_training
from nmt.data.batching import TokenizedPairs
from nmt.data.prepared import PreparedData
from nmt.models import train_config
from nmt.training.update import teacher_forced_logits

logger = logging.getLogger(__name__)


def run_benchmark(settings: BenchSettings, command: str) -> BenchReport:
    """Run every measurement that `settings` asks for and return them with the machine and versions."""
    for data_dir in settings.data_dirs:  # a wrong directory is an error now, not after the measurements
        PreparedData.open(data_dir)
    started, clock, load = time.strftime("%Y-%m-%dT%H:%M:%S%z"), time.perf_counter(), load_average()
    session = BenchSession(settings)
    measure = memory_measure(session.device)
    _train_every_preset(session)
    _decode_every_small_preset(session)
    if settings.references:
        add_references(session)
    if settings.ablations:
        add_ablations(session)
    padding = _padding(settings)
    notes = session.notes
    if settings.quick:
        notes.insert(
            0,
            f"quick mode: the small presets train on {settings.train_sentences} sentences x "
            f"{settings.target_len} target tokens with {settings.train_repeats} timed updates; the paper "
            f"presets on {settings.paper_train_sentences} sentences with {settings.paper_train_repeats}",
        )
    notes.append(
        "decoding uses random weights: outputs run to the length limit floor(1.5 * source words + 10) "
        "(mean_output_len says how long they were)"
    )
    notes.append(
        "each comparison times its two sides in turn (A B A B ...) after warming both up, so that a change "
        "in the machine's load affects both alike; its timings are separate from the tables'"
    )
    return BenchReport(
        command=command,
        mode="quick" if settings.quick else "full",
        started=started,
        seconds=time.perf_counter() - clock,
        machine=describe_machine(session.device, load),
        versions=library_versions(),
        settings=jsonable(dataclasses.asdict(settings)),
        memory_measure=measure,
        training=session.training,
        decoding=session.decoding,
        padding=padding,
        references=session.references,
        ablations=session.ablations,
        notes=notes,
    )


def _train_every_preset(session: BenchSession) -> None:
    """The training table: every small and paper preset's throughput, FLOPs and peak memory."""
    s = session.settings
    for arch, preset in [*s.small_presets.items(), *s.paper_presets.items()]:
        sentences, repeats = session.sizes(preset)
        logger.info("training %s %s: %d x %d target tokens", arch, preset, sentences, s.target_len)
        make = session.maker(arch, preset)
        label_smoothing = train_config(arch, preset).label_smoothing
        flops = session.flops(make, teacher_forced_logits, label_smoothing, sentences)
        setup = session.setup(f"nmt {arch}", arch, preset, make, session.batch(sentences))
        session.training.append(measure_training(setup, s.train_warmup, repeats, flops, session.peak))


def _decode_every_small_preset(session: BenchSession) -> None:
    """The decoding table: greedy and beam search with every small preset."""
    s = session.settings
    for arch, preset in s.small_presets.items():
        model = session.build(arch, preset)
        for beam_size in (1, s.beam_size):
            logger.info("decoding %s %s: %d sentences, beam %d", arch, preset, s.decode_sentences, beam_size)
            session.decoding.append(
                measure_decoding(
                    arch,
                    preset,
                    model,
                    session.decode_batch,
                    beam_size,
                    session.device,
                    s.decode_warmup,
                    s.decode_repeats,
                )
            )


def _padding(settings: BenchSettings) -> list[PaddingResult]:
    """The padding of the synthetic corpus's batches and each prepared data directory's, at every budget."""
    corpora: list[tuple[str, str, Callable[[], TokenizedPairs]]] = [
        (
            f"synthetic ({settings.synthetic_pairs} pairs)",
            "words",
            lambda: synthetic_pairs(settings.synthetic_pairs, settings.seed),
        )
    ]
    for data_dir in settings.data_dirs:
        corpora.append(
            (corpus_name(data_dir), "subwords", lambda data_dir=data_dir: prepared_pairs(data_dir))
        )
    results = []
    for name, unit, load in corpora:
        logger.info("padding of %s", name)
        pairs = load()
        for budget in settings.padding_budgets:
            results.append(measure_padding(name, unit, pairs, budget, settings.seed))
    return results
