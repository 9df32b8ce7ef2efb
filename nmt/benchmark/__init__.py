"""nmt.benchmark: what `make bench` measures (speed, memory and padding of training and decoding, against
references and with each fast path taken out) and writes to docs/bench/*.json.

    from nmt.benchmark.report import format_report
    from nmt.benchmark.run import run_benchmark
    from nmt.benchmark.settings import quick_settings

    report = run_benchmark(quick_settings("cpu"), command="python -m nmt.cli.bench --quick")
    text = format_report(report)

One concern per module, each importing only those above it in this list:
- settings: what to measure and at which sizes (`BenchSettings`; presets from the model registry);
- timing: the clock, peak memory, the machine and library versions;
- report: the result dataclasses, the JSON and the text table;
- inputs: random batches and the presets' model configs;
- variants: models computing what ours compute another way (references and ablations);
- training, decoding, padding: one measurement each (training through the trainer's own `Updater`);
- comparisons: two ways to do the same work, timed in turn;
- session: one run's shared state (device, seeded inputs and models, results so far);
- references, ablations: the comparisons; run: `run_benchmark`, all of it in one report;
- prepare_scaling: apart from the rest, `nmt prepare`'s time and memory by corpus size (`make bench-prepare`).

Imports: anything in nmt except the CLI (it measures the library from outside, through its public API);
nothing in nmt imports this package, which only `nmt.cli.bench` uses. It never prints: the results are
dataclasses, `nmt.benchmark.report` renders them.
"""
