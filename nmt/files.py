"""Writing files so that a failure never leaves a half-written one, and says in one line what went wrong.

No torch here: quick to import.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nmt.errors import UserError, os_problem


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
