"""Writing where it cannot: a read-only output directory and a full disk, for every command that writes.

Both are real refusals by the kernel, in a child process running `nmt`:
- read-only: the output directory has mode 0555. Root ignores file modes, so when the tests run as root the
  child first gives up CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, as an ordinary user never had them;
- full disk: RLIMIT_FSIZE makes every write past a size fail (EFBIG), the way a full disk fails (ENOSPC),
  for every writer in the process (Python, Arrow, SentencePiece, torch.save).
Each case must exit with code 2 and one line naming the file, and leave what was there byte for byte, with no
temporary file left behind.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_nmt, snapshot

from nmt.errors import UserError
from nmt.files import atomic_write, check_writable

REPO = Path(__file__).resolve().parent.parent

# The rows these tests add to the bad-input matrix (docs/reliability.md): (command, case) -> test.
WRITE_ERROR_CASES = {
    ("prepare", "read-only output directory"): "test_prepare_into_a_read_only_directory",
    ("train", "read-only run directory"): "test_train_resuming_in_a_read_only_run_directory",
    ("translate", "read-only output directory"): "test_translate_into_a_read_only_directory",
    ("eval", "read-only output directory"): "test_eval_into_a_read_only_directory",
    ("average", "read-only output directory"): "test_average_into_a_read_only_directory",
    ("prepare", "full disk"): "test_prepare_with_a_full_disk_keeps_the_old_data",
    ("train", "full disk"): "test_train_with_a_full_disk_keeps_the_last_checkpoint",
    ("translate", "full disk"): "test_translate_with_a_full_disk_keeps_the_old_output",
    ("eval", "full disk"): "test_eval_with_a_full_disk_keeps_the_old_report",
    ("average", "full disk"): "test_average_with_a_full_disk_keeps_the_old_checkpoint",
}
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _give_up_file_permission_override() -> None:
    """In the child, before exec: drop the capabilities that let root write into a 0555 directory."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.fixture(scope="module")
def read_only_supported():
    try:
        subprocess.run(
            [sys.executable, "-c", "pass"], preexec_fn=_give_up_file_permission_override, check=True
        )
    except (subprocess.SubprocessError, OSError):
        pytest.skip("running as root without CAP_SETPCAP: a 0555 directory cannot be made read-only for us")


def nmt_child(command: str, read_only: bool = False, file_size_limit: int | None = None):
    """Run `nmt COMMAND` (split at spaces) in a child process with the given restriction."""

    def restrict():
        if read_only:
            _give_up_file_permission_override()
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "NMT_LOG_LEVEL": "ERROR",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "nmt.cli.main", *command.split()],
        cwd=REPO,
        env=env,
        preexec_fn=restrict,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def assert_refused_untouched(
    directory: Path, command: str, fragments: tuple[str, ...], **restriction
) -> None:
    """`nmt COMMAND` run with `restriction` (see `nmt_child`) ends in one error line holding `fragments`, and
    nothing under `directory` changed."""
    before = snapshot(directory)
    result = nmt_child(command, **restriction)
    assert_one_line_error(result, *fragments)
    assert snapshot(directory) == before


@pytest.fixture
def read_only(tmp_path, read_only_supported):
    """A read-only directory that already holds a file; mode restored afterwards so pytest can clean up."""
    directory = tmp_path / "read-only"
    directory.mkdir()
    (directory / "kept.txt").write_text("this file must survive\n")
    directory.chmod(0o555)
    yield directory
    directory.chmod(0o755)


@pytest.fixture(scope="module")
def trained_run(toy_data, tmp_path_factory) -> Path:
    """A tiny rnn run with best.pt, last.pt and a step checkpoint."""
    run_dir = tmp_path_factory.mktemp("write-errors") / "run"
    args = ["--data", toy_data, "--model", "rnn", "--preset", "tiny", "--out", run_dir, "--device", "cpu"]
    result = run_nmt("train", *args, "--max-steps", "4", "--save-every", "2", "--dev-sentences", "4")
    assert result.exit_code == 0, result.stderr
    return run_dir


def inputs(tmp_path: Path, lines: int = 300) -> tuple[Path, Path]:
    source, reference = tmp_path / "test.src", tmp_path / "test.ref"
    source.write_text("".join(f"alba bero cima {i}\n" for i in range(lines)))
    reference.write_text("".join(f"CIMA BERO ALBA {i}\n" for i in range(lines)))
    return source, reference


# ------------------------------------------------------------------------------------------------------------
# Read-only output directory: refused before any work, nothing touched


def test_prepare_into_a_read_only_directory(read_only):
    out = read_only / "data"
    command = f"prepare --dataset synthetic --synthetic-size 3000 --out {out}"
    assert_refused_untouched(read_only, command, (str(out), "permission denied"), read_only=True)


def test_train_resuming_in_a_read_only_run_directory(toy_data, trained_run, tmp_path, read_only_supported):
    before = snapshot(trained_run)
    trained_run.chmod(0o555)
    try:
        result = nmt_child(
            f"train --data {toy_data} --model rnn --out {trained_run} --resume --max-steps 8", read_only=True
        )
    finally:
        trained_run.chmod(0o755)
    assert_one_line_error(result, str(trained_run), "permission denied")
    assert snapshot(trained_run) == before


def test_translate_into_a_read_only_directory(tiny_checkpoint, read_only, tmp_path):
    source, _ = inputs(tmp_path)
    before = snapshot(read_only)
    result = nmt_child(
        f"translate -c {tiny_checkpoint('rnn')} -i {source} -o {read_only / 'kept.txt'}", read_only=True
    )
    assert_one_line_error(result, "kept.txt", "permission denied")
    rnnsearch, plots = tiny_checkpoint("rnnsearch"), read_only / "plots"
    result = nmt_child(
        f"translate -c {rnnsearch} -i {source} -o {tmp_path / 'out.txt'} --attention-plot {plots}",
        read_only=True,
    )
    assert_one_line_error(result, "plots", "permission denied")
    assert snapshot(read_only) == before and not (tmp_path / "out.txt").exists()


def test_eval_into_a_read_only_directory(read_only, tmp_path):
    source, reference = inputs(tmp_path)
    before = snapshot(read_only)
    for option in ("--json", "--csv", "--plot"):
        result = nmt_child(
            f"eval -s {source} -r {reference} --system copy={reference} {option} {read_only / 'out'}",
            read_only=True,
        )
        assert_one_line_error(result, str(read_only / "out"), "permission denied")
    assert snapshot(read_only) == before


def test_average_into_a_read_only_directory(trained_run, read_only):
    command = f"average --run-dir {trained_run} --last 2 -o {read_only / 'avg.pt'}"
    assert_refused_untouched(read_only, command, ("avg.pt", "permission denied"), read_only=True)


# ------------------------------------------------------------------------------------------------------------
# Full disk: found while writing; the old output stays as it was and no temporary file is left


def test_prepare_with_a_full_disk_keeps_the_old_data(tmp_path):
    out = tmp_path / "data"
    first = nmt_child(f"prepare --dataset synthetic --synthetic-size 3000 --vocab-size 300 --out {out}")
    assert first.returncode == 0, first.stderr
    # The old directory stays, and no .partial directory is left beside it.
    command = f"prepare --dataset synthetic --synthetic-size 4000 --vocab-size 300 --out {out} --force"
    assert_refused_untouched(tmp_path, command, (str(out), "file too large"), file_size_limit=50_000)


def test_train_with_a_full_disk_keeps_the_last_checkpoint(toy_data, trained_run, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for path in trained_run.iterdir():
        (run_dir / path.name).write_bytes(path.read_bytes())
    checkpoints = {name: (run_dir / name).read_bytes() for name in ("best.pt", "last.pt")}
    result = nmt_child(
        f"train --data {toy_data} --model rnn --out {run_dir} --resume --max-steps 8 --save-every 2",
        file_size_limit=20_000,
    )
    assert_one_line_error(result, str(run_dir), "file too large")
    assert {name: (run_dir / name).read_bytes() for name in checkpoints} == checkpoints
    assert not [path.name for path in run_dir.iterdir() if ".tmp-" in path.name]


def test_translate_with_a_full_disk_keeps_the_old_output(tiny_checkpoint, tmp_path):
    source, _ = inputs(tmp_path, lines=2000)
    output = tmp_path / "out.txt"
    output.write_text("an earlier translation\n")
    command = f"translate -c {tiny_checkpoint('rnn')} -i {source} -o {output} --beam 1"
    assert_refused_untouched(tmp_path, command, ("out.txt", "file too large"), file_size_limit=4_000)


def test_eval_with_a_full_disk_keeps_the_old_report(tmp_path):
    source, reference = inputs(tmp_path)
    report = tmp_path / "report.json"
    report.write_text("{}\n")
    command = f"eval -s {source} -r {reference} --system copy={reference} --json {report}"
    assert_refused_untouched(tmp_path, command, ("report.json", "file too large"), file_size_limit=500)


def test_average_with_a_full_disk_keeps_the_old_checkpoint(trained_run, tmp_path):
    output = tmp_path / "avg.pt"
    output.write_bytes(b"an earlier average")
    result = nmt_child(f"average --run-dir {trained_run} --last 2 -o {output}", file_size_limit=20_000)
    assert_one_line_error(result, "avg.pt", "file too large")
    assert output.read_bytes() == b"an earlier average"
    assert [path.name for path in tmp_path.iterdir()] == ["avg.pt"]


# ------------------------------------------------------------------------------------------------------------
# The library pieces


def test_atomic_write_on_a_full_disk_is_a_user_error_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("old\n")

    def fill_the_disk(handle):
        handle.write(b"half of the new")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(UserError, match=r"out.txt: no space left on the device; free some space"):
        atomic_write(path, fill_the_disk)
    assert path.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_check_writable_creates_nothing(tmp_path):
    check_writable(tmp_path / "new" / "deeper" / "out.txt")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="is a directory"):
        check_writable(tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="is a file, not a directory"):
        check_writable(tmp_path / "file" / "out.txt")


def test_every_write_error_case_has_its_test():
    assert all(callable(globals().get(name)) for name in WRITE_ERROR_CASES.values())
