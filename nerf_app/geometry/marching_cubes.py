"""Marching-cubes meshes of any batched scalar field, evaluated in seamless slabs.

``extract_mesh(field, lo, hi, resolution, level)`` samples ``field`` on the regular grid

    x[i, j, k] = lo + (i, j, k) * (hi - lo) / (resolution - 1),   i, j, k in 0..resolution-1

and runs scikit-image's marching cubes (Lewiner) on it. The grid is processed in slabs along z
that share one sample plane with their neighbour: slab s covers planes ``[k_s, k_{s+1}]``. The
shared plane is evaluated **once** and handed to the next slab, so both slabs see bit-identical
values there; marching cubes decides each cube from its own 8 corners only, so every cube is
triangulated exactly as in a single-slab run. Vertices are computed in integer grid coordinates
(a vertex on the shared plane has z exactly ``k_{s+1}`` in both slabs) and merged by exact
position, so the mesh of 8 slabs equals the mesh of 1 slab - no seams, no duplicated vertices.

Memory is ``resolution^2 * (slab depth + 1)`` values at a time.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import ConfigError, NerfAppError
from ..results import atomic_write, write_bytes

MESH_FORMATS = (".ply", ".obj", ".glb")


def _grid_axis(lo: float, hi: float, n: int) -> np.ndarray:
    # the same float64 expression for every slab, so shared planes get identical coordinates
    return lo + np.arange(n, dtype=np.float64) * ((hi - lo) / (n - 1))


def _exact_edge_vertices(verts: np.ndarray, vol: np.ndarray, level: float, k0: int) -> np.ndarray:
    """Recompute marching-cubes vertices in float64 from the grid values.

    Every vertex lies on a grid edge: two coordinates are integers and the third is ``i + t`` with
    ``t = (level - v0) / (v1 - v0)``. scikit-image returns float32 positions relative to the slab,
    whose rounding depends on the slab's origin; recomputing ``t`` from the (shared) values and
    adding it to the *global* integer index (slab origin ``k0`` along z) makes a vertex's position
    independent of how the grid was chunked.
    """
    verts = verts.astype(np.float64)
    rounded = np.round(verts)
    off = np.abs(verts - rounded)
    axis = off.argmax(axis=1)
    on_edge = off[np.arange(len(verts)), axis] > 0
    idx = rounded.astype(np.int64)
    rows = np.nonzero(on_edge)[0]
    ax = axis[rows]
    i0 = idx[rows].copy()
    i0[np.arange(len(rows)), ax] = np.floor(verts[rows, ax]).astype(np.int64)
    i1 = i0.copy()
    i1[np.arange(len(rows)), ax] += 1
    v0 = vol[i0[:, 0], i0[:, 1], i0[:, 2]].astype(np.float64)
    v1 = vol[i1[:, 0], i1[:, 1], i1[:, 2]].astype(np.float64)
    t = np.clip((level - v0) / (v1 - v0), 0.0, 1.0)
    out = rounded.copy()
    out[rows] = i0
    out[:, 2] += k0  # integers: exact
    out[rows, ax] += t
    return out


@torch.no_grad()
def extract_mesh(field: Callable[[torch.Tensor], torch.Tensor], lo: Sequence[float], hi: Sequence[float],
                 resolution: int = 256, level: float = 0.0, inside: str = "below", chunks: Optional[int] = None,
                 batch_size: int = 2 ** 18, device="cpu", progress: bool = False):
    """Mesh of the iso-surface ``field(x) == level`` inside the box ``[lo, hi]``.

    Args:
      field: ``points [N,3] float32 -> values [N]`` (any batch size; called under ``no_grad``).
      lo, hi: box corners (3,).
      resolution: samples per axis (int, or a 3-sequence).
      level: iso value (0 for an SDF, 0.5 for occupancy probabilities).
      inside: ``"below"`` if the solid is where ``field < level`` (SDF), ``"above"`` if it is where
        ``field > level`` (occupancy/density). Decides the face winding, so normals point outward.
      chunks: number of z slabs (default: so that a slab holds about 16M samples).
      batch_size: points per ``field`` call.

    Returns ``(vertices [V,3] float64, faces [F,3] int64)`` in the box's coordinates; empty arrays if
    the level is never crossed.
    """
    from skimage.measure import marching_cubes

    lo = np.asarray(lo, dtype=np.float64).reshape(3)
    hi = np.asarray(hi, dtype=np.float64).reshape(3)
    res = np.broadcast_to(np.asarray(resolution, dtype=np.int64), (3,)).copy()
    if (res < 2).any():
        raise ConfigError(f"marching cubes resolution must be >= 2, got {resolution}")
    if not (hi > lo).all():
        raise ConfigError(f"marching cubes box is empty: lo={lo.tolist()} hi={hi.tolist()}")
    if inside not in ("below", "above"):
        raise ConfigError(f"inside must be 'below' or 'above', got {inside!r}")
    nx, ny, nz = (int(r) for r in res)
    if chunks is None:
        chunks = max(1, math.ceil(nx * ny * nz / 2 ** 24))
    chunks = int(max(1, min(chunks, nz - 1)))
    # cube layers (nz - 1 of them) split as evenly as possible; slab s spans planes bounds[s]..bounds[s+1]
    bounds = np.linspace(0, nz - 1, chunks + 1).round().astype(np.int64)
    xs, ys, zs = (_grid_axis(lo[d], hi[d], int(res[d])) for d in range(3))
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    plane_xy = np.stack([gx.ravel(), gy.ravel()], axis=-1)  # [nx*ny, 2]

    def eval_planes(k0: int, k1: int) -> np.ndarray:
        """Field values on planes k0..k1-1 -> [nx, ny, k1-k0] float32."""
        depth = k1 - k0
        pts = np.empty((nx * ny, depth, 3), dtype=np.float32)
        pts[:, :, :2] = plane_xy[:, None, :]
        pts[:, :, 2] = zs[k0:k1][None, :]
        flat = torch.from_numpy(pts.reshape(-1, 3))
        out = np.empty(flat.shape[0], dtype=np.float32)
        for s in range(0, flat.shape[0], batch_size):
            v = field(flat[s:s + batch_size].to(device))
            out[s:s + batch_size] = v.reshape(-1).float().cpu().numpy()
        return out.reshape(nx, ny, depth)

    step = (hi - lo) / (res - 1)
    all_verts, all_faces, n_verts = [], [], 0
    prev_plane = None
    iterator = range(chunks)
    if progress:
        from tqdm import tqdm
        iterator = tqdm(iterator, desc="marching cubes", unit="slab")
    for s in iterator:
        k0, k1 = int(bounds[s]), int(bounds[s + 1])
        if prev_plane is None:
            vol = eval_planes(k0, k1 + 1)
        else:  # reuse the shared plane k0 exactly as the previous slab saw it
            vol = np.concatenate([prev_plane, eval_planes(k0 + 1, k1 + 1)], axis=2)
        prev_plane = vol[:, :, -1:].copy()
        if not np.isfinite(vol).all():
            raise NerfAppError("the field returned non-finite values; cannot extract a mesh")
        vmin, vmax = float(vol.min()), float(vol.max())
        if not (vmin < level < vmax):
            continue
        verts, faces, _, _ = marching_cubes(vol, level=level,
                                            gradient_direction="descent" if inside == "below" else "ascent")
        verts = _exact_edge_vertices(verts, vol, level, k0)  # global grid coordinates
        all_verts.append(verts)
        all_faces.append(faces.astype(np.int64) + n_verts)
        n_verts += verts.shape[0]
    if not all_verts:
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    verts = np.concatenate(all_verts)
    faces = np.concatenate(all_faces)
    # merge the vertices two slabs share (exactly equal grid coordinates)
    uniq, inverse = np.unique(verts, axis=0, return_inverse=True)
    faces = inverse.reshape(-1)[faces]
    return lo + uniq * step, faces


def _trimesh():
    """trimesh, or None when it is not installed (then meshes are written as plain PLY, uncleaned)."""
    try:
        import trimesh
    except ImportError:
        return None
    return trimesh


def remove_small_components(vertices: np.ndarray, faces: np.ndarray, min_fraction: float = 0.05):
    """Drop connected pieces with fewer faces than ``min_fraction`` x the largest piece's (without trimesh:
    nothing is dropped)."""
    trimesh = _trimesh()
    if faces.shape[0] == 0 or min_fraction <= 0 or trimesh is None:
        return vertices, faces
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return vertices, faces
    biggest = max(len(p.faces) for p in parts)
    keep = [p for p in parts if len(p.faces) >= min_fraction * biggest]
    merged = trimesh.util.concatenate(keep)
    return np.asarray(merged.vertices), np.asarray(merged.faces)


def apply_transform(vertices: np.ndarray, faces: np.ndarray, matrix: Optional[np.ndarray]):
    """``v' = M[:3,:3] v + M[:3,3]``; flips the winding if M mirrors (det < 0) so normals stay outward."""
    if matrix is None:
        return vertices, faces
    matrix = np.asarray(matrix, dtype=np.float64)
    v = vertices @ matrix[:3, :3].T + matrix[:3, 3]
    if np.linalg.det(matrix[:3, :3]) < 0:
        faces = faces[:, ::-1]
    return v, faces


def _check_format_without_trimesh(path) -> None:
    """Without trimesh only ``.ply`` can be written (:func:`write_plain_ply`): anything else is one line."""
    if Path(path).suffix.lower() != ".ply":
        raise ConfigError(f"mesh output {path}: {Path(path).suffix} needs trimesh (pip install trimesh); "
                          f"a .ply is written without it")


def write_plain_ply(path, vertices: np.ndarray, faces: np.ndarray, colors: Optional[np.ndarray] = None) -> Path:
    """Binary little-endian PLY without trimesh: double ``x y z``, optional uchar ``red green blue alpha``,
    triangles as ``vertex_indices`` lists (the layout trimesh writes). ``colors``: [V,3|4] uint8."""
    v = np.ascontiguousarray(vertices, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    vdt = [("x", "<f8"), ("y", "<f8"), ("z", "<f8")]
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}",
              "property double x", "property double y", "property double z"]
    if colors is not None:
        c = np.asarray(colors, np.uint8).reshape(len(v), -1)
        if c.shape[1] == 3:
            c = np.concatenate([c, np.full((len(v), 1), 255, np.uint8)], 1)
        vdt += [("red", "u1"), ("green", "u1"), ("blue", "u1"), ("alpha", "u1")]
        header += ["property uchar red", "property uchar green", "property uchar blue", "property uchar alpha"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    vert = np.empty(len(v), dtype=vdt)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if colors is not None:
        for k, name in enumerate(("red", "green", "blue", "alpha")):
            vert[name] = c[:, k]
    face = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, f
    write_bytes(path, ("\n".join(header) + "\n").encode("ascii") + vert.tobytes() + face.tobytes())
    return Path(path)


def write_mesh(path, vertices: np.ndarray, faces: np.ndarray, colors: Optional[np.ndarray] = None) -> Path:
    """Write ``.ply``/``.obj``/``.glb`` through trimesh, atomically. ``colors``: [V,3|4] in [0,1] or uint8.
    Without trimesh a ``.ply`` is written plainly (:func:`write_plain_ply`); other formats need it."""
    path = Path(path)
    if path.suffix.lower() not in MESH_FORMATS:
        raise ConfigError(f"mesh output {path}: format must be one of {', '.join(MESH_FORMATS)}")
    if colors is not None:
        colors = np.asarray(colors)
        if colors.dtype != np.uint8:
            colors = (np.clip(colors, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    trimesh = _trimesh()
    if trimesh is None:
        _check_format_without_trimesh(path)
        return write_plain_ply(path, vertices, faces, colors)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colors, process=False)
    suffix = path.suffix.lower()[1:]
    atomic_write(path, lambda tmp: mesh.export(tmp, file_type=suffix))
    return path


def export_field_mesh(path, field, lo, hi, resolution=256, level=0.0, inside="below", chunks=None,
                      to_original: Optional[np.ndarray] = None, min_component: float = 0.0,
                      color_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None, device="cpu",
                      progress: bool = True):
    """Extract, clean, colour (``color_fn(points [N,3]) -> rgb [N,3]`` in the field's coordinates),
    transform to original coordinates (4x4 ``to_original``) and write a mesh. Returns ``(V, F)``. Without trimesh:
    a plain PLY, small pieces kept (one line on stderr says so); other formats are refused before extraction."""
    if _trimesh() is None:
        import sys
        _check_format_without_trimesh(path)
        print(f"[export] trimesh is not installed: writing a plain PLY without its cleanup (small pieces are kept, "
              f"--min-component ignored); pip install trimesh for the cleanup and .obj/.glb", file=sys.stderr)
    v, f = extract_mesh(field, lo, hi, resolution, level, inside, chunks, device=device, progress=progress)
    if f.shape[0] == 0:
        raise NerfAppError(f"no surface at level {level} inside the box: nothing to write to {path}")
    v, f = remove_small_components(v, f, min_component)
    colors = None
    if color_fn is not None:
        with torch.no_grad():
            colors = color_fn(torch.from_numpy(v.astype(np.float32)).to(device)).float().cpu().numpy()
    v, f = apply_transform(v, f, to_original)
    write_mesh(path, v, f, colors)
    return v, f
