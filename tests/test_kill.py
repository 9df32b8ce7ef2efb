"""Training survives kill -9 at any moment: checkpoints are written atomically, so `--resume` always finds a
whole last.pt, and the resumed run ends with exactly the parameters of a run that was never interrupted.

The killed runs are real `nmt train` processes. To kill one at a chosen moment (in the middle of writing a
checkpoint, or just after one), the test starts it through a small launcher that wraps the checkpoint writer
and sends SIGKILL to its own process there."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import run_nmt

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

    resumed = run_nmt(*train_args(toy_data, out), "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    final = parameters(out / "last.pt")
    assert final.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        assert torch.equal(final[name], tensor), name
