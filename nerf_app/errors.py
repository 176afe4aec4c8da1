"""The project's error types.

Every failure a user can cause (a broken file, a bad option, a backend that cannot run) raises a
subclass of :class:`NerfAppError`. The CLI prints such errors as one line (``--debug`` shows the
traceback); anything else reaching the top is a bug in nerf_app.
"""
from __future__ import annotations

import os
import sys
import sysconfig
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


# Raised by a library about what it was given, these mean a bad file; raised by nerf_app's own code (or
# code that is neither nerf_app nor an installed library), they mean a bug.
PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError, ImportError, AssertionError, NotImplementedError,
                      SystemError, UnboundLocalError)


def _library_roots():
    paths = sysconfig.get_paths()
    return tuple(os.path.realpath(paths[k]) + os.sep for k in ("stdlib", "platstdlib", "purelib", "platlib")
                 if paths.get(k)) + tuple(os.path.realpath(p) + os.sep for p in sys.path
                                          if "site-packages" in p or "dist-packages" in p)


def reraise_if_bug(exc: BaseException) -> None:
    """For a broad ``except Exception`` that turns a library's complaint about a file into one clean
    error line: raise ``exc`` again when it is not such a complaint, so that it reaches the top as a
    traceback (a bug to fix, not a message to show):

    - ``MemoryError``: the machine ran out, or a size read from the file was not checked before it was
      allocated (check it: then the file gets a clean error, the machine does not);
    - a programming error (:data:`PROGRAMMING_ERRORS`) whose innermost frame is not in an installed
      library: a mistake in nerf_app's call or code, whatever the file holds.
    """
    if isinstance(exc, MemoryError):
        raise exc
    if isinstance(exc, PROGRAMMING_ERRORS):
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        where = os.path.realpath(tb.tb_frame.f_code.co_filename) if tb is not None else ""
        package = os.path.dirname(os.path.realpath(__file__)) + os.sep
        if where.startswith(package) or not where.startswith(_library_roots()):
            raise exc
