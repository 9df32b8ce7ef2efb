"""A data-parallel run loses a process: the others end within a bound, with at most one line each, and
`--resume` continues the same trajectory.

`torchrun --nproc-per-node 2` runs `nmt train` on gloo (CPU). First uninterrupted, for reference. Then, in
each of KILLS runs, once training has written its first checkpoint and after a further random delay (seeded,
within the first half of the time the uninterrupted run trained after its first checkpoint), one rank gets
SIGKILL: rank 0 (which writes the checkpoints), then rank 1, in turn. The surviving rank must be gone within
BOUND seconds (ended by its own error, one `error: ...` line and exit code 1, or by torchrun's agent, which
stops the others when one fails), torchrun must exit non-zero within BOUND seconds, and last.pt must still
load. The run is then resumed under torchrun with 2 ranks again, to its end: last.pt and best.pt must equal
the uninterrupted run's bitwise, with no temporary file left.

With --hangs, a rank is stopped (SIGSTOP) instead of killed: a process that hangs keeps its connections
open, so only the collective timeout (NMT_DISTRIBUTED_TIMEOUT, here --timeout seconds) can end the other.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stress.common import (  # noqa: E402
    ROOT,
    child_environment,
    make_toy_data,
    parser,
    run_script,
    state_differences,
    stop_process,
    stray_files,
    tail,
    torchrun,
    wait_for,
)

RANKS = 2
_EXIT_CODE = re.compile(r"exitcode\s*:\s*(-?\d+) \(pid: (\d+)\)")


@dataclass(frozen=True)
class Settings:
    model: str = "rnnsearch"
    steps: int = 100
    save_every: int = 5
    validate_every: int = 25
    dev_sentences: int = 16
    dropout: float = 0.1  # every rank's dropout generator must be restored
    bound: float = 60.0  # seconds within which the survivor and torchrun must be gone
    timeout: float = 10.0  # NMT_DISTRIBUTED_TIMEOUT of the runs with a hanging rank


@dataclass
class Trial:
    number: int
    action: str  # "kill" or "stop"
    victim: int = -1  # the rank
    at_step: int = -1  # the step of last.pt when the rank was killed
    survivor_seconds: float = float("nan")
    torchrun_seconds: float = float("nan")
    survivor_end: str = ""
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return (
            f"{self.action} rank {self.victim} after step {self.at_step}: the other rank was gone in "
            f"{self.survivor_seconds:.1f} s ({self.survivor_end}), torchrun in "
            f"{self.torchrun_seconds:.1f} s; resumed: {verdict}"
        )


def train_args(data: Path, out: Path, settings: Settings, config: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--model", settings.model, "--preset", "tiny", "--config", str(config),
        "--max-steps", str(settings.steps), "--save-every", str(settings.save_every),
        "--validate-every", str(settings.validate_every), "--dev-sentences", str(settings.dev_sentences),
        "--seed", "5", "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def launch(args: list[str], logs: Path, **env: str) -> subprocess.Popen:
    """`torchrun --nproc-per-node 2 -m nmt.cli.main ARGS`, each rank's output in its own file under `logs`,
    in a session of its own (so that a failed check can stop all of it)."""
    logs.mkdir(parents=True, exist_ok=True)
    command = [
        str(torchrun()), "--nproc-per-node", str(RANKS), "--standalone", "--log-dir", str(logs),
        "--redirects", "3", "-m", "nmt.cli.main", *args,
    ]  # fmt: skip
    with open(logs / "torchrun.log", "wb") as output:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            env=child_environment(**env),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def rank_log(logs: Path, rank: int) -> str:
    """What rank `rank` wrote to stderr (torchrun's --log-dir layout: .../attempt_0/RANK/stderr.log)."""
    found = sorted(logs.glob(f"**/attempt_0/{rank}/stderr.log"))
    return found[-1].read_text(errors="replace") if found else ""


def workers(parent: int) -> dict[int, int]:
    """rank -> pid of the worker processes that torchrun process `parent` started (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            variables = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):  # the process ended meanwhile
            continue
        for variable in variables:
            if variable.startswith(b"RANK="):
                found[int(variable[5:])] = int(entry.name)
    return found


def running(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def run_reference(args: list[str], workdir: Path, settings: Settings) -> tuple[float, float, float]:
    """The uninterrupted run; returns the seconds to its first checkpoint, from its first checkpoint to its
    last (the time it trains with a checkpoint to resume from), and in all."""
    process = launch(args, workdir / "logs-uninterrupted")
    start = time.perf_counter()
    last = Path(args[args.index("--out") + 1]) / "last.pt"
    try:
        wait_for(lambda: last.exists() or process.poll() is not None, timeout=600)
        first, first_clock = time.perf_counter() - start, time.time()
        process.wait(timeout=600)
    finally:
        stop_process(process)
    if process.returncode != 0:
        log = (workdir / "logs-uninterrupted" / "torchrun.log").read_bytes()
        raise RuntimeError(f"the uninterrupted 2-rank run failed: {tail(log)}")
    return first, max(0.0, last.stat().st_mtime - first_clock), time.perf_counter() - start


def interrupt(
    trial: Trial, args: list[str], run_dir: Path, logs: Path, delay: float, settings: Settings
) -> None:
    """Start the run, kill (or stop) rank `trial.victim` `delay` seconds after its first checkpoint, and check
    how the rest of the group ends."""
    env = {"NMT_DISTRIBUTED_TIMEOUT": str(settings.timeout)} if trial.action == "stop" else {}
    process = launch(args, logs, **env)
    try:
        if not wait_for(lambda: (run_dir / "last.pt").exists() or process.poll() is not None, timeout=600):
            trial.problems.append("no checkpoint within 600 s")
            return
        time.sleep(delay)
        ranks = workers(process.pid)
        if process.poll() is not None or len(ranks) != RANKS:
            trial.problems.append(f"the run ended before the {trial.action} (exit {process.returncode})")
            return
        trial.at_step = checkpoint_step(run_dir / "last.pt")
        survivor = ranks[1 - trial.victim]
        start = time.perf_counter()
        os.kill(ranks[trial.victim], signal.SIGKILL if trial.action == "kill" else signal.SIGSTOP)
        wait_for(lambda: not running(survivor), timeout=settings.bound + settings.timeout)
        trial.survivor_seconds = time.perf_counter() - start
        with contextlib.suppress(subprocess.TimeoutExpired):  # judged by check_ending
            process.wait(timeout=settings.bound + settings.timeout)
        trial.torchrun_seconds = time.perf_counter() - start
    finally:
        stop_process(process)  # ends a torchrun that hangs: the check has failed by then
    check_ending(trial, process.returncode, logs, survivor, settings)
    try:
        torch.load(run_dir / "last.pt", map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to load is the finding
        trial.problems.append(f"last.pt does not load after the {trial.action}: {error}")


def check_ending(trial: Trial, returncode: int, logs: Path, survivor: int, settings: Settings) -> None:
    """The survivor and torchrun ended in time; the survivor by one error line or by the agent's SIGTERM."""
    bound = settings.bound
    if trial.survivor_seconds > bound or trial.torchrun_seconds > bound:
        trial.problems.append(f"not over within {bound:.0f} s")
    if returncode == 0:
        trial.problems.append("torchrun exited 0")
    report = (logs / "torchrun.log").read_text(errors="replace")
    codes = {int(pid): int(code) for code, pid in _EXIT_CODE.findall(report)}
    code = codes.get(survivor)
    stderr = rank_log(logs, 1 - trial.victim)
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    if "Traceback (most recent call last)" in stderr:
        trial.problems.append(f"the surviving rank printed a traceback: {tail(stderr, 3)}")
    # Its own end: exit 1 after one error line. Or torchrun's agent, which stops the other workers as soon as
    # one fails, sent SIGTERM first (at most the error line got out before).
    if code == 1 and len(errors) == 1:
        trial.survivor_end = f"by itself, exit 1: {errors[0][:100]}..."
    elif code == -signal.SIGTERM and len(errors) <= 1:
        trial.survivor_end = "SIGTERM from torchrun's agent" + (", after its error line" if errors else "")
    else:
        trial.problems.append(f"the surviving rank ended with exit {code} and {len(errors)} error lines")
        trial.survivor_end = f"exit {code}"


def checkpoint_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["train_state"]["progress"]["step"])


def resume(trial: Trial, args: list[str], run_dir: Path, logs: Path, reference: Path) -> None:
    """Finish the run under torchrun with 2 ranks; compare it with the uninterrupted one."""
    restart = [*args, "--resume"] if (run_dir / "last.pt").is_file() else [*args, "--force"]
    process = launch(restart, logs)
    try:
        process.wait(timeout=900)
    except subprocess.TimeoutExpired:
        trial.problems.append("the resumed run did not end within 900 s")
        return
    finally:
        stop_process(process)
    if process.returncode != 0:
        trial.problems.append(f"the resumed run failed: {tail((logs / 'torchrun.log').read_bytes(), 5)}")
        return
    for name in ("last.pt", "best.pt"):
        found = state_differences(run_dir / name, reference / name)
        if found:
            trial.problems.append(f"{len(found)} differences from the uninterrupted run, first {found[:3]}")
    strays = stray_files(run_dir)
    if strays:
        trial.problems.append(f"temporary files left: {', '.join(strays)}")


def run_ddp_failures(
    workdir: Path, seed: int, kills: int, hangs: int, settings: Settings, report=print
) -> list[Trial]:
    """The uninterrupted 2-rank run, then `kills` runs with a rank killed and `hangs` with one stopped, each
    resumed; `report(line)` hears of each as it ends."""
    data = make_toy_data(workdir / "data")
    config = workdir / "dropout.yaml"
    config.write_text(f"model:\n  dropout: {settings.dropout}\n", encoding="utf-8")
    reference = workdir / "uninterrupted"
    first, training, total = run_reference(train_args(data, reference, settings, config), workdir, settings)
    report(f"uninterrupted 2-rank run: {total:.1f} s, its first checkpoint after {first:.1f} s")
    rng = random.Random(seed)
    trials = []
    for number, action in enumerate(["kill"] * kills + ["stop"] * hangs, start=1):
        trial = Trial(number, action, victim=(number - 1) % RANKS)  # rank 0, the one that writes, first
        run_dir = workdir / f"{action}-{number}"
        args = train_args(data, run_dir, settings, config)
        delay = rng.uniform(0, 0.5 * training)  # in the first half of training after the first checkpoint
        interrupt(trial, args, run_dir, workdir / f"logs-{number}", delay, settings)
        if not trial.problems:
            resume(trial, args, run_dir, workdir / f"logs-{number}-resumed", reference)
        report(trial.line())
        trials.append(trial)
    return trials


def main(argv: list[str] | None = None) -> int:
    options = parser(__doc__.split("\n\n")[0])
    options.add_argument("--kills", type=int, default=2, help="runs with a rank killed (default 2)")
    options.add_argument("--hangs", type=int, default=1, help="runs with a rank stopped, SIGSTOP (default 1)")
    options.add_argument("--steps", type=int, default=Settings.steps, help="updates (default %(default)s)")
    options.add_argument(
        "--timeout", type=float, default=Settings.timeout, help="NMT_DISTRIBUTED_TIMEOUT of --hangs runs"
    )
    args = options.parse_args(argv)
    if torchrun() is None or not Path("/proc/self/environ").exists():
        print("SKIPPED: needs torchrun and /proc (Linux)")
        return 0
    settings = Settings(steps=args.steps, timeout=args.timeout)

    def body(workdir: Path) -> list[str]:
        trials = run_ddp_failures(workdir, args.seed, args.kills, args.hangs, settings)
        passed = sum(not trial.problems for trial in trials)
        print(f"ended cleanly, then resumed bitwise equal to the uninterrupted run: {passed}/{len(trials)}")
        return [
            f"{trial.action} {trial.number}: {'; '.join(trial.problems)}"
            for trial in trials
            if trial.problems
        ]

    return run_script(args, "ddp", body)


if __name__ == "__main__":
    sys.exit(main())
