"""Ground truth for mesh fields: winding-number sign, sampling, metrics on known pairs, rendering."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from nerf_app.errors import DatasetError
from nerf_app.geometry.mesh import TriMesh, load_mesh, unit_cube_transform
from nerf_app.geometry.metrics import mesh_metrics
from nerf_app.geometry.queries import MeshQuery
from nerf_app.sdf.surface_trace import gradient_normals, march_bisect, ray_interval, sphere_trace


def icosphere(r=0.5, sub=4):
    m = trimesh.creation.icosphere(subdivisions=sub, radius=r)
    return np.asarray(m.vertices, np.float64), np.asarray(m.faces, np.int64)


def test_sign_and_distance_on_sphere_and_cube():
    V, F = icosphere(0.5, 5)
    q = MeshQuery(V, F)
    rng = np.random.default_rng(0)
    p = rng.uniform(-1, 1, (4000, 3))
    r = np.linalg.norm(p, axis=1)
    keep = np.abs(r - 0.5) > 0.01  # the polygonal sphere differs from the round one by < 1e-3
    sd = q.signed_distance(p)
    assert np.array_equal(sd[keep] < 0, r[keep] < 0.5)
    assert np.abs(sd - (r - 0.5)).max() < 2e-3
    box = trimesh.creation.box(extents=(1.0, 0.6, 0.4))
    qb = MeshQuery(np.asarray(box.vertices, float), np.asarray(box.faces, np.int64))
    inside = (np.abs(p) < [0.5, 0.3, 0.2]).all(1)
    sdb = qb.signed_distance(p)
    assert np.array_equal(sdb < 0, inside)
    # exact box SDF (outside part: distance to the box; inside: minus distance to the nearest face)
    d = np.abs(p) - [0.5, 0.3, 0.2]
    exact = np.linalg.norm(np.maximum(d, 0), axis=1) + np.minimum(d.max(1), 0)
    assert np.abs(sdb - exact).max() < 1e-9


def test_sign_on_open_mesh_stays_right():
    # a sphere with a cap cut off (open, like bunny's base): winding number still ~1 deep inside
    V, F = icosphere(0.5, 4)
    centroids = V[F].mean(1)
    F_open = F[centroids[:, 2] < 0.4]
    q = MeshQuery(V, F_open)
    inner = np.array([[0, 0, 0], [0.2, 0.1, -0.1], [0, 0, -0.4]], float)
    outer = np.array([[0, 0, 0.8], [0.7, 0, 0], [0, -0.9, 0.2]], float)
    assert q.inside(inner).all() and not q.inside(outer).any()
    # ray parity would be wrong through the hole; winding number is fractional, not flipped
    w = q.winding_number(np.array([[0, 0, 0.3]]))
    assert 0.5 < w[0] <= 1.0


def test_bunny_open_mesh_inside(shared_data):
    mesh = load_mesh(shared_data / "meshes" / "bunny.obj")
    to_unit, to_orig = unit_cube_transform(mesh, 0.05)
    unit = mesh.transformed(to_unit)
    lo, hi = unit.bbox
    assert np.allclose(max(hi - lo), 0.9) and np.allclose(0.5 * (lo + hi), 0.5)
    assert np.allclose(to_orig @ to_unit, np.eye(4))
    q = MeshQuery(unit.vertices, unit.faces)
    # the bunny's bbox corners are outside; the body centre is inside
    corners = np.array([[lo[0], lo[1], lo[2]], [hi[0], hi[1], hi[2]], [0.02, 0.5, 0.5]])
    assert not q.inside(corners).any()
    assert q.inside(np.array([[0.5, 0.45, 0.5]])).all()


def test_load_mesh_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="missing.obj"):
        load_mesh(tmp_path / "missing.obj")
    bad = tmp_path / "bad.obj"
    bad.write_text("v 0 0 0\nv 1 0 0\n")
    with pytest.raises(DatasetError, match="bad.obj.*no triangles"):
        load_mesh(bad)


def test_metrics_on_known_pairs():
    V, F = icosphere(0.5, 5)
    gt = TriMesh(V, F)
    same = mesh_metrics(gt, gt, n_points=20000, n_volume=20000)
    assert same["chamfer_l1"] < 1e-9 and same["normal_consistency"] > 0.999999
    assert same["fscore"] == 1.0 and same["iou"] == 1.0
    # a sphere of radius 0.55: distance 0.05 everywhere (up to tessellation), IoU = (0.5/0.55)^3
    V2, F2 = icosphere(0.55, 5)
    m = mesh_metrics(TriMesh(V2, F2), gt, n_points=20000, n_volume=200000)
    D = gt.diagonal
    assert m["chamfer_l1"] == pytest.approx(0.05 / D, rel=0.02)
    assert m["normal_consistency"] > 0.999
    assert m["fscore"] == 0.0  # 0.05 > 1% of the diagonal (0.017)
    assert m["iou"] == pytest.approx((0.5 / 0.55) ** 3, abs=0.01)
    # an inverted copy has the same surface (normals are compared up to sign) but iou catches nothing
    # is lost: winding number of a flipped sphere is -1 -> "outside everywhere"
    inv = mesh_metrics(TriMesh(V, F[:, ::-1]), gt, n_points=5000, n_volume=20000)
    assert inv["iou"] == 0.0 and inv["chamfer_l1"] < 1e-9


def sphere(c, r):
    c = torch.tensor(c)
    return lambda x: (x - c).norm(dim=-1) - r


def test_sphere_tracing_hits_analytic_sphere():
    f = sphere([0.5, 0.5, 0.5], 0.3)
    n = 500
    g = torch.Generator().manual_seed(0)
    o = torch.tensor([0.5, 0.5, -1.5]).expand(n, 3).clone()
    target = torch.rand(n, 3, generator=g) * 0.4 + 0.3
    target[:, 2] = 0.5
    d = target - o
    d = d / d.norm(dim=-1, keepdim=True)
    tn, tf = ray_interval(o, d, [0, 0, 0], [1, 1, 1])
    t, hit = sphere_trace(f, o, d, tn, tf, max_steps=200, eps=1e-6)
    # analytic ray-sphere intersection
    oc = o - torch.tensor([0.5, 0.5, 0.5])
    b = (oc * d).sum(-1)
    disc = b * b - (oc * oc).sum(-1) + 0.09
    expect_hit = disc > 0
    assert torch.equal(hit, expect_hit) and hit.sum() > 100
    t_exact = -b - disc.clamp_min(0).sqrt()
    assert (t[hit] - t_exact[hit]).abs().max() <= 1e-4
    x = o[hit] + t[hit, None] * d[hit]
    n_est = gradient_normals(f, x, eps=1e-3)
    n_true = (x - 0.5) / (x - 0.5).norm(dim=-1, keepdim=True)
    assert ((n_est * n_true).sum(-1) > 0.9999).all()
    # bisection root finding on an occupancy-style logit of the same sphere
    logit = lambda x: -50.0 * f(x)
    t2, hit2 = march_bisect(logit, o, d, tn, tf, n_samples=128, bisection_steps=20)
    inner = expect_hit & (disc > 1e-3)  # grazing rays can slip between samples
    assert hit2[inner].all() and (t2[inner] - t_exact[inner]).abs().max() <= 1e-4
