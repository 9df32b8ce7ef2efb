"""kill -9 at random moments of `nmt train`, then resume: every resumed run ends bitwise equal to one that was
never interrupted.

One run trains uninterrupted, and its wall time T is measured. Then the same `nmt train` starts in a fresh
run directory and gets SIGKILL after a delay drawn uniformly from [0, T) (seeded), so that kills fall
anywhere: start-up, an update, a validation, a checkpoint being written; until KILLS runs were killed (a run
quicker than T may end first: it is checked all the same, and its time becomes T). Each killed run is then
continued with `--resume`, or started again with `--force` when no last.pt was written yet, to its end. Its
last.pt and best.pt must hold exactly the uninterrupted run's weights, optimizer state and progress, and no
temporary file may be left in the run directory.

Where each kill hit is read from the process itself: it runs under a tiny wrapper that registers
`faulthandler` for SIGUSR1, so that just before SIGKILL the script asks for the Python stack of the moment
(the dump is written by a C signal handler, without running any Python code in the process).
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stress.common import (  # noqa: E402
    NMT,
    ROOT,
    child_environment,
    make_toy_data,
    parser,
    run_command,
    run_script,
    state_differences,
    stray_files,
    tail,
    wait_for,
)

# `nmt train`, with the stack of the moment written to argv[1] on SIGUSR1.
PROBE = textwrap.dedent(
    """
    import faulthandler, os, signal, sys
    stack_file = sys.argv[1]
    handle = open(stack_file + ".part", "w")
    faulthandler.register(signal.SIGUSR1, file=handle, all_threads=True, chain=False)
    os.replace(stack_file + ".part", stack_file)  # it exists once SIGUSR1 is safe to send
    sys.argv = ["nmt", *sys.argv[2:]]
    from nmt.cli.main import main
    main()
    """
)

# The phase of a stack: the first of these functions of nmt met from the innermost frame outwards.
PHASES = {
    "_save": "checkpoint write",
    "prune_step_checkpoints": "checkpoint write",
    "write_scratch_checkpoint": "checkpoint write",
    "_validate": "validation",
    "validate": "validation",
    "_update": "update",
    "fit": "between updates",
    "close": "finishing",
    "set_up": "set-up (data, model)",
}
_FRAME = re.compile(r'File "([^"]+)", line \d+ in (\S+)')
_OURS = re.compile(r"[/\\](nmt|cli)[/\\]")  # the library and the command line, not their dependencies


@dataclass(frozen=True)
class Settings:
    """The training run under test: small, with dropout, accumulation and epoch boundaries, so that a resumed
    run must restore every random generator and its place in the batch order."""

    model: str = "rnnsearch"
    steps: int = 60
    accumulate: int = 2
    save_every: int = 5
    validate_every: int = 5
    dev_sentences: int = 40
    dropout: float = 0.1
    timeout: float = 600  # seconds for any one process


@dataclass
class Trial:
    number: int
    delay: float  # seconds after the start at which the kill was asked for
    phase: str = ""
    killed: bool = False  # False when the run ended before the kill
    seconds: float | None = None  # how long the run took, when it ended before the kill
    temporaries_at_kill: list[str] = field(default_factory=list)
    restart: str = ""
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        hit = f"{self.phase}" + (
            f" (writing {', '.join(self.temporaries_at_kill)})" if self.temporaries_at_kill else ""
        )
        if not self.killed:
            hit = "not killed: the run ended first"
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"kill {self.number:2d} at {self.delay:6.2f} s: {hit:60s} -> {self.restart}: {verdict}"


def train_args(data: Path, out: Path, settings: Settings, config: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--model", settings.model, "--preset", "tiny", "--config", str(config),
        "--max-steps", str(settings.steps), "--accumulate", str(settings.accumulate),
        "--save-every", str(settings.save_every), "--validate-every", str(settings.validate_every),
        "--dev-sentences", str(settings.dev_sentences), "--seed", "5", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def write_config(path: Path, settings: Settings) -> Path:
    path.write_text(f"model:\n  dropout: {settings.dropout}\n", encoding="utf-8")
    return path


def phase_of(stack: str) -> str:
    """Which part of `nmt train` a faulthandler dump of all threads shows the main thread in."""
    if not stack.strip():
        return "interpreter start-up"  # the wrapper had not registered its handler yet
    blocks = re.split(r"\n(?=(?:Current thread|Thread) 0x)", stack)
    # The main thread: the one under the wrapper's frame, unless a deep stack (an import) was cut at 100
    # frames before it; then the one that took the signal, which is the main thread too.
    main = next((block for block in blocks if '"<string>"' in block), None) or next(
        (block for block in blocks if block.startswith("Current thread")), blocks[-1]
    )
    frames = _FRAME.findall(main)  # most recent call first
    if not frames:  # "<no Python frame>": `nmt` has returned
        return "exit (interpreter shutdown)"
    for path, function in frames:
        if function in PHASES and _OURS.search(path):
            return PHASES[function]
    run_py = os.path.join("nmt", "training", "run.py")
    if any(path.endswith(run_py) and function == "train" for path, function in frames):
        return "set-up (run directory, processes)"
    if any(function == "<module>" and path != "<string>" for path, function in frames):
        return "start-up (imports)"
    return "command line (options and configs, or the final report)"


def stack_when_killed(process: subprocess.Popen, stack_file: Path) -> str:
    """Ask the process for its stack (when its handler is in place), then SIGKILL it; return the stack."""
    if stack_file.exists():
        os.kill(process.pid, signal.SIGUSR1)
        sizes = [-1]

        def dump_complete() -> bool:  # written by a signal handler: done when it stops growing
            size = stack_file.stat().st_size
            done = size > 0 and size == sizes[-1]
            sizes.append(size)
            return done

        wait_for(dump_complete, timeout=2.0, interval=0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return stack_file.read_text(errors="replace") if stack_file.exists() else ""


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["train_state"]["progress"]["step"])


def run_trial(trial: Trial, args: list[str], run_dir: Path, reference: Path, timeout: float) -> Trial:
    """Kill one run at `trial.delay`, finish it, and compare it with the `reference` run directory."""
    stack_file = run_dir.parent / f"{run_dir.name}.stack"
    log = run_dir.parent / f"{run_dir.name}.log"  # a file, not a pipe: a full pipe would stall the run
    with open(log, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", PROBE, str(stack_file), *args],
            cwd=ROOT,
            env=child_environment(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        start = time.perf_counter()
        try:
            process.wait(timeout=trial.delay)
            trial.seconds = time.perf_counter() - start  # it ended first: how long a whole run takes now
        except subprocess.TimeoutExpired:
            stack = stack_when_killed(process, stack_file)
            trial.killed = process.returncode == -signal.SIGKILL
            trial.phase = phase_of(stack)
    if not trial.killed and process.returncode != 0:
        trial.problems.append(
            f"the run failed before the kill (exit {process.returncode}): {tail(log.read_bytes(), 5)}"
        )
        return trial
    trial.temporaries_at_kill = stray_files(run_dir) if run_dir.is_dir() else []

    last = run_dir / "last.pt"
    if last.is_file():
        trial.restart = f"--resume from step {checkpoint_step(last)}"
        restart = [*args, "--resume"]
    else:
        trial.restart = "no last.pt: new run with --force"
        restart = [*args, "--force"]
    finished = run_command([*NMT, *restart], timeout=timeout)
    if finished.returncode != 0:
        trial.problems.append(f"{trial.restart} exited {finished.returncode}: {tail(finished.stderr, 5)}")
        return trial
    for name in ("last.pt", "best.pt"):
        found = state_differences(run_dir / name, reference / name)
        if found:
            trial.problems.append(f"{len(found)} differences, first {', '.join(found[:3])}")
    strays = stray_files(run_dir)
    if strays:
        trial.problems.append(f"temporary files left: {', '.join(strays)}")
    return trial


def run_kill_trials(
    workdir: Path, seed: int, kills: int, settings: Settings, report=print
) -> tuple[float, list[Trial]]:
    """The uninterrupted run, then `kills` killed and resumed ones; returns its seconds and the trials.
    `report(line)` hears of each trial as it ends."""
    data = make_toy_data(workdir / "data")
    config = write_config(workdir / "dropout.yaml", settings)
    reference = workdir / "uninterrupted"
    start = time.perf_counter()
    uninterrupted = run_command(
        [*NMT, *train_args(data, reference, settings, config)], timeout=settings.timeout
    )
    seconds = time.perf_counter() - start
    if uninterrupted.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {tail(uninterrupted.stderr)}")
    rng = random.Random(seed)
    trials: list[Trial] = []
    # The machine's load changes, and a run can be quicker than the uninterrupted one and end before its kill:
    # such a run is checked too, its time becomes the span the next delays are drawn from, and another run is
    # started, until `kills` runs were killed (or twice as many tried).
    span = seconds
    while sum(trial.killed for trial in trials) < kills and len(trials) < 2 * kills:
        number = len(trials) + 1
        run_dir = workdir / f"kill-{number}"
        trial = Trial(number, delay=rng.uniform(0, span))
        args = train_args(data, run_dir, settings, config)
        trials.append(run_trial(trial, args, run_dir, reference, settings.timeout))
        span = trial.seconds or span
        report(trial.line())
    return seconds, trials


def summary(seconds: float, trials: list[Trial], settings: Settings) -> list[str]:
    killed = [trial for trial in trials if trial.killed]
    phases: dict[str, int] = {}
    for trial in killed:
        phases[trial.phase] = phases.get(trial.phase, 0) + 1
    where = ", ".join(
        f"{phase} {count}" for phase, count in sorted(phases.items(), key=lambda item: -item[1])
    )
    passed = sum(not trial.problems for trial in trials)
    return [
        f"uninterrupted run: {seconds:.1f} s, {settings.steps} updates",
        f"killed {len(killed)} of {len(trials)} runs; the kills hit: {where or 'nothing'}",
        f"runs equal to the uninterrupted one bitwise, with no temporary file left: {passed}/{len(trials)}",
    ]


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--kills", type=int, default=20, help="killed runs (default 20)")
    options.add_argument(
        "--steps", type=int, default=Settings.steps, help="updates of each run (default %(default)s)"
    )
    args = options.parse_args(argv)
    settings = Settings(steps=args.steps)

    def body(workdir: Path) -> list[str]:
        seconds, trials = run_kill_trials(workdir, args.seed, args.kills, settings)
        for line in summary(seconds, trials, settings):
            print(line)
        failures = [f"kill {trial.number}: {'; '.join(trial.problems)}" for trial in trials if trial.problems]
        killed = sum(trial.killed for trial in trials)
        if killed < args.kills:
            failures.append(f"only {killed} of {len(trials)} runs were killed before they ended")
        return failures

    return run_script(args, "kill", body)


if __name__ == "__main__":
    sys.exit(main())
