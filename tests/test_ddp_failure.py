"""A data-parallel run that loses a process ends on every other rank, soon, with one line; `--resume`
continues the same trajectory. The last test is tests/stress/ddp_failure.py (`make stress`) in a small size,
under torchrun; the others check its parts: the collective timeout, and which errors mean a lost process."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from stress.common import free_port, torchrun
from stress.ddp_failure import Settings, run_ddp_failures

from nmt.cli.train import lost_process_message
from nmt.errors import UserError
from nmt.training import distributed

GLOO_RESET = (
    "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:1693: "
    "Connection reset by peer. This is typically caused by a remote worker hanging or bugs in the "
    "application."
)


def test_errors_of_a_lost_process_are_told_from_other_errors():
    assert (
        distributed.lost_process(RuntimeError(GLOO_RESET))
        == "Read error [127.0.0.1]:1693: Connection reset by peer"
    )
    assert (
        distributed.lost_process(dist.DistNetworkError("Connection closed by peer"))
        == "Connection closed by peer"
    )
    assert distributed.lost_process(RuntimeError("Default process group has not been initialized")) is None
    assert distributed.lost_process(RuntimeError("mat1 and mat2 shapes cannot be multiplied")) is None
    assert distributed.lost_process(ValueError(GLOO_RESET)) is None


def test_the_collective_timeout_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(distributed.TIMEOUT_VARIABLE, raising=False)
    assert distributed.collective_timeout().total_seconds() == distributed.DEFAULT_TIMEOUT_SECONDS
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "12.5")
    assert distributed.collective_timeout().total_seconds() == 12.5
    for wrong in ("soon", "0", "-3", "inf", "nan"):
        monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, wrong)
        with pytest.raises(UserError, match=distributed.TIMEOUT_VARIABLE):
            distributed.collective_timeout()


def test_the_surviving_rank_says_what_to_do_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert lost_process_message(RuntimeError("a bug"), tmp_path) is None
    message = lost_process_message(RuntimeError(GLOO_RESET), tmp_path)
    assert message.startswith("rank 1 of 2: lost contact with the other training processes (Read error")
    assert message.endswith("no checkpoint was written yet: start the run again")
    (tmp_path / "last.pt").touch()
    assert lost_process_message(RuntimeError(GLOO_RESET), tmp_path).endswith(
        "restart every process with --resume"
    )
    assert "\n" not in message
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process: a gloo error there is not a lost process
    assert lost_process_message(RuntimeError(GLOO_RESET), tmp_path) is None


def member(rank: int, port: int, result: str) -> None:
    """A member of a group of 2 on gloo: rank 1 hangs (alive, its connections open), rank 0 waits for it."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK="0"
    )
    os.environ[distributed.TIMEOUT_VARIABLE] = "2"
    torch.set_num_threads(1)
    context = distributed.from_environment()
    distributed.init_process_group(context, torch.device("cpu"))
    if rank == 1:
        time.sleep(120)  # ended by the test
        return
    start = time.monotonic()
    try:
        distributed.gather_objects(rank, context)
        outcome = {"error": None}
    except RuntimeError as error:
        outcome = {"error": distributed.lost_process(error), "seconds": time.monotonic() - start}
    Path(result).write_text(json.dumps(outcome), encoding="utf-8")


@pytest.mark.slow
def test_a_hanging_rank_ends_the_other_after_the_timeout(tmp_path):
    spawn = multiprocessing.get_context("spawn")
    port, result = free_port(), tmp_path / "rank0.json"
    members = [spawn.Process(target=member, args=(rank, port, str(result))) for rank in (0, 1)]
    for process in members:
        process.start()
    try:
        members[0].join(timeout=120)
    finally:
        for process in members:
            process.kill()
            process.join()
    outcome = json.loads(result.read_text(encoding="utf-8"))
    assert outcome["error"] is not None and "Timed out" in outcome["error"], outcome
    assert 1.5 < outcome["seconds"] < 30, outcome  # the 2 s timeout, not torch's 30 minutes


@pytest.mark.slow
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
@pytest.mark.skipif(
    not Path("/proc/self/environ").exists(), reason="finding the ranks' processes needs /proc"
)
def test_a_killed_rank_ends_the_run_and_resume_continues_it_bitwise(tmp_path):
    settings = Settings(steps=10, save_every=5, validate_every=5, dev_sentences=8)
    trials = run_ddp_failures(tmp_path, seed=0, kills=1, hangs=0, settings=settings, report=lambda line: None)
    assert [trial.problems for trial in trials] == [[]], [trial.line() for trial in trials]
