"""Training survives kill -9 at any moment: checkpoints are written atomically, so `--resume` always finds a
whole last.pt, the resumed run ends with exactly the parameters of a run that was never interrupted, and the
temporary file of a write cut short does not outlive the next session.

The killed runs are real `nmt train` processes. To kill one at a chosen moment (in the middle of writing a
checkpoint, or just after one), the test starts it through a small launcher that wraps the checkpoint writer
and sends SIGKILL to its own process there. The last test kills at a random moment instead: it is
tests/stress/kill_train.py (run with 20 kills by `make stress`) in a small size."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import run_nmt
from stress.common import differences, stray_files
from stress.kill_train import Settings, phase_of, run_kill_trials, summary

from nmt.files import remove_stale_temporaries

ROOT = Path(__file__).resolve().parent.parent
STEPS = 24

LAUNCHER = textwrap.dedent(
    """
    import io, os, signal, sys
    import nmt.checkpoint

    KILL_AT, DURING = int(sys.argv[1]), sys.argv[2] == "during"
    real_write = nmt.checkpoint.atomic_write
    calls = 0

    def half_write_then_die(path, write):
        buffer = io.BytesIO()
        write(buffer)
        data = buffer.getvalue()
        def write_half(handle):
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        real_write(path, write_half)

    def atomic_write(path, write):
        global calls
        calls += 1
        if calls == KILL_AT and DURING:
            half_write_then_die(path, write)
        real_write(path, write)
        if calls == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    nmt.checkpoint.atomic_write = atomic_write
    from nmt.cli.main import main
    sys.argv = ["nmt", *sys.argv[3:]]
    main()
    """
)


def train_args(data: Path, out: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--model", "rnnsearch", "--preset", "tiny", "--max-steps", str(STEPS),
        "--save-every", "4", "--validate-every", "8", "--dev-sentences", "8", "--seed", "5",
        "--device", "cpu", "--out", str(out),
    ]  # fmt: skip


def parameters(checkpoint: Path) -> dict[str, torch.Tensor]:
    return torch.load(checkpoint, weights_only=True)["model"]


@pytest.fixture(scope="module")
def uninterrupted(toy_data, tmp_path_factory) -> dict[str, torch.Tensor]:
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = run_nmt(*train_args(toy_data, out))
    assert result.exit_code == 0, result.stderr
    return parameters(out / "last.pt")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "moment"),
    [(2, "during"), (3, "after"), (5, "during"), (6, "after")],
    ids=[
        "while-writing-checkpoint-2",
        "after-checkpoint-3",
        "while-writing-checkpoint-5",
        "after-checkpoint-6",
    ],
)
def test_kill_9_then_resume_equals_an_uninterrupted_run(toy_data, tmp_path, uninterrupted, kill_at, moment):
    out = tmp_path / "run"
    killed = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(kill_at), moment, *train_args(toy_data, out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert (out / "last.pt").is_file()  # the first checkpoint is written before any kill point
    torch.load(out / "last.pt", weights_only=True)  # whole, never half-written

    if moment == "during":  # the killed write's temporary file is still there ...
        assert any(".tmp-" in name for name in stray_files(out)), stray_files(out)
    resumed = run_nmt(*train_args(toy_data, out), "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert stray_files(out) == []  # ... until the next session removes it
    final = parameters(out / "last.pt")
    assert final.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(final[name], tensor), name


@pytest.mark.slow
def test_kill_9_at_a_random_moment_then_resume_equals_an_uninterrupted_run(tmp_path):
    settings = Settings(steps=16, accumulate=1, save_every=4, validate_every=8, dev_sentences=8, timeout=300)
    seconds, trials = run_kill_trials(tmp_path, seed=0, kills=1, settings=settings, report=lambda line: None)
    lines = summary(seconds, trials, settings)
    assert [trial.problems for trial in trials] == [[]], lines
    assert trials[0].restart, lines  # it was finished by --resume or --force


STACK = """Thread 0x00007f45637fe6c0 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 331 in wait

Current thread 0x00007f4593424b80 (most recent call first):
  File "/repo/nmt/files.py", line 140 in atomic_write
  File "/repo/nmt/checkpoint.py", line 70 in save_checkpoint
  File "/repo/nmt/training/trainer.py", line 390 in _save
  File "/repo/nmt/training/trainer.py", line 320 in _validate
  File "/repo/nmt/training/trainer.py", line 181 in fit
  File "/repo/nmt/training/run.py", line 171 in train
  File "/repo/cli/main.py", line 102 in main
  File "<string>", line 9 in <module>
"""


def test_the_phase_of_a_kill_is_read_from_the_innermost_known_frame():
    assert phase_of(STACK) == "checkpoint write"  # best.pt written by a validation: a write
    assert phase_of(STACK.replace(" in _save", " in copy")) == "validation"
    importing = 'Current thread 0x1:\n  File "/repo/nmt/training/run.py", line 19 in <module>\n'
    assert phase_of(importing + '  File "<string>", line 9 in <module>\n') == "start-up (imports)"
    assert phase_of("") == "interpreter start-up"  # before the handler was registered
    assert phase_of("Current thread 0x1:\n  Garbage-collecting\n  <no Python frame>\n") == (
        "exit (interpreter shutdown)"
    )


def test_the_state_comparison_sees_one_changed_bit():
    weights = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}}}
    changed = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"step": torch.tensor(4.0)}}}}
    assert differences(weights, changed) == []
    changed["model"]["w"][1] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))
    assert differences(weights, changed) == ["/model/w"]


def test_only_the_temporary_files_of_ended_processes_are_removed(tmp_path):
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    names = [
        f".last.pt.tmp-{ended.stdout.strip()}",
        f".best.pt.tmp-{os.getpid()}",
        "last.pt",
        ".last.pt.probe-x",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [tmp_path / names[0]]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(names[1:])
