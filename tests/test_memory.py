"""Running out of GPU memory: batches are split, a sentence that cannot fit is left out, and the run goes on.

No GPU is needed: the model (or the search) is made to raise CUDA's out-of-memory error for batches above a
size, exactly as the allocator would.
"""

from __future__ import annotations

import logging

import pytest
import torch
from test_training import make_trainer

import nmt.decoding.translation
from nmt.config import DecodeConfig
from nmt.decoding.translation import load_translator, translate_lines
from nmt.memory import is_out_of_memory, run_in_pieces
from nmt.training.validation import validate

CPU = torch.device("cpu")


def out_of_memory() -> torch.cuda.OutOfMemoryError:
    return torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_out_of_memory_is_recognised_and_nothing_else_is():
    assert is_out_of_memory(out_of_memory())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))


def test_run_in_pieces_splits_until_the_pieces_fit_and_keeps_the_order():
    succeeded = []

    def run(items):
        if len(items) > 2 or 7 in items and len(items) > 1 or 9 in items:
            raise out_of_memory()
        succeeded.append(items)
        return [item * 10 for item in items]

    results = run_in_pieces(run, list(range(10)), CPU, does_not_fit=lambda item: -1)
    assert results == [0, 10, 20, 30, 40, 50, 60, 70, 80, -1]  # 9 never fits, 7 fits alone
    assert [7] in succeeded and sorted(sum(succeeded, [])) == list(range(9))


def test_run_in_pieces_passes_other_errors_through():
    def run(items):
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        run_in_pieces(run, [1, 2], CPU, does_not_fit=lambda item: None)


# ------------------------------------------------------------------------------------------------------------
# Translation


def failing_search(monkeypatch, max_rows: int, max_source_len: int):
    """Make beam search run out of memory on batches of more than `max_rows` sentences or with a source
    longer than `max_source_len` subwords."""
    search = nmt.decoding.translation.beam_search

    def patched(model, src, src_lengths, **options):
        if src.size(0) > max_rows or src.size(1) > max_source_len:
            raise out_of_memory()
        return search(model, src, src_lengths, **options)

    monkeypatch.setattr(nmt.decoding.translation, "beam_search", patched)


@pytest.mark.parametrize("arch", ["rnnsearch", "transformer"])
def test_translation_splits_batches_that_run_out_of_memory(arch, tiny_checkpoint, monkeypatch, caplog):
    model, checkpoint = load_translator(tiny_checkpoint(arch), CPU)
    lines = ["alba bero", "cima dano eske", "fora", "gilu hopa ivra juno", "", "kela lumo", "alba " * 40]
    config = DecodeConfig(beam_size=2, max_len_a=1.0, max_len_b=2)
    expected = [t.text for t in translate_lines(model, checkpoint.tokenizers, lines, config, "cpu")]
    longest = 1 + max(len(checkpoint.tokenizers.source.encode(line)) for line in lines[:-1])  # with EOS

    failing_search(monkeypatch, max_rows=2, max_source_len=longest)
    with caplog.at_level(logging.WARNING):
        got = [t.text for t in translate_lines(model, checkpoint.tokenizers, lines, config, "cpu")]
    assert got[:-1] == expected[:-1]  # split batches translate exactly as whole ones
    assert got[-1] == ""  # the 40-word line does not fit even alone: left empty, and the run goes on
    assert "running it in two halves" in caplog.text
    assert "line 7" in caplog.text and "does not fit" in caplog.text


# ------------------------------------------------------------------------------------------------------------
# Training and validation


def validate_dev(trainer):
    return validate(
        trainer.model, trainer.dev, trainer.data.tokenizers.target, trainer.device, trainer.autocast
    )


def failing_forward(trainer, max_rows: int, max_source_len: int = 10**9):
    """Make the model run out of memory on batches of more than `max_rows` sentences or `max_source_len`
    source tokens."""
    forward = trainer.model.forward
    calls = {"failed": 0}

    def patched(src, src_lengths, tgt_in):
        if src.size(0) > max_rows or src.size(1) > max_source_len:
            calls["failed"] += 1
            raise out_of_memory()
        return forward(src, src_lengths, tgt_in)

    trainer.model.forward = patched
    return calls


@pytest.mark.parametrize("arch", ["rnn", "transformer"])
def test_an_update_that_runs_out_of_memory_is_redone_in_pieces_with_the_same_result(
    arch, toy_data, tmp_path, caplog, one_thread
):
    steps = {"max_steps": 6, "batch_tokens": 256, "accumulate": 2}
    plain = make_trainer(toy_data, tmp_path / "plain", arch, **steps)
    plain.fit()
    split = make_trainer(toy_data, tmp_path / "split", arch, **steps)
    calls = failing_forward(split, max_rows=8)
    with caplog.at_level(logging.WARNING):
        result = split.fit()
    assert result.steps == 6 and calls["failed"] > 0
    assert "redoing the update with it in halves" in caplog.text
    for (name, a), b in zip(plain.model.state_dict().items(), split.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_training_pair_that_never_fits_is_left_out_and_training_goes_on(
    toy_data, tmp_path, caplog, one_thread
):
    trainer = make_trainer(toy_data, tmp_path, "rnn", max_epochs=1, batch_tokens=256)
    longest = int(trainer.training.pairs.src_lengths.max())
    calls = failing_forward(trainer, max_rows=10**9, max_source_len=longest - 1)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        result = trainer.fit()
    assert result.stop_reason.value == "max-epochs" and calls["failed"] > 0
    assert "does not fit in memory even alone; left out" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())


def test_validation_splits_dev_batches_that_run_out_of_memory(toy_data, tmp_path, one_thread):
    trainer = make_trainer(toy_data, tmp_path, "transformer", max_steps=1, dev_sentences=12)
    expected = validate_dev(trainer)
    failing_forward(trainer, max_rows=3)
    assert len(trainer.dev.batches) == 1 and len(trainer.dev.batches[0]) == 12  # so that there is a split
    got = validate_dev(trainer)
    assert got.bleu == pytest.approx(expected.bleu)
    assert got.dev_loss == pytest.approx(expected.dev_loss, rel=1e-5)
