"""The whole benchmark: every measurement that the settings ask for, in one report.

    report = run_benchmark(quick_settings("cpu"), command="python -m nmt.cli.bench --quick")
    write_report(report, path)    # nmt.benchmark.report

Training and decoding tables first, then the references and the ablations (each adds its comparisons to the
session), then int8 decoding against float32 (on the CPU), then the padding of the trainer's batches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from nmt.benchmark.ablations import add_ablations
from nmt.benchmark.decoding import (
    FLOAT32,
    INT8,
    decode,
    decoding_result,
    measure_decoding,
    peak_of_one_search,
)
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
from nmt.models.quantization import quantize_int8
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
    _decode_int8(session)
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


INT8_PAPER_ARCHS = ("transformer",)  # int8 is also measured at these architectures' paper presets


def _decode_int8(session: BenchSession) -> None:
    """nmt's int8 decoding (`nmt translate --int8`) beside its float32 decoding, greedy and beam search: every
    small preset and the Transformer's paper preset (base); on the CPU only, where int8 runs."""
    if session.device.type != "cpu":
        session.notes.append("int8 decoding runs on the CPU only: its rows were not measured on this device")
        return
    s = session.settings
    shapes = [*s.small_presets.items()]
    shapes += [(arch, preset) for arch, preset in s.paper_presets.items() if arch in INT8_PAPER_ARCHS]
    for arch, preset in shapes:
        for beam_size in (1, s.beam_size):
            _int8_against_float32(session, arch, preset, beam_size)
    session.notes.append(
        "int8 rows: weights int8 per output row, inputs quantized per call (nmt/models/quantization.py); "
        "each int8 row's time is from its comparison with float32 (timed in turn, in the ablations), its "
        "peak memory from one search with only that model built"
    )


def _int8_against_float32(session: BenchSession, arch: str, preset: str, beam_size: int) -> None:
    """One search of the decoding batch with `arch` at `preset` in int8 and in float32, timed in turn: a
    comparison (with how often the outputs agree), an int8 row in the decoding table, and a float32 row
    where the table has none for this shape yet (the paper presets)."""
    batch = session.decode_batch
    search = "greedy" if beam_size == 1 else f"beam {beam_size}"
    peaks = {}
    for precision in (INT8, FLOAT32):  # each alone: the float32 model freed before the next is built
        model = session.build(arch, preset).eval()
        model = quantize_int8(model) if precision == INT8 else model
        peaks[precision], _ = peak_of_one_search(model, batch, beam_size, session.device)
        del model
    models = {
        INT8: quantize_int8(session.build(arch, preset).eval()),
        FLOAT32: session.build(arch, preset).eval(),
    }
    src, src_lengths = session.on_device(batch)
    found = {precision: [] for precision in models}

    def searcher(precision: str):
        def run():
            found[precision] = decode(models[precision], src, src_lengths, beam_size)
            return found[precision]

        return run

    logger.info("decoding %s %s %s: int8 against float32", arch, preset, search)
    comparison = session.compare_decoding(
        f"{arch} {preset} {search}: int8 weights",
        f"{search} over {src.size(0)} sentences",
        (f"nmt {INT8}", searcher(INT8)),
        (f"nmt {FLOAT32}", searcher(FLOAT32)),
    )
    session.ablations.append(comparison)
    timings = {INT8: comparison.candidate_s, FLOAT32: comparison.baseline_s}
    measured = {(r.model, r.preset, r.beam_size, r.precision) for r in session.decoding}
    for precision in (FLOAT32, INT8):
        if (arch, preset, beam_size, precision) not in measured:
            session.decoding.append(
                decoding_result(
                    arch,
                    preset,
                    batch,
                    beam_size,
                    found[precision],
                    timings[precision],
                    peaks[precision],
                    precision,
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
