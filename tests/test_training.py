"""Training: schedules, the loss, accumulation, clipping, non-finite updates, early stopping, checkpoints,
exact resumption, and the `nmt train` command."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
from conftest import make_prepared, run_nmt, toy_pairs

from nmt.checkpoint import load_checkpoint
from nmt.config import Schedule, TrainConfig
from nmt.data.prepared import PreparedData
from nmt.errors import UserError
from nmt.models import model_config, train_config
from nmt.training import train, trainer
from nmt.training.limits import StopReason
from nmt.training.run import fit_to_vocabulary
from nmt.training.schedules import (
    LRState,
    Plateau,
    after_validation,
    inverse_sqrt_lr,
    learning_rate,
    observe,
    plateau_decay,
    should_stop_early,
)
from nmt.training.setup import set_up
from nmt.training.trainer import MAX_BAD_UPDATES, Trainer
from nmt.training.update import clip_gradients, token_loss
from nmt.training.validation import Validation

pytestmark = pytest.mark.usefixtures("one_thread")


FAST = {"dev_sentences": 4, "validate_every": 1000, "save_every": 1000, "device": "cpu"}


def configs(arch="transformer", model=None, **training):
    return model_config(arch, "tiny", model or {}), train_config(arch, "tiny", {**FAST, **training})


def run(data, run_dir, arch="transformer", model=None, resume=None, force=False, **training):
    model_cfg, train_cfg = configs(arch, model, **training)
    return train(data, arch, model_cfg, train_cfg, run_dir, resume=resume, force=force)


def make_trainer(data, run_dir, arch="transformer", model=None, **training) -> Trainer:
    prepared = PreparedData.open(data)
    model_cfg, train_cfg = configs(arch, model, **training)
    run_dir.mkdir(parents=True, exist_ok=True)
    model_cfg = fit_to_vocabulary(model_cfg, prepared.tokenizers)
    return Trainer(set_up(prepared, arch, model_cfg, train_cfg, torch.device("cpu")), run_dir)


def gradients(model) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------------------------------------
# Schedules (pure functions)


def test_inverse_sqrt_warms_up_linearly_then_decays_with_the_square_root():
    peak, warmup = 1e-3, 100
    assert inverse_sqrt_lr(1, warmup, peak) == pytest.approx(peak / warmup)
    assert inverse_sqrt_lr(50, warmup, peak) == pytest.approx(peak / 2)
    assert inverse_sqrt_lr(warmup, warmup, peak) == pytest.approx(peak)
    assert inverse_sqrt_lr(4 * warmup, warmup, peak) == pytest.approx(peak / 2)
    rates = [inverse_sqrt_lr(s, warmup, peak) for s in range(1, 1000)]
    assert max(rates) == pytest.approx(peak)
    assert all(a < b for a, b in zip(rates[: warmup - 1], rates[1:warmup], strict=True))
    assert all(a > b for a, b in zip(rates[warmup:], rates[warmup + 1 :], strict=False))


def test_plateau_decays_after_patience_and_never_below_min_lr():
    plateau = Plateau()
    for score in (10.0, 12.0):
        plateau = observe(plateau, score)
    assert plateau == Plateau(best=12.0, bad=0)
    plateau = observe(observe(plateau, 11.0), 12.0)  # equal is not better
    assert plateau.bad == 2
    lr, after = plateau_decay(1e-3, plateau, patience=2, factor=0.5, min_lr=1e-6)
    assert lr == pytest.approx(5e-4) and after.bad == 0 and after.best == 12.0
    assert plateau_decay(1e-3, observe(Plateau(best=1.0), 0.5), patience=2, factor=0.5, min_lr=0)[0] == 1e-3
    assert plateau_decay(1.5e-6, plateau, patience=2, factor=0.5, min_lr=1e-6)[0] == 1e-6


def test_schedules_through_the_training_config():
    plateau_cfg = TrainConfig(schedule=Schedule.plateau, lr=1e-3, plateau_patience=1, plateau_factor=0.1)
    state = LRState(plateau_lr=1e-3)
    assert learning_rate(plateau_cfg, 7, state) == 1e-3
    state = after_validation(plateau_cfg, after_validation(plateau_cfg, state, 5.0), 4.0)
    assert learning_rate(plateau_cfg, 8, state) == pytest.approx(1e-4)
    constant = TrainConfig(schedule=Schedule.constant, lr=3e-4)
    assert learning_rate(constant, 1, state) == learning_rate(constant, 10_000, state) == 3e-4
    assert should_stop_early(Plateau(best=1.0, bad=3), patience=3)
    assert not should_stop_early(Plateau(best=1.0, bad=3), patience=0)


# ------------------------------------------------------------------------------------------------------------
# Loss, accumulation, clipping


def test_label_smoothed_loss_matches_its_definition_and_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    target = torch.tensor([[4, 5, 0], [6, 0, 0]])  # 0 = PAD
    eps = 0.1
    log_probs = logits.log_softmax(-1)
    real = target != 0
    nll = -log_probs.gather(-1, target[..., None]).squeeze(-1)
    smooth = -log_probs.mean(-1)
    expected = ((1 - eps) * nll + eps * smooth)[real].sum()
    torch.testing.assert_close(token_loss(logits, target, eps), expected)
    assert token_loss(logits, target, 0.0) == pytest.approx(float(nll[real].sum()), rel=1e-6)
    assert token_loss(logits.bfloat16(), target, 0.0).dtype == torch.float32


def test_accumulating_two_half_batches_equals_one_full_batch(toy_data, tmp_path):
    trainer = make_trainer(toy_data, tmp_path, label_smoothing=0.1)
    indices = np.arange(16)
    total = int(trainer.training.pairs.tgt_lengths[indices].sum())
    full = trainer.updater.accumulate([indices], total, trainer.load_batch)
    full_grads = gradients(trainer.model)
    halves = trainer.updater.accumulate([indices[:8], indices[8:]], total, trainer.load_batch)
    torch.testing.assert_close(halves, full)
    for name, grad in gradients(trainer.model).items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6)
    assert full_grads


def test_clipping_sees_the_accumulated_gradient(toy_data, tmp_path):
    trainer = make_trainer(toy_data, tmp_path, clip_norm=0.01)
    indices = np.arange(16)
    total = int(trainer.training.pairs.tgt_lengths[indices].sum())
    trainer.updater.accumulate([indices[:8], indices[8:]], total, trainer.load_batch)
    true_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients(trainer.model).values()]))
    norm = clip_gradients(trainer.model, trainer.config.clip_norm)
    torch.testing.assert_close(norm, true_norm)
    assert true_norm > 0.01  # so that clipping had something to do
    clipped = torch.linalg.vector_norm(torch.stack([g.norm() for g in gradients(trainer.model).values()]))
    assert clipped == pytest.approx(0.01, rel=1e-3)


# ------------------------------------------------------------------------------------------------------------
# Non-finite losses, early stopping, retention


def poison(trainer: Trainer, bad_calls: set[int]):
    """Make the model's forward return NaN logits on the given (0-based) calls."""
    forward, calls = trainer.model.forward, [0]

    def patched(*args):
        logits = forward(*args)
        calls[0] += 1
        return logits * float("nan") if calls[0] - 1 in bad_calls else logits

    trainer.model.forward = patched


def test_a_nonfinite_loss_skips_the_update(toy_data, tmp_path, caplog):
    trainer = make_trainer(toy_data, tmp_path, max_steps=4)
    poison(trainer, {1, 2})
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.fit()
    assert result.steps == 4
    state = trainer.updater.optimizer.state[next(trainer.model.parameters())]
    assert int(state["step"]) == 2  # two real updates; the NaN ones never reached the optimizer
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    assert "non-finite" in caplog.text


def test_repeated_nonfinite_losses_stop_training_and_keep_the_last_checkpoint(toy_data, tmp_path):
    trainer = make_trainer(toy_data, tmp_path, max_steps=30, save_every=2)
    poison(trainer, set(range(2, 100)))
    with pytest.raises(UserError, match="diverged"):
        trainer.fit()
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.meta["step"] == 2  # the last good one, not overwritten after the failure
    assert all(torch.isfinite(v).all() for v in checkpoint.model_state.values() if v.is_floating_point())
    assert trainer.progress.step == 2 + MAX_BAD_UPDATES


def scripted_bleu(monkeypatch, scores):
    scores = iter(scores)
    monkeypatch.setattr(trainer, "validate", lambda *args: Validation(1.0, math.e, next(scores)))


def test_early_stopping_on_dev_bleu_keeps_the_best_checkpoint(toy_data, tmp_path, monkeypatch):
    scripted_bleu(monkeypatch, [1.0, 3.0, 2.0, 2.5, 2.9, 9.0])
    result = run(toy_data, tmp_path, max_steps=100, validate_every=1, patience=3)
    assert result.stop_reason == StopReason.early_stopping and result.steps == 5
    assert result.best_bleu == 3.0
    assert load_checkpoint(tmp_path / "best.pt").meta["step"] == 2
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [entry["dev_bleu"] for entry in log] == [1.0, 3.0, 2.0, 2.5, 2.9]
    assert {"step", "epoch", "minutes", "train_loss", "dev_loss", "dev_ppl", "lr", "tokens_per_s"} <= set(
        log[0]
    )


def test_the_plateau_schedule_decays_the_learning_rate(toy_data, tmp_path, monkeypatch):
    scripted_bleu(monkeypatch, [5.0, 4.0, 4.0, 4.0, 4.0])
    trainer = make_trainer(
        toy_data, tmp_path, max_steps=5, validate_every=1, schedule="plateau", plateau_patience=2, lr=1e-3
    )
    trainer.fit()
    rates = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    # lr used for steps 1..5; the decay after validations 3 and 5 applies from the next update on
    assert rates[:3] == [1e-3] * 3 and rates[3] == pytest.approx(5e-4)


def test_only_the_newest_step_checkpoints_are_kept(toy_data, tmp_path):
    run(toy_data, tmp_path, max_steps=8, save_every=2, keep_checkpoints=2)
    assert sorted(p.name for p in tmp_path.glob("ckpt-*.pt")) == ["ckpt-6.pt", "ckpt-8.pt"]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


# ------------------------------------------------------------------------------------------------------------
# Checkpoints and exact resumption


def test_a_checkpoint_is_self_describing_and_loads_with_weights_only(toy_data, tmp_path):
    run(toy_data, tmp_path, max_steps=2)
    payload = torch.load(tmp_path / "last.pt", weights_only=True)
    state = payload["train_state"]
    assert {"optimizer", "progress", "rng", "train_config", "vocab_checksum", "data_fingerprint"} <= set(
        state
    )
    assert state["progress"]["step"] == 2
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.arch == "transformer" and checkpoint.languages == {"source": "src", "target": "tgt"}
    assert checkpoint.model_config.share_embeddings  # the toy data's vocabulary is joint
    model = checkpoint.build_model()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in checkpoint.model_state.items())


def assert_same_state(path_a, path_b):
    a, b = torch.load(path_a, weights_only=True), torch.load(path_b, weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for key, state in a["train_state"]["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["train_state"]["optimizer"]["state"][key][name]), (key, name)
    assert a["train_state"]["progress"]["step"] == b["train_state"]["progress"]["step"]
    assert a["train_state"]["progress"]["position"] == b["train_state"]["progress"]["position"]


@pytest.mark.parametrize("arch", ["rnn", "rnnsearch", "transformer"])
def test_a_resumed_run_equals_an_uninterrupted_one_bitwise(toy_data, tmp_path, arch):
    settings = {"validate_every": 2, "accumulate": 3}
    dropout = {"dropout": 0.3}
    run(toy_data, tmp_path / "straight", arch, dropout, max_steps=7, **settings)
    run(toy_data, tmp_path / "halves", arch, dropout, max_steps=3, **settings)
    result = run(
        toy_data,
        tmp_path / "halves",
        arch,
        dropout,
        resume=tmp_path / "halves" / "last.pt",
        max_steps=7,
        **settings,
    )
    assert result.steps == 7 and result.epoch > 1  # crossed an epoch boundary
    assert_same_state(tmp_path / "straight" / "last.pt", tmp_path / "halves" / "last.pt")


def test_sigint_saves_and_the_run_resumes_exactly(toy_data, tmp_path, monkeypatch):
    run(toy_data, tmp_path / "straight", model={"dropout": 0.2}, max_steps=5)
    update, calls = Trainer._update, [0]

    def interrupted_update(self, window):
        update(self, window)
        calls[0] += 1
        if calls[0] == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Trainer, "_update", interrupted_update)
    result = run(toy_data, tmp_path / "interrupted", model={"dropout": 0.2}, max_steps=5)
    assert result.stop_reason == StopReason.interrupted and result.steps == 2
    monkeypatch.setattr(Trainer, "_update", update)
    run(
        toy_data,
        tmp_path / "interrupted",
        model={"dropout": 0.2},
        resume=tmp_path / "interrupted" / "last.pt",
        max_steps=5,
    )
    assert_same_state(tmp_path / "straight" / "last.pt", tmp_path / "interrupted" / "last.pt")


def test_resuming_another_model_or_vocabulary_is_refused(toy_data, tmp_path):
    run(toy_data, tmp_path / "run", max_steps=1)
    last = tmp_path / "run" / "last.pt"
    with pytest.raises(UserError, match="'transformer' checkpoint"):
        run(toy_data, tmp_path / "run", arch="rnn", resume=last, max_steps=2)
    with pytest.raises(UserError, match="d_model"):
        run(toy_data, tmp_path / "run", model={"d_model": 32}, resume=last, max_steps=2)
    other = make_prepared(
        tmp_path / "other", toy_pairs(60, seed=5), toy_pairs(5, seed=6), toy_pairs(5, seed=7), vocab_size=60
    )
    with pytest.raises(UserError, match="vocabulary"):
        run(other, tmp_path / "run", resume=last, max_steps=2)


def test_a_fresh_run_never_overwrites_checkpoints(toy_data, tmp_path):
    run(toy_data, tmp_path, max_steps=1)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(UserError, match="--resume"):
        run(toy_data, tmp_path, max_steps=1)
    assert (tmp_path / "last.pt").read_bytes() == before
    assert run(toy_data, tmp_path, max_steps=1, force=True).steps == 1


# ------------------------------------------------------------------------------------------------------------
# The command line


def test_nmt_train_end_to_end(toy_data, tmp_path):
    out = tmp_path / "run"
    result = run_nmt(
        "train",
        "--data",
        toy_data,
        "--model",
        "rnn",
        "--preset",
        "tiny",
        "--out",
        out,
        "--max-steps",
        "20",
        "--validate-every",
        "10",
        "--dev-sentences",
        "4",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    assert (out / "best.pt").exists() and (out / "last.pt").exists() and (out / "config.yaml").exists()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [10, 20]
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    # The saved config is a valid --config file; resuming continues the same run.
    result = run_nmt(
        "train",
        "--data",
        toy_data,
        "--model",
        "rnn",
        "--out",
        out,
        "--resume",
        "--max-steps",
        "22",
        "--config",
        out / "config.yaml",
    )
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(out / "last.pt").meta["step"] == 22


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


BAD_INPUTS = {
    "missing data": (["--data", "{tmp}/nowhere"], "data directory not found"),
    "empty data": (["--data", "{tmp}"], "not a prepared data directory"),
    "unknown model": (["--model", "lstm"], "lstm"),
    "unknown preset": (["--preset", "huge"], "unknown preset 'huge'"),
    "unknown config key": (["--config", "{tmp}/bad.yaml"], "did you mean 'warmup_steps'"),
    "no stopping limit": (["--max-steps", None], "no stopping limit"),
    "budget too small": (["--batch-tokens", "2"], "no training pairs left"),
    "resume another model": (["--resume-from", "{tmp}/run/last.pt"], "cannot resume"),
    "existing checkpoints": (["--out", "{tmp}/run"], "--resume"),
    "option of another model": (["--attention", "dot"], "--attention does not apply to model 'transformer'"),
}


@pytest.fixture(scope="module")
def rnn_run(toy_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "run"
    result = run_nmt(
        "train",
        "--data",
        toy_data,
        "--model",
        "rnn",
        "--preset",
        "tiny",
        "--out",
        path,
        "--max-steps",
        "1",
        "--dev-sentences",
        "2",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.stderr
    return path


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_exit_code_2(case, toy_data, tmp_path, rnn_run):
    write(tmp_path / "bad.yaml", "train:\n  warmup_step: 10\n")
    (tmp_path / "run").symlink_to(rnn_run)
    options = {
        "--data": str(toy_data),
        "--model": "transformer",
        "--preset": "tiny",
        "--out": str(tmp_path / "new"),
        "--max-steps": "1",
        "--dev-sentences": "2",
        "--device": "cpu",
    }
    changes, message = BAD_INPUTS[case]
    for name, value in zip(changes[::2], changes[1::2], strict=True):
        options[name] = None if value is None else value.format(tmp=tmp_path)
    args = [item for name, value in options.items() if value is not None for item in (name, value)]
    result = run_nmt("train", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    if case != "unknown model":  # Typer reports its own choice errors
        assert result.stderr.count("error:") == 1 and "Traceback" not in result.stderr


def test_a_resumed_run_keeps_its_model(toy_data, tmp_path, rnn_run):
    """Options that would change what the saved weights compute are refused on --resume, before anything."""
    write(tmp_path / "bigger.yaml", "model:\n  hidden_dim: 99\n")
    out = tmp_path / "new"
    result = run_nmt(
        "train",
        *("--data", toy_data, "--model", "rnn", "--out", out, "--resume-from", rnn_run / "last.pt"),
        *("--config", tmp_path / "bigger.yaml", "--max-steps", "2", "--device", "cpu"),
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "a resumed run keeps its model (got hidden_dim=99" in result.stderr
    assert result.stderr.count("error:") == 1 and not out.exists()
