"""Errors a user can cause.

Library code raises `UserError` for anything the user can fix (a missing file, a bad option, a checkpoint
that does not fit the data). The CLI turns it into one line on stderr and exit code 2, never a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, explained in one line that says what is wrong and how to fix it."""


def closest(name: str, candidates) -> str | None:
    """The candidate most similar to `name`, for "did you mean" hints."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.0)
    return matches[0] if matches else None
