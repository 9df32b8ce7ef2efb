"""How the benchmark reads the clock and the memory, and describes the machine it ran on.

Timings exclude warmup runs, synchronise CUDA before reading the clock, and keep every timed run. Peak memory
is torch's allocator peak on CUDA and the process's peak resident set size on a CPU (`memory_measure` says
which, for the report).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

# Dense (no sparsity) bf16 tensor-core peak in FLOP/s, from the vendors' data sheets, keyed by a part of
# torch.cuda.get_device_name(). The first match wins, so the more specific names come first.
BF16_PEAK_FLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM (HBM3)
    ("H200", 989e12),
    ("A100", 312e12),
)


@dataclass
class Timing:
    """Seconds per run over the timed repeats (warmup runs excluded)."""

    median_s: float
    min_s: float
    max_s: float
    runs_s: list[float]

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Timing:
        return cls(statistics.median(seconds), min(seconds), max(seconds), list(seconds))


@dataclass
class Machine:
    platform: str
    cpu: str
    cpu_count: int | None
    usable_cpus: int | None  # this process's CPU affinity
    torch_threads: int
    load_average_start: list[float] | None  # 1, 5 and 15 minutes, before the first measurement
    load_average_end: list[float] | None  # after the last one: a busy machine makes every number slower
    device: str
    gpu: str | None
    gpu_memory_gb: float | None
    bf16_peak_tflops: float | None


# ------------------------------------------------------------------------------------------------------------
# The clock


def _sync(device: torch.device) -> None:
    """Wait for the device's queued work: CUDA kernels run asynchronously, so the clock would stop early."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_runs(run: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Call `run` warmup times untimed, then `repeats` times timed one by one (CUDA synchronised)."""
    for _ in range(warmup):
        run()
    seconds = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return Timing.of(seconds)


def time_interleaved(
    runs: Sequence[Callable[[], Any]], device: torch.device, warmup: int, repeats: int
) -> list[Timing]:
    """Warm every run up, then time them in turn, `repeats` rounds of A B C ..., so that a change in the
    machine's load during the measurement affects them all alike."""
    for run in runs:
        for _ in range(warmup):
            run()
    seconds: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, times in zip(runs, seconds, strict=True):
            _sync(device)
            start = time.perf_counter()
            run()
            _sync(device)
            times.append(time.perf_counter() - start)
    return [Timing.of(times) for times in seconds]


# ------------------------------------------------------------------------------------------------------------
# Memory

_HWM = re.compile(r"^VmHWM:\s+(\d+) kB", re.MULTILINE)


def _resettable_rss() -> bool:
    """Whether Linux lets this process reset its peak resident set size (/proc/self/clear_refs); resets it."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return _HWM.search(Path("/proc/self/status").read_text()) is not None
    except OSError:
        return False


def memory_measure(device: torch.device) -> str:
    """What `peak_memory_mb` means on `device`, in words for the report."""
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated during the measurement (tensors only, MiB)"
    if _resettable_rss():
        return "peak resident set size of the process during the measurement (VmHWM, reset before each; MiB)"
    return "peak resident set size of the process so far (getrusage ru_maxrss; not reset; MiB)"


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: collect garbage first, so that the last measurement's tensors do not count, and on
    the CPU give glibc's free heap pages back to the operating system, so that the resident set (the CPU's
    peak measure) starts from what is in use, not from what earlier measurements freed into the heap."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _return_free_heap()
        _resettable_rss()


def _return_free_heap() -> None:
    """glibc's `malloc_trim`; elsewhere (another C library) nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mb(device: torch.device) -> float:
    """The peak since `reset_peak_memory`, in MiB (see `memory_measure`)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        match = _HWM.search(Path("/proc/self/status").read_text())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# ------------------------------------------------------------------------------------------------------------
# The machine and the versions


def _cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a CUDA device from `BF16_PEAK_FLOPS`, or None for a device not in the table."""
    for key, flops in BF16_PEAK_FLOPS:
        if key in device_name:
            return flops
    return None


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, or None where the system does not tell."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(device: torch.device, load_start: list[float] | None) -> Machine:
    gpu = memory = peak = None
    if device.type == "cuda":
        properties = torch.cuda.get_device_properties(device)
        gpu, memory = properties.name, properties.total_memory / 2**30
        peak = bf16_peak_flops(gpu)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return Machine(
        platform=platform.platform(),
        cpu=_cpu_name(),
        cpu_count=os.cpu_count(),
        usable_cpus=usable,
        torch_threads=torch.get_num_threads(),
        load_average_start=load_start,
        load_average_end=load_average(),
        device=str(device),
        gpu=gpu,
        gpu_memory_gb=None if memory is None else round(memory, 1),
        bf16_peak_tflops=None if peak is None else peak / 1e12,
    )


def library_versions() -> dict[str, str | None]:
    """Versions of Python, torch and the libraries around it; None for one that is not installed."""
    versions: dict[str, str | None] = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "sentencepiece", "sacrebleu", "datasets", "transformers", "ctranslate2", "psutil"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            versions[name] = None
    versions["cuda"] = torch.version.cuda
    versions["cudnn"] = str(torch.backends.cudnn.version()) if torch.cuda.is_available() else None
    return versions
