"""A folder of meshes as a set of named shapes, each normalised into the unit cube on its own.

Used by the latent-conditioned SDF (``deepsdf``): shape ``i`` is the ``i``-th mesh file of the folder
in sorted order, named by its file stem. Every shape gets its own ``to_unit`` / ``to_original`` map
(:func:`~nerf_app.geometry.mesh.unit_cube_transform`), so all shapes fill the cube the shared grid
lives in, and exported meshes go back to each file's own coordinates.

The folder must hold meshes only (hidden files are skipped): anything else is most likely a wrong
folder, and training on the wrong data for minutes is worse than one clear error up front.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List

import numpy as np

from ..errors import ConfigError, DatasetError
from ..geometry.mesh import MESH_SUFFIXES, TriMesh, load_mesh, unit_cube_transform
from ..geometry.queries import MeshQuery


@dataclass
class Shape:
    name: str
    path: Path
    mesh: TriMesh                # original coordinates (metrics compare against this)
    unit_mesh: TriMesh           # in [0,1]^3
    to_original: np.ndarray      # 4x4 float64
    query: MeshQuery             # distance / winding queries on unit_mesh


def mesh_files(folder) -> List[Path]:
    """The mesh files of ``folder`` in sorted order; errors name the folder or the offending file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(folder, "shape folder not found")
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.suffix.lower() not in MESH_SUFFIXES:
            raise DatasetError(p, f"not a mesh (expected {'/'.join(MESH_SUFFIXES)}); a shape folder holds "
                                  f"only mesh files")
        files.append(p)
    if not files:
        raise DatasetError(folder, f"no mesh files ({'/'.join(MESH_SUFFIXES)}) in the shape folder")
    stems = {}
    for p in files:
        if p.stem in stems:
            raise DatasetError(p, f"two meshes share the shape name {p.stem!r} (also {stems[p.stem].name})")
        stems[p.stem] = p
    return files


def load_shape(path, margin: float, name: str = None) -> Shape:
    path = Path(path)
    mesh = load_mesh(path)
    to_unit, to_original = unit_cube_transform(mesh, margin)
    unit = mesh.transformed(to_unit)
    return Shape(name or path.stem, path, mesh, unit, to_original, MeshQuery(unit.vertices, unit.faces))


def load_shapes(folder, margin: float, progress: bool = False) -> List[Shape]:
    files = mesh_files(folder)
    if progress:
        from tqdm import tqdm
        files = tqdm(files, desc="loading meshes", unit="mesh", leave=False)
    return [load_shape(p, margin) for p in files]


def shape_index(names: List[str], name: str, field: str = "shape") -> int:
    """Index of shape ``name``; an unknown name is a ConfigError listing the known ones."""
    if name not in names:
        raise ConfigError(f"{field}: unknown shape {name!r}; this run's shapes: {', '.join(names)}")
    return names.index(name)
