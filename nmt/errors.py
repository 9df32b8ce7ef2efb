"""Errors a user can cause.

Library code raises `UserError` for anything the user can fix (a missing file, a bad option, a checkpoint
that does not fit the data). The CLI turns it into one line on stderr and exit code 2, never a traceback.
"""

import difflib
import errno

# Operating-system errors that the user can fix, with the way out. Any other OSError is a bug or a broken
# machine and keeps its traceback.
_OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device; free some space or choose another location",
    errno.EDQUOT: "disk quota exceeded; free some space or choose another location",
    errno.EFBIG: "file too large for a file-size limit; raise the limit or choose another location",
    errno.EROFS: "read-only file system; choose a writable location",
    errno.EACCES: "permission denied; change the permissions or choose another location",
    errno.EPERM: "operation not permitted; change the permissions or choose another location",
    errno.EISDIR: "is a directory; give a file name",
    errno.ENOTDIR: "a part of the path is a file, not a directory",
}


class UserError(Exception):
    """A problem with the user's input, explained in one line that says what is wrong and how to fix it."""


def closest(name: str, candidates) -> str | None:
    """The candidate most similar to `name`, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.0)
    return matches[0] if matches else None


def os_problem(error: OSError) -> str | None:
    """What went wrong and the way out, for an OS error the user can fix; None for any other."""
    return _OS_PROBLEMS.get(error.errno)
