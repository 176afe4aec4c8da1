"""The INRIA 3D Gaussian Splatting PLY: one ``vertex`` element of float32 properties, found by name:
``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity scale_0..2 rot_0..3`` (opacity as a logit, scales as
logs, quaternion w first, f_rest channel by channel: all of red's higher coefficients, then green's, then
blue's). Binary little endian. What SuperSplat, gsplat, viser and the Unity/Unreal plug-ins read."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch

from ..errors import DatasetError
from .model import Splats

REQUIRED = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
            "rot_0", "rot_1", "rot_2", "rot_3"]
_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
          "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
          "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def property_names(k: int) -> List[str]:
    """The PLY's property names for ``k`` SH coefficients per channel, in file order."""
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(3 * (k - 1))]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def splats_to_bytes(s: Splats) -> bytes:
    """The whole file in memory (header + rows), so the atomic writer never exposes half a file."""
    n, k = len(s), s.sh.shape[1]
    names = property_names(k)
    rows = np.zeros((n, len(names)), np.float32)
    f = lambda t: t.detach().cpu().double().numpy()  # noqa: E731
    sh = f(s.sh)                                       # [N, K, 3]
    q = f(s.quats)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    rows[:, 0:3] = f(s.means)
    rows[:, 6:9] = sh[:, 0, :]
    rows[:, 9:9 + 3 * (k - 1)] = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)   # channel-major
    o = 9 + 3 * (k - 1)
    rows[:, o] = f(s.opacity_logits)
    rows[:, o + 1:o + 4] = f(s.log_scales)
    rows[:, o + 4:o + 8] = q
    header = ["ply", "format binary_little_endian 1.0", "comment made by nerf_app (nerf-app export --splats)",
              f"element vertex {n}"] + [f"property float {p}" for p in names] + ["end_header"]
    return ("\n".join(header) + "\n").encode("ascii") + rows.astype("<f4").tobytes()


def write_splat_ply(path, s: Splats) -> int:
    """Write ``s`` atomically (a temporary file renamed into place: nothing partial on an error or Ctrl-C).
    Returns the file size in bytes."""
    from ..results import write_bytes
    data = splats_to_bytes(s)
    write_bytes(path, data)
    return len(data)


def _header(path: Path, raw: bytes) -> Tuple[list, int]:
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0 or raw.find(b"\n", end) < 0:
        raise DatasetError(path, "not a PLY file (no 'ply' magic / 'end_header')")
    body = raw.index(b"\n", end) + 1
    lines = raw[:end].decode("ascii", "replace").splitlines()
    fmt = next((ln.split()[1] for ln in lines if ln.startswith("format")), None)
    if fmt != "binary_little_endian":
        raise DatasetError(path, f"a splat PLY must be binary_little_endian (this one is {fmt})", "format")
    elements = []
    for ln in lines:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element" and len(parts) == 3:
            if not parts[2].isdigit():
                raise DatasetError(path, f"bad PLY element line {ln!r}", "header")
            elements.append([parts[1], int(parts[2]), []])
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], None))
            elif parts[1] in _TYPES and len(parts) == 3:
                elements[-1][2].append((parts[2], _TYPES[parts[1]]))
            else:
                raise DatasetError(path, f"unknown PLY property line {ln!r}", "header")
    return elements, body


def _read(path: Path, limit: int = -1) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as exc:
        raise DatasetError(path, f"cannot read it ({exc.strerror or exc})") from None


def check_splat_header(path) -> None:
    """The checks of :func:`read_splat_ply` that the header alone allows (before a run is opened)."""
    path = Path(path)
    raw = _read(path, 1 << 16)
    _vertex(path, *_header(path, raw))


def _vertex(path: Path, elements, body):
    vertex = next((e for e in elements if e[0] == "vertex"), None)
    if vertex is None:
        raise DatasetError(path, "not a splat file: no 'vertex' element", "vertex")
    names = [p for p, _ in vertex[2]]
    missing = [p for p in REQUIRED if p not in names]
    if missing:
        raise DatasetError(path, f"not a Gaussian-splat file: the vertex element lacks {', '.join(missing)}", "vertex")
    if any(t is None for _, t in vertex[2]):
        raise DatasetError(path, "the vertex element has list properties (a mesh, not splats)", "vertex")
    if elements[0][0] != "vertex":
        raise DatasetError(path, "the vertex element must come first", "vertex")
    return vertex, names


def read_splat_ply(path) -> Splats:
    """A splat PLY -> :class:`Splats` (float32, CPU, the file's coordinates). Anything else is one
    :class:`~nerf_app.errors.DatasetError` naming what is missing."""
    path = Path(path)
    raw = _read(path)
    elements, body = _header(path, raw)
    vertex, names = _vertex(path, elements, body)
    dtype = np.dtype([(p, "<" + t) for p, t in vertex[2]])
    n = vertex[1]
    if len(raw) - body < n * dtype.itemsize:
        raise DatasetError(path, f"truncated: {n} splats need {n * dtype.itemsize} bytes, the file has "
                                 f"{len(raw) - body}", "vertex")
    rows = np.frombuffer(raw, dtype=dtype, count=n, offset=body)
    rest = sorted((p for p in names if p.startswith("f_rest_")), key=lambda p: int(p[7:]) if p[7:].isdigit() else -1)
    if len(rest) % 3 or [int(p[7:]) for p in rest] != list(range(len(rest))):
        raise DatasetError(path, f"f_rest_* must be f_rest_0..f_rest_{{3m-1}}, found {len(rest)}", "vertex")
    k = 1 + len(rest) // 3
    if int(round(math.sqrt(k))) ** 2 != k or k > 16:
        raise DatasetError(path, f"{len(rest)} f_rest properties is not a spherical-harmonics degree 0..3", "vertex")
    col = lambda p: rows[p].astype(np.float64)  # noqa: E731
    sh = np.zeros((n, k, 3))
    sh[:, 0, :] = np.stack([col(f"f_dc_{c}") for c in range(3)], 1)
    if k > 1:
        r = np.stack([col(p) for p in rest], 1).reshape(n, 3, k - 1)
        sh[:, 1:, :] = r.transpose(0, 2, 1)
    arrays = [np.stack([col(a) for a in names_], 1) for names_ in (("x", "y", "z"), ("scale_0", "scale_1", "scale_2"),
                                                                  ("rot_0", "rot_1", "rot_2", "rot_3"))]
    out = Splats(*(torch.from_numpy(a).float() for a in (arrays[0], arrays[1], arrays[2], col("opacity"), sh)))
    finite = torch.stack([torch.isfinite(t.reshape(n, -1)).all(1) for t in out.tensors()], 1).all(1)
    if n and not bool(finite.all()):
        raise DatasetError(path, f"{int((~finite).sum())} of {n} splats have non-finite values", "vertex")
    return out
