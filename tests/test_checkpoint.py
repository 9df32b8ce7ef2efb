"""Checkpoints load with weights_only=True: a file that would run code when unpickled is refused."""

from __future__ import annotations

from conftest import run_nmt, save_checkpoint_that_runs_code


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    crafted = save_checkpoint_that_runs_code(tmp_path / "crafted.pt", marker)
    source = tmp_path / "in.txt"
    source.write_text("hello\n", encoding="utf-8")

    result = run_nmt(
        "translate", "--checkpoint", crafted, "--input", source, "--output", tmp_path / "out.txt"
    )

    assert result.exit_code == 2
    assert "refusing to load" in result.stderr and str(crafted) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not marker.exists()  # the pickled call never ran
    assert not (tmp_path / "out.txt").exists()
