"""Chunked marching cubes is seamless and exact; mesh files round-trip; orbit poses are sane."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from nerf_app.camera_paths.orbit import look_at, orbit_path
from nerf_app.geometry.marching_cubes import export_field_mesh, extract_mesh

CENTER = torch.tensor([0.05, -0.02, 0.03])
RADIUS = 0.6


def sphere_sdf(x):
    return (x - CENTER).norm(dim=-1) - RADIUS


def test_chunked_mesh_equals_single_chunk_and_matches_sphere():
    lo, hi = [-1, -1, -1], [1, 1, 1]
    v1, f1 = extract_mesh(sphere_sdf, lo, hi, resolution=64, chunks=1)
    v8, f8 = extract_mesh(sphere_sdf, lo, hi, resolution=64, chunks=8, batch_size=1000)
    assert v1.shape == v8.shape and f1.shape == f8.shape
    # same vertex set, and the same triangles as sets of vertex positions
    assert np.array_equal(v1, v8)  # both sorted by np.unique
    tri = lambda v, f: np.sort(np.sort(f, axis=1).view([("", f.dtype)] * 3).ravel())
    assert np.array_equal(tri(v1, f1), tri(v8, f8))
    mesh = trimesh.Trimesh(v8, f8, process=False)
    assert mesh.is_watertight  # no seam between slabs
    assert mesh.volume > 0  # outward normals
    # Chamfer (symmetric, L1 mean of distances) to the analytic sphere
    d_mesh_to_sphere = np.abs(np.linalg.norm(v8 - CENTER.numpy(), axis=1) - RADIUS).mean()
    pts, _ = trimesh.sample.sample_surface(mesh, 20000, seed=0)
    d_surf = np.abs(np.linalg.norm(pts - CENTER.numpy(), axis=1) - RADIUS).mean()
    rng = np.random.default_rng(0)
    s = rng.normal(size=(20000, 3))
    s = CENTER.numpy() + RADIUS * s / np.linalg.norm(s, axis=1, keepdims=True)
    import igl
    d_sphere_to_mesh = np.sqrt(igl.point_mesh_squared_distance(s, v8, f8)[0]).mean()
    assert d_mesh_to_sphere < 1e-4 and 0.5 * (d_surf + d_sphere_to_mesh) <= 1e-3


def test_occupancy_style_level_and_winding():
    occ = lambda x: torch.sigmoid(-sphere_sdf(x) * 50)  # inside ~1
    v, f = extract_mesh(occ, [-1] * 3, [1] * 3, resolution=40, level=0.5, inside="above", chunks=3)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert abs(np.linalg.norm(v - CENTER.numpy(), axis=1) - RADIUS).max() < 0.01


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".glb"])
def test_export_round_trip_in_original_coordinates(tmp_path, suffix):
    # field lives in [0,1]^3; original coordinates are x_orig = 10 * x + 3
    to_orig = np.diag([10.0, 10.0, 10.0, 1.0])
    to_orig[:3, 3] = 3.0
    field = lambda x: (x - 0.5).norm(dim=-1) - 0.3
    path = tmp_path / f"m{suffix}"
    v, f = export_field_mesh(path, field, [0] * 3, [1] * 3, resolution=32, to_original=to_orig,
                             color_fn=lambda x: x, progress=False)
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(f)
    r = np.linalg.norm(np.asarray(loaded.vertices) - 8.0, axis=1)
    assert abs(r - 3.0).max() < 0.05
    assert loaded.volume > 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_look_at_and_orbit():
    c2w = look_at([2.0, 0, 0], [0, 0, 0], up=[0, 0, 1])
    R = c2w[:3, :3]
    assert np.allclose(R.T @ R, np.eye(3)) and np.linalg.det(R) > 0
    assert np.allclose(R[:, 2], [-1, 0, 0])       # z forward, towards the target
    assert np.allclose(R[:, 1], [0, 0, -1])       # y down in the image = -up
    poses = orbit_path([0, 0, 0], 3.0, n_frames=12, elevation_deg=30)
    assert poses.shape == (12, 4, 4)
    assert np.allclose(np.linalg.norm(poses[:, :3, 3], axis=1), 3.0)
    fwd = poses[:, :3, 2]
    assert np.allclose(fwd, -poses[:, :3, 3] / 3.0)
