"""User-facing errors.

Every problem a user can fix (a bad path, a raster with no georeferencing, a wrong flag value) is raised as
:class:`PoppyError` with a message that names the bad value and says what to do. The command-line entry points
catch it and print that one line, then exit non-zero, without a traceback. Programming errors stay ordinary
exceptions so that they keep their traceback.
"""

from __future__ import annotations

__all__ = ["InputError", "PoppyError"]


class PoppyError(Exception):
    """An error the user can fix; its message is shown alone, as one line."""


class InputError(PoppyError, ValueError):
    """A bad input file or argument value."""
