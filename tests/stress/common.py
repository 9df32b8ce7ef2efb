"""What the stress scripts share: the toy data, `nmt` and `torchrun` run as a user runs them (child
processes, one thread each), bitwise comparison of training states, and the command-line frame."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
if str(TESTS) not in sys.path:  # run as a script: conftest's data makers are one folder up
    sys.path.insert(0, str(TESTS))

import torch  # noqa: E402
from conftest import make_checkpoint, make_prepared, toy_pairs  # noqa: E402

#: `nmt` as the console script runs it, with the interpreter of this environment.
NMT = [sys.executable, "-m", "nmt.cli.main"]


def child_environment(**extra: str) -> dict[str, str]:
    """The environment of every child process: offline, one thread (the machine's cores are shared by the
    processes of a run, and thread counts must not change results)."""
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_command(
    command: Sequence[str], timeout: float, env: dict[str, str] | None = None, input: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run `command` from the repository root to its end; output captured as bytes."""
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env=env or child_environment(),
        input=input,
        capture_output=True,
        timeout=timeout,
    )


def torchrun() -> Path | None:
    """This environment's torchrun, or None where it is missing."""
    beside = Path(sys.executable).parent / "torchrun"
    if beside.is_file():
        return beside
    found = shutil.which("torchrun")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_toy_data(directory: Path, train_pairs: int = 400) -> Path:
    """A prepared reversal task (tests/conftest.py), the same for a given size."""
    dev, test = toy_pairs(40, seed=2), toy_pairs(40, seed=3)
    return make_prepared(directory, toy_pairs(train_pairs, seed=1), dev, test)


def tiny_checkpoint(path: Path, data: Path, arch: str) -> Path:
    """An untrained tiny-preset checkpoint of `arch` on `data` (tests/conftest.py)."""
    return make_checkpoint(path, data, arch)


# ---------------------------------------------------------------------------------------------------------
# Comparing training states


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where `a` and `b` differ: tensors bitwise (dtype and shape included), containers item by item."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(a, b)
        )
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where} (keys {sorted(map(str, a.keys() ^ b.keys()))})"]
        return [d for key in a for d in differences(a[key], b[key], f"{where}/{key}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where} (lengths {len(a)} and {len(b)})"]
        found = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found += differences(x, y, f"{where}[{i}]")
        return found
    return [] if a == b else [where]


def training_state(path: Path) -> dict[str, Any]:
    """What must not depend on interruptions: the weights, the optimizer, and where training stands (all of
    the progress but the wall-clock seconds)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = checkpoint["train_state"]
    progress = {key: value for key, value in state["progress"].items() if key != "seconds"}
    return {"model": checkpoint["model"], "optimizer": state["optimizer"], "progress": progress}


def state_differences(path: Path, reference: Path) -> list[str]:
    """How the training state in `path` differs from the one in `reference` (empty: bitwise equal)."""
    if not path.is_file():
        return [f"{path.name} is missing"]
    return [f"{path.name}:{d}" for d in differences(training_state(path), training_state(reference))]


def stray_files(run_dir: Path) -> list[str]:
    """Hidden files in a run directory: only temporary files (of atomic writes, probes) are hidden, and none
    may outlive the run that made it."""
    return sorted(path.name for path in run_dir.glob(".*"))


# ---------------------------------------------------------------------------------------------------------
# Processes


def stop_process(process: subprocess.Popen) -> None:
    """SIGKILL what is left of a child process that a script started in a session of its own (its process
    group): the child and the processes it started, even after the child itself has ended."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def wait_for(condition, timeout: float, interval: float = 0.05) -> bool:
    """Poll `condition()` until it is true or `timeout` seconds have passed; return its last value."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def tail(data: bytes | str, lines: int = 15) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return "\n".join(text.strip().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------------------
# The command-line frame


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with the options every script has: --seed, --workdir, --keep."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    result.add_argument(
        "--workdir", type=Path, help="where to work (default: a temporary directory, removed when all passed)"
    )
    result.add_argument("--keep", action="store_true", help="keep the working directory")
    return result


def run_script(args: argparse.Namespace, prefix: str, body) -> int:
    """Run `body(workdir) -> list of failures` in the working directory; print the failures and return the
    exit code (1 on any failure). A temporary working directory is removed only when everything passed."""
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"nmt-stress-{prefix}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    failures = body(workdir)
    print(f"wall time: {time.perf_counter() - start:.0f} s")
    for failure in failures:
        print(f"FAIL: {failure}")
    if failures or args.keep or args.workdir is not None:
        print(f"work directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("FAILED" if failures else "PASSED")
    return 1 if failures else 0
