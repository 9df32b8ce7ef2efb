"""Data-parallel training: one update of 2 processes (gloo, CPU) equals one update of 1 process over the same
sentences, bitwise. With 2 ranks an update takes 2 consecutive batches of the epoch's order, one per rank; a
single process takes the same 2 batches with --accumulate 2, so both see the same global batch. The same holds
for the multi-node launch, two torchrun "nodes" on this machine (tests/stress/two_nodes.py, in full by
`make stress`)."""

from __future__ import annotations

import os

import pytest
import torch
import torch.multiprocessing as mp
from stress.common import free_port, torchrun
from stress.two_nodes import run_comparisons

from nmt.models import model_config, train_config
from nmt.training import train

pytestmark = pytest.mark.usefixtures("one_thread")


SETTINGS = {"max_steps": 1, "dev_sentences": 2, "device": "cpu", "label_smoothing": 0.1}


def worker(rank: int, world_size: int, port: int, data_dir, run_dir) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK="0",
    )
    torch.set_num_threads(1)
    train(
        data_dir,
        "transformer",
        model_config("transformer", "tiny"),
        train_config("transformer", "tiny", {**SETTINGS, "accumulate": 1}),
        run_dir,
    )


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_same_global_batch(toy_data, tmp_path):
    mp.spawn(worker, args=(2, free_port(), toy_data, tmp_path / "ddp"), nprocs=2, join=True)
    train(
        toy_data,
        "transformer",
        model_config("transformer", "tiny"),
        train_config("transformer", "tiny", {**SETTINGS, "accumulate": 2}),
        tmp_path / "single",
    )
    train(  # only the first of the two batches: the second rank's batch must make a difference
        toy_data,
        "transformer",
        model_config("transformer", "tiny"),
        train_config("transformer", "tiny", {**SETTINGS, "accumulate": 1}),
        tmp_path / "half",
    )
    ddp = torch.load(tmp_path / "ddp" / "last.pt", weights_only=True)
    single = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    half = torch.load(tmp_path / "half" / "last.pt", weights_only=True)
    assert ddp["train_state"]["world_size"] == 2 and ddp["train_state"]["progress"]["step"] == 1
    assert ddp["train_state"]["progress"]["tokens"] == single["train_state"]["progress"]["tokens"]
    assert len(ddp["train_state"]["rng"]) == 2  # every rank's dropout generator, for an exact resume
    for key, value in single["model"].items():  # the same sums in the same order: equal to the last bit
        assert torch.equal(ddp["model"][key], value), key
    # Adam's first step moves each weight by about lr * sign(gradient): the second batch flips some signs.
    lr = half["train_state"]["optimizer"]["param_groups"][0]["lr"]
    assert max(float((ddp["model"][key] - value).abs().max()) for key, value in half["model"].items()) > lr


@pytest.mark.slow
@pytest.mark.skipif(torchrun() is None, reason="torchrun is not installed")
def test_two_torchrun_nodes_train_as_one_process_with_the_same_global_batch(tmp_path):
    comparisons = run_comparisons(tmp_path, ["transformer"], ["c10d"], steps=10, report=lambda line: None)
    assert [c.problems for c in comparisons] == [[]], [c.line() for c in comparisons]
