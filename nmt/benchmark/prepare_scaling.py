"""How `nmt prepare` scales with the corpus: wall time and peak memory by size (`make bench-prepare`).

The inputs are a real corpus repeated: copy r of the training files has " #r" appended to every non-empty line
(copy 0 is the corpus itself), so that the copies stay distinct pairs and nothing is removed as a duplicate
that was not one in the original. Without the corpus, the synthetic pair is prepared at the same sizes.

Each size is prepared by `nmt prepare` in a child process, so that its memory is its own. Peak memory is
measured two ways: the largest resident set of any one process (what `/usr/bin/time -v` reports, from
`wait4`), and the largest sum over the process and its workers, sampled every `SAMPLE_SECONDS` from /proc.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nmt.files import open_binary
from nmt.version import __version__

SAMPLE_SECONDS = 0.2
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass
class ScalingRun:
    pairs: int
    wall_s: float
    peak_rss_mb: float  # the largest single process (wait4's ru_maxrss)
    peak_tree_rss_mb: float  # the largest sampled sum over the process tree
    kept: dict[str, int] = field(default_factory=dict)  # pairs per split, from the manifest
    exit_code: int = 0


@dataclass
class ScalingReport:
    command: str
    corpus: str
    machine: dict[str, object]
    runs: list[ScalingRun]


# ------------------------------------------------------------------------------------------------------------
# Inputs


def repeated_corpus(prefix: Path, langs: tuple[str, str], pairs: int, out_prefix: Path) -> Path:
    """Write `out_prefix.<lang>`: the first `pairs` pairs of the corpus `prefix.<lang>[.gz]` repeated as
    often as needed, copy r marked " #r" on every non-empty line (copy 0 unmarked)."""
    out_prefix.parent.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        source = _corpus_file(prefix, lang)
        with open(f"{out_prefix}.{lang}", "wb") as out:
            written, copy = 0, 0
            while written < pairs:
                with open_binary(source) as lines:
                    for line in lines:
                        if written == pairs:
                            break
                        line = line.rstrip(b"\n")
                        if copy and line.strip():
                            line += f" #{copy}".encode()
                        out.write(line + b"\n")
                        written += 1
                copy += 1
    return out_prefix


def _corpus_file(prefix: Path, lang: str) -> Path:
    plain = Path(f"{prefix}.{lang}")
    return plain if plain.is_file() else Path(f"{plain}.gz")


def corpus_available(prefix: Path, langs: tuple[str, str]) -> bool:
    return all(_corpus_file(prefix, lang).is_file() for lang in langs)


# ------------------------------------------------------------------------------------------------------------
# Measuring one run


def measure(command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None):
    """Run `command`; (exit code, wall seconds, peak RSS of one process in MB, peak RSS of the tree in MB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_tree = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak_tree
        while not done.wait(SAMPLE_SECONDS):
            peak_tree = max(peak_tree, _tree_rss(process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{shlex.join(command)} failed ({process.returncode}): {' / '.join(tail)}")
    # ru_maxrss is in kilobytes on Linux.
    return process.returncode, wall, usage.ru_maxrss / 1024, max(peak_tree, usage.ru_maxrss * 1024) / 2**20


def _tree_rss(pid: int) -> int:
    """Resident bytes of process `pid` and all its descendants (0 for those that have ended)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            pages = int(Path(f"/proc/{current}/statm").read_text().split()[1])
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except (OSError, IndexError, ValueError):
            continue
        total += pages * PAGE_BYTES
        pending.extend(int(child) for child in children)
    return total


def machine() -> dict[str, object]:
    import datasets  # deferred: seconds to import; only the report needs the versions
    import pyarrow
    import sentencepiece

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "nmt": __version__,
        "datasets": datasets.__version__,
        "pyarrow": pyarrow.__version__,
        "sentencepiece": sentencepiece.__version__,
    }


# ------------------------------------------------------------------------------------------------------------
# The benchmark


def run_scaling(
    sizes: list[int],
    work: Path,
    prepare_command: list[str],
    corpus: Path | None,
    langs: tuple[str, str],
    prepare_args: list[str],
    cwd: Path | None = None,
    on_run=None,
) -> ScalingReport:
    """Prepare each size in `sizes` with `prepare_command` (an `nmt prepare` command line without its input
    and output options) and `prepare_args`; `corpus`: a training prefix to repeat, or None for the synthetic
    pair. `on_run(run)` is called after each size."""
    runs = []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for pairs in sizes:
        out = work / f"prepared-{pairs}"
        if corpus is not None:
            train = repeated_corpus(corpus, langs, pairs, work / f"train-{pairs}")
            inputs = ["-s", langs[0], "-t", langs[1], "--train-prefix", str(train.resolve())]
        else:
            inputs = ["--dataset", "synthetic", "--synthetic-size", str(pairs)]
        command = [*prepare_command, *inputs, *prepare_args, "--out", str(out.resolve()), "--force"]
        code, wall, peak, peak_tree = measure(command, cwd=cwd, env=env)
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        kept = {name: counts["kept"] for name, counts in manifest["counts"].items()}
        run = ScalingRun(pairs, round(wall, 1), round(peak, 1), round(peak_tree, 1), kept, code)
        runs.append(run)
        if on_run is not None:
            on_run(run)
    return ScalingReport(
        command=shlex.join([Path(prepare_command[0]).name, *prepare_command[1:], *prepare_args]),
        corpus=str(corpus) if corpus is not None else "synthetic",
        machine=machine(),
        runs=runs,
    )


def write_report(report: ScalingReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")


def read_report(path: Path) -> ScalingReport:
    values = json.loads(Path(path).read_text(encoding="utf-8"))
    values["runs"] = [ScalingRun(**run) for run in values["runs"]]
    return ScalingReport(**values)


def plot_report(reports: dict[str, ScalingReport], path: Path) -> None:
    """Wall time and peak memory against corpus size, one line per report (e.g. streaming and before)."""
    import matplotlib  # deferred: heavy, and only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred, after choosing the file-only backend

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4))
    for number, (label, report) in enumerate(reports.items()):
        pairs, color = [run.pairs / 1e6 for run in report.runs], f"C{number}"
        time_axis.plot(pairs, [run.wall_s for run in report.runs], "o-", color=color, label=label)
        single = [run.peak_rss_mb / 1024 for run in report.runs]
        memory_axis.plot(pairs, single, "o-", color=color, label=f"{label}: largest process")
        tree = [run.peak_tree_rss_mb / 1024 for run in report.runs]
        memory_axis.plot(pairs, tree, "x--", color=color, label=f"{label}: all processes")
    time_axis.set(xlabel="training pairs (millions)", ylabel="wall time (s)", title="nmt prepare: time")
    memory_axis.set(xlabel="training pairs (millions)", ylabel="peak RSS (GiB)", title="nmt prepare: memory")
    memory_axis.set_ylim(bottom=0)
    time_axis.set_ylim(bottom=0)
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
