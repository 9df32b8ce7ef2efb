"""Budgets that hold: --max-minutes includes the end's validation and last.pt, and a run stopped by a limit
and resumed picks the same best.pt as a run that never stopped."""

from __future__ import annotations

import json
import math
import signal
import time

import pytest
import torch

from nmt.checkpoint import load_checkpoint
from nmt.models import architecture, model_config, train_config
from nmt.training import train, trainer
from nmt.training.limits import RecentCosts, StopReason, TimeBudget, Work, multiples_between
from nmt.training.run_files import BEST, LAST, SCHEDULED_BEST
from nmt.training.state import Progress
from nmt.training.trainer import Trainer
from nmt.training.validation import Validation

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"dev_sentences": 4, "validate_every": 1000, "save_every": 1000, "device": "cpu"}


def run(data, run_dir, resume=None, **training):
    model = model_config("transformer", "tiny", {"dropout": 0.2})
    return train(
        data, "transformer", model, train_config("transformer", "tiny", {**FAST, **training}), run_dir, resume
    )


def model_state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def assert_same_model(path_a, path_b):
    a, b = model_state(path_a), model_state(path_b)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def log_of(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture
def bleu_by_step(monkeypatch):
    """`bleu_by_step({step: bleu})`: validation scores the model of each step as given."""

    def install(scores: dict[int, float]) -> None:
        validating = Trainer._validate
        current = {}

        def at_step(self, scheduled, result=None):
            current["step"] = self.progress.step
            return validating(self, scheduled, result)

        monkeypatch.setattr(Trainer, "_validate", at_step)
        monkeypatch.setattr(
            trainer, "validate", lambda *args: Validation(1.0, math.e, scores[current["step"]])
        )

    return install


class FakeClock:
    """Training time that advances only with updates, by `update` seconds each."""

    def __init__(self, update: float):
        self.now, self.update = 0.0, update

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------------------------------------------------------
# Resuming after a limit gives the best.pt of an uninterrupted run

# Scheduled validations at steps 4, 8 and 12; a run stopped at 6 validates there too, and that model beats
# step 4's. An uninterrupted run keeps step 8's model; a resumed run that compared its validations with the
# BLEU of step 6 would keep step 6's.
SCORES = {4: 10.0, 6: 30.0, 8: 20.0, 12: 15.0}


@pytest.mark.parametrize("limit", ["steps", "minutes"])
def test_a_run_resumed_after_a_limit_keeps_the_best_checkpoint_of_an_uninterrupted_one(
    toy_data, tmp_path, bleu_by_step, monkeypatch, limit
):
    bleu_by_step(SCORES)
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    run(toy_data, straight, max_steps=12, validate_every=4)
    assert load_checkpoint(straight / BEST).meta["step"] == 8

    if limit == "steps":
        first = run(toy_data, halves, max_steps=6, validate_every=4)
    else:  # 10 s per update on a clock that only updates move: a 60 s budget ends after update 6
        clock = FakeClock(update=10.0)
        monkeypatch.setattr(Trainer, "clock", staticmethod(clock))
        updating = Trainer._update

        def timed_update(self, window):
            updating(self, window)
            clock.now += clock.update

        monkeypatch.setattr(Trainer, "_update", timed_update)
        first = run(toy_data, halves, max_minutes=1.0, validate_every=4)
        assert first.stop_reason == StopReason.max_minutes
    # The stopped run's best.pt is the model it ended with, which beat every scheduled validation ...
    assert first.steps == 6 and first.best_bleu == 30.0
    assert_same_model(halves / BEST, halves / LAST)
    assert load_checkpoint(halves / SCHEDULED_BEST).meta["step"] == 4
    progress = Progress.from_dict(torch.load(halves / LAST, weights_only=True)["train_state"]["progress"])
    assert progress.best_bleu == 10.0 and progress.provisional_bleu == 30.0

    # ... and resuming puts back what the scheduled validations chose, so the rest goes as if never stopped.
    result = run(toy_data, halves, resume=halves / LAST, max_steps=12, validate_every=4)
    assert result.steps == 12 and result.best_bleu == 20.0
    assert load_checkpoint(halves / BEST).meta["step"] == 8
    assert_same_model(straight / BEST, halves / BEST)
    assert not (halves / SCHEDULED_BEST).exists()
    saved = {
        name: torch.load(name / LAST, weights_only=True)["train_state"]["progress"]
        for name in (straight, halves)
    }
    for values in saved.values():
        values.pop("seconds")
    assert saved[straight] == saved[halves]
    # The log tells the end-of-session validation apart from the scheduled ones.
    entries = [(e["step"], e["scheduled"], e["best_bleu"], e.get("provisional_best")) for e in log_of(halves)]
    assert entries == [
        (4, True, 10.0, None),
        (6, False, 10.0, True),
        (8, True, 20.0, None),
        (12, True, 20.0, None),
    ]


def test_a_resumed_run_that_trains_removes_a_provisional_best_that_no_scheduled_validation_chose(
    toy_data, tmp_path, monkeypatch
):
    run(toy_data, tmp_path, max_steps=3)  # validated only at the end
    assert (tmp_path / BEST).exists() and not (tmp_path / SCHEDULED_BEST).exists()
    provisional = (tmp_path / BEST).read_bytes()
    # A resumed session that trains nothing leaves it as it is.
    assert run(toy_data, tmp_path, resume=tmp_path / LAST, max_steps=3).best_bleu is not None
    assert (tmp_path / BEST).read_bytes() == provisional
    updating = Trainer._update

    def interrupted_update(self, window):
        updating(self, window)
        signal.raise_signal(signal.SIGINT)  # stop after the first update, with no validation

    monkeypatch.setattr(Trainer, "_update", interrupted_update)
    result = run(toy_data, tmp_path, resume=tmp_path / LAST, max_steps=6)
    assert result.stop_reason == StopReason.interrupted and result.steps == 4
    assert not (tmp_path / BEST).exists() and result.best_bleu is None


def test_a_checkpoint_from_before_provisional_best_still_resumes():
    values = Progress(step=3, best_bleu=1.5).to_dict()
    del values["provisional_bleu"]
    progress = Progress.from_dict(values)
    assert progress.provisional_bleu == -math.inf and progress.best_pt_bleu == 1.5


# ------------------------------------------------------------------------------------------------------------
# The time limit holds, the end's validation and checkpoint included


@pytest.fixture
def slow_decoding(monkeypatch):
    """Every greedy decoding step takes `SECONDS_PER_STEP` more: validations of the untrained model, which
    decode to the length limit, take a few seconds."""
    model = architecture("transformer").model
    step = model.step

    def slow_step(self, prev, state):
        time.sleep(SECONDS_PER_STEP)
        return step(self, prev, state)

    monkeypatch.setattr(model, "step", slow_step)


SECONDS_PER_STEP = 0.05
DEV_SENTENCES = 8  # one batch: a validation takes about 1.5 s (30 steps) or more
BUDGET_S = 6.0
TOLERANCE_S = 1.0


@pytest.mark.parametrize("validate_every", [1000, 4], ids=["validated-only-at-the-end", "validated-every-4"])
def test_the_time_limit_holds_with_the_final_validation_and_checkpoint(
    toy_data, tmp_path, slow_decoding, validate_every
):
    start = time.perf_counter()
    result = run(
        toy_data,
        tmp_path,
        max_minutes=BUDGET_S / 60,
        dev_sentences=DEV_SENTENCES,
        validate_every=validate_every,
    )
    wall = time.perf_counter() - start
    assert result.stop_reason == StopReason.max_minutes
    seconds = 60 * result.minutes
    # Training went on while there was room, and stopped early enough for the end's validation.
    assert BUDGET_S - 3.0 < seconds <= BUDGET_S + TOLERANCE_S, seconds
    assert wall < seconds + 3.0  # the rest is setting up: data, model
    log = log_of(tmp_path)
    assert log[-1]["step"] == result.steps and log[-1]["scheduled"] == (result.steps % validate_every == 0)
    if validate_every == 1000:  # the first validation is the end's: only the estimate could leave room for it
        assert len(log) == 1
    else:
        assert [entry["scheduled"] for entry in log[:-1]] == [True] * (len(log) - 1)


def test_an_estimate_far_too_long_is_measured_before_it_ends_the_run(
    toy_data, tmp_path, slow_decoding, monkeypatch
):
    """The estimate of the first validation says 5 of the 6 seconds; the validation takes about 1.5. When the
    estimate says stop, the end's validation runs for real, and training goes on into the time it leaves.
    That validation is not repeated if nothing more fits, and not logged if training went on."""
    monkeypatch.setattr(trainer, "estimate_validation_seconds", lambda *args: 5.0)
    result = run(
        toy_data, tmp_path, max_minutes=BUDGET_S / 60, dev_sentences=DEV_SENTENCES, validate_every=1000
    )
    seconds = 60 * result.minutes
    assert result.stop_reason == StopReason.max_minutes
    assert BUDGET_S - 3.0 < seconds <= BUDGET_S + TOLERANCE_S, seconds  # trusting 5 s would stop near 2.5
    log = log_of(tmp_path)
    assert len(log) == 1 and log[0]["step"] == result.steps and not log[0]["scheduled"]


# ------------------------------------------------------------------------------------------------------------
# The cost estimates and the arithmetic of the budget


def test_recent_costs_follow_the_load_and_shrug_off_one_outlier():
    costs = RecentCosts(keep=3, guess=5.0)
    assert costs.expected() == 5.0  # until measured
    for seconds in (1.0, 2.0, 1.5):
        costs.add(seconds)
    assert costs.expected() == 2.0  # few measurements: their maximum
    costs.add(0.5)
    costs.add(0.5)
    costs.add(0.5)
    assert costs.expected() == 0.5  # the older, slower ones are forgotten
    many = RecentCosts(keep=50)
    for index in range(50):
        many.add(10.0 if index == 7 else 1.0)
    assert many.expected() == 1.0


def test_the_budget_counts_updates_validations_and_saves():
    budget = TimeBudget(seconds=10.0)
    budget.update.add(1.0)
    budget.validation.add(2.0)
    budget.save.add(0.5)
    assert budget.needs(Work(updates=3, validations=2, saves=2)) == 8.0
    assert budget.fits(2.0, Work(updates=3, validations=2, saves=2))
    assert not budget.fits(2.5, Work(updates=3, validations=2, saves=2))
    assert (
        multiples_between(4, 8, 4) == 1
        and multiples_between(4, 7, 4) == 0
        and multiples_between(0, 50, 4) == 12
    )
