"""The project's error types.

Every failure a user can cause (a broken file, a bad option, a backend that cannot run) raises a
subclass of :class:`NerfAppError`. The CLI prints such errors as one line (``--debug`` shows the
traceback); anything else reaching the top is a bug in nerf_app.
"""
from __future__ import annotations

from typing import Optional


class NerfAppError(Exception):
    """Base class of every error nerf_app raises on purpose."""


class BackendError(NerfAppError):
    """A backend was asked for explicitly but cannot run here (not built, wrong device, bad dtype)."""


class ConfigError(NerfAppError):
    """A configuration value or command-line option is invalid."""


class DatasetError(NerfAppError):
    """An input file (scene, image, mesh, audio, checkpoint) is missing or malformed.

    ``path`` names the file and ``field`` the part of it that is wrong (a JSON key, a COLMAP record,
    a byte offset); both appear in the message so the user knows what to fix.
    """

    def __init__(self, path, message: str, field: Optional[str] = None):
        self.path = str(path)
        self.field = field
        self.reason = message
        where = f"{self.path}" + (f" [{field}]" if field else "")
        super().__init__(f"{where}: {message}")


class OutputError(NerfAppError):
    """An output path cannot be written: a folder where a file is wanted, a path under a file, a place
    that refuses new files (a kernel pseudo-filesystem, a read-only mount), a full disk or a file-size
    limit. ``flag`` names the option the path came from (``--out``, ``--mesh`` ...) when it is known."""

    def __init__(self, path, message: str, flag: Optional[str] = None):
        self.path = str(path)
        self.flag = flag
        self.reason = message
        where = f"{flag} {self.path}" if flag else self.path
        super().__init__(f"{where}: {message}")
