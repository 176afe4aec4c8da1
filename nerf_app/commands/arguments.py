"""Argument types shared by the verbs: numbers are checked when parsed (finite, in range), so a bad
flag is one argparse line naming the flag, never a traceback or an allocation of 74 GiB later on."""
from __future__ import annotations

import argparse
import math
from typing import Optional


def int_in(low: int, high: Optional[int] = None):
    """An integer ``low <= n <= high`` (``high=None``: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def float_in(low: float, high: Optional[float] = None, low_open: bool = False):
    """A finite number ``low <= x <= high`` (``low < x`` when ``low_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if value < low or (low_open and value == low) or (high is not None and value > high):
            lo = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {lo}{f' and <= {high}' if high is not None else ''}, got {value}")
        return value
    parse.__name__ = "number"
    return parse


def number_or_auto(text: str):
    """``auto`` or a finite number (iso levels)."""
    if str(text).strip().lower() == "auto":
        return "auto"
    return float_in(-math.inf)(text)


number_or_auto.__name__ = "number or auto"

# The largest images and grids the verbs accept: well past any real use, far below what would exhaust
# memory (a 100000-pixel square view would need ~75 GiB of rays).
MAX_RENDER_SIDE = 8192
MAX_MESH_RESOLUTION = 2048
MAX_SAMPLE_RATE = 384000  # audio runs read --resolution as a sample rate


def resolution(text: str):
    """``N`` (1..MAX_SAMPLE_RATE: an image side, or an audio run's sample rate; image sides are held to
    MAX_RENDER_SIDE by :func:`check_render_side` once the mode is known) or ``WxH`` with both sides in
    1..MAX_RENDER_SIDE (image mode's free aspect)."""
    text = str(text).strip().lower()
    if "x" in text:
        parts = text.split("x")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}")
        w, h = (int_in(1, MAX_RENDER_SIDE)(p) for p in parts)
        return f"{w}x{h}"
    return int_in(1, MAX_SAMPLE_RATE)(text)


resolution.__name__ = "resolution"


def check_render_side(mode: str, value) -> None:
    """Every mode but audio renders pictures: a side above MAX_RENDER_SIDE is refused before any work."""
    from ..errors import ConfigError
    if mode != "audio" and isinstance(value, int) and value > MAX_RENDER_SIDE:
        raise ConfigError(f"--resolution must be between 1 and {MAX_RENDER_SIDE} for a {mode} run, got {value}")
    if isinstance(value, str) and mode not in ("image", "nerf"):
        raise ConfigError(f"--resolution WxH is for image and nerf runs; a {mode} run takes one number, got {value}")


# ------------------------------------------------------------------------------------------- outputs
# Output paths are input too. These ``type=`` helpers only tag the value with what it names (a file, a
# mesh file, a folder); ``nerf_app.cli.main`` checks every tagged value with
# :func:`nerf_app.results.check_output` before the verb runs, so a folder where a file is wanted, a path
# under a file, /dev/null, /proc, a read-only or full file system are one line naming the flag, exit 2,
# and nothing is touched.

class OutputPath(str):
    """An output path given on the command line, with the kind of thing it names."""
    kind = "file"


def _output(kind: str, name: str):
    def parse(text: str) -> OutputPath:
        value = OutputPath(text)
        value.kind = kind
        return value
    parse.__name__ = name
    return parse


output_file = _output("file", "output file")
output_mesh = _output("mesh", "output mesh")
output_folder = _output("folder", "output folder")


def output_file_or_none(text: str):
    """An output file, or ``none`` (write nothing)."""
    return "none" if str(text).strip().lower() == "none" else output_file(text)


output_file_or_none.__name__ = "output file or none"


def output_flags(parser: argparse.ArgumentParser, args: argparse.Namespace):
    """``(flag, value)`` for each output path given (or defaulted) in ``args``; ``flag`` is the option
    string (``--out``) or, for a positional, its name (``OUT``)."""
    found = []
    for action in parser._actions:
        value = getattr(args, action.dest, None)
        if isinstance(value, OutputPath):
            flag = action.option_strings[-1] if action.option_strings else (action.metavar or action.dest.upper())
            found.append((flag, value))
    return found
