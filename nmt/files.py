"""Files: the one reader of text lines, and writes that never leave a half-written file.

Reading: `read_lines` (a whole file), `stream_lines` (a file, line by line) and `iter_lines` (any binary
stream, such as standard input) are what `nmt prepare`, `nmt translate`, `nmt eval` and the prepared
directory read text with; `decode_lines` is the one decoder under all three. Everywhere:

- UTF-8, gzip-compressed when the name ends in .gz;
- lines end at "\\n" only, and a "\\r" before it is dropped: Unicode line separators inside a sentence
  (U+2028, U+0085, ...) must not change the line count or break the alignment of a parallel corpus;
- a byte-order mark at the start of the file is not part of the first line; a last line without "\\n" counts;
- invalid UTF-8 is one `UserError` naming the file, the line and the byte.

Writing: `atomic_write` and `replacing` leave either the old file or the new one, and say in one line what
went wrong when the user can fix it.

No torch here: quick to import.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from nmt.errors import UserError, os_problem

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------------------
# Reading text lines

# What reading a file can raise besides UnicodeDecodeError: the OS, or a corrupt or truncated gzip stream.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def decode_lines(data: bytes, name: str, first_line: int = 1) -> list[str]:
    """The lines of `data`, UTF-8 bytes of whole lines that start at line `first_line` of `name`.

    The one decoder behind every reader: the rules of the module docstring, in one place.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _not_utf8(data, error, name, first_line) from None
    if first_line == 1 and text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the final line ending (or no text at all)
    if "\r" in text:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines


def _not_utf8(data: bytes, error: UnicodeDecodeError, name: str, first_line: int) -> UserError:
    line = first_line + data.count(b"\n", 0, error.start)
    column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1  # 1-based byte of that line
    byte = f"byte {column}: 0x{data[error.start]:02x}"
    return UserError(f"{name} line {line} is not valid UTF-8 ({byte}); convert it to UTF-8")


def iter_lines(handle: IO[bytes], name: str) -> Iterator[str]:
    """The lines of a binary stream (a file, a pipe, standard input), decoded one at a time as they arrive,
    so that a prompt is answered line by line. The caller closes `handle`."""
    try:
        for number, raw in enumerate(handle, start=1):
            yield from decode_lines(raw, name, number)
    except _READ_ERRORS as error:
        raise _cannot_read(name, error) from None


def open_binary(path: Path) -> IO[bytes]:
    """`path` opened for reading bytes (through gzip when the name ends in .gz), or a one-line error."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, not a text file")
    try:
        return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except OSError as error:
        raise _cannot_read(str(path), error) from None


def read_lines(path: Path) -> list[str]:
    """Every line of a text file, read and checked whole (one decode for the whole file: fast on corpora)."""
    with open_binary(path) as handle:
        try:
            data = handle.read()
        except _READ_ERRORS as error:
            raise _cannot_read(str(path), error) from None
    return decode_lines(data, str(path))


def stream_lines(path: Path, check_first: bool = True) -> Iterator[str]:
    """The lines of a text file, read one at a time, so memory stays bounded however long the file is.

    The file is opened now: a missing file is an error now, not at the first line. With `check_first`, a
    regular file is first decoded once whole (line by line), so that a bad byte half-way is an error before
    any line is used; a pipe, which can be read only once, is not.
    """
    if check_first and Path(path).is_file():
        with open_binary(path) as handle:
            for _ in iter_lines(handle, str(path)):
                pass
    return _lines_then_close(open_binary(path), str(path))


def _lines_then_close(handle: IO[bytes], name: str) -> Iterator[str]:
    with handle:
        yield from iter_lines(handle, name)


def _cannot_read(name: str, error: BaseException) -> UserError:
    reason = (
        error.strerror
        if isinstance(error, OSError) and error.strerror
        else str(error) or type(error).__name__
    )
    return UserError(f"cannot read {name}: {reason}")


# ------------------------------------------------------------------------------------------------------------
# Writing


def atomic_write(path: Path, write) -> None:
    """Call `write(file_object)` on a temporary file beside `path`, then rename it over `path`.

    A crash (even kill -9), a full disk or a permission error leaves either the old file or the new one,
    never a half-written one. Errors a user can fix (no space, no permission, ...) become a `UserError`.
    """
    path = Path(path)
    with replacing(path) as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    _fsync_directory(path.parent)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside `path`, renamed over `path` when the block succeeds.

    When the block (or the rename) fails, the temporary file is removed and `path` is untouched; an OS error
    a user can fix becomes `cannot write PATH: ...` (a `UserError`), anything else is re-raised as it is.
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        cause = fixable_os_error(error)
        if cause is not None:
            raise cannot_write(path, cause) from None
        raise


_TEMPORARY_NAME = re.compile(r"\..+\.tmp-(\d+)")  # what `replacing` names them: .NAME.tmp-PID


def remove_stale_temporaries(directory: Path) -> list[Path]:
    """Remove the temporary files that `replacing` left in `directory` when its process was killed (kill -9,
    a power cut) before it could clean up: those whose process no longer runs. Returns what was removed."""
    removed = []
    for path in sorted(Path(directory).glob(".*.tmp-*")):
        match = _TEMPORARY_NAME.fullmatch(path.name)
        if match and not _process_running(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
            logger.warning("removed %s, left by a process that was stopped while writing it", path)
    return removed


def _process_running(pid: int) -> bool:
    """Whether process `pid` runs on this machine (when that cannot be told: True, so nothing is removed)."""
    if os.name != "posix" or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0 sends nothing: it only checks that the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists, under another user
        return True
    return True


def check_writable(path: Path, is_file: bool = True) -> None:
    """Fail now, before the work, if `path` (a file, or with `is_file=False` a directory to be created or
    replaced) could not be written later.

    Creates (and removes) a probe file in the nearest existing directory on the way to `path`; directories
    still to be made are not created here, so a failure elsewhere leaves nothing behind.
    """
    path = Path(path).absolute()
    if is_file and path.is_dir():
        raise UserError(f"cannot write {path}: it is a directory; give a file name")
    directory = path.parent
    while not directory.exists():
        directory = directory.parent
    if not directory.is_dir():
        raise UserError(f"cannot write {path}: {directory} is a file, not a directory")
    try:
        descriptor, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=directory)
    except OSError as error:
        raise cannot_write(path, error) from None
    os.close(descriptor)
    os.unlink(probe)


def fixable_os_error(error: BaseException) -> OSError | None:
    """The OS error a user can fix (a full disk, no permission) behind `error`, if there is one.

    Writers may wrap it: torch.save, for one, raises a RuntimeError from its zip writer's clean-up while the
    OSError of the failed write is being handled, so the chain of exceptions is searched.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and os_problem(error):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def cannot_write(path: Path, error: OSError) -> UserError:
    """The one-line error for failing to write `path`: what went wrong and the way out."""
    return UserError(f"cannot write {path}: {os_problem(error) or error.strerror or error}")


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
