"""Geometry metrics between a predicted and a ground-truth triangle mesh.

All distances are point-to-**surface** (exact, libigl AABB queries), on a fixed seeded point set:
``n_points`` area-uniform samples on each surface and ``n_volume`` uniform points in the GT bbox
(padded by 5% of its diagonal on each side). With ``D`` the GT bbox diagonal:

* ``chamfer_l1 = (mean_{p in P} d(p, GT) + mean_{q in G} d(q, Pred)) / (2 D)``
* ``normal_consistency = (mean_p |n_p . n_GT(closest(p))| + mean_q |n_q . n_P(closest(q))|) / 2``
  (absolute dot product, as Occupancy Networks; inversion is caught by ``iou``)
* ``fscore = 2 P R / (P + R)`` with precision ``P = frac{d(p, GT) < tau}``, recall
  ``R = frac{d(q, Pred) < tau}`` and ``tau = 0.01 D`` (``fscore_tau`` to change it)
* ``iou = |in_GT and in_Pred| / |in_GT or in_Pred|`` over the volume points, "in" being a
  generalised winding number > 0.5 (robust for open meshes)
"""
from __future__ import annotations

from typing import Dict

import numpy as np

from .mesh import TriMesh
from .queries import MeshQuery
from .sampling import sample_surface


def mesh_metrics(pred: TriMesh, gt: TriMesh, n_points: int = 100_000, n_volume: int = 100_000,
                 seed: int = 0, fscore_tau: float = 0.01, gt_query: MeshQuery = None) -> Dict[str, float]:
    """Compare ``pred`` with ``gt`` (same coordinates); returns the metrics above plus counts."""
    rng = np.random.default_rng(seed)
    D = gt.diagonal
    gq = gt_query or MeshQuery(gt.vertices, gt.faces)
    if pred.faces.shape[0] == 0:
        return {"chamfer_l1": float("inf"), "normal_consistency": 0.0, "fscore": 0.0, "iou": 0.0,
                "n_points": n_points, "gt_diagonal": D, "pred_faces": 0}
    pq = MeshQuery(pred.vertices, pred.faces)
    g_pts, g_face = sample_surface(gt.vertices, gt.faces, n_points, rng)
    p_pts, p_face = sample_surface(pred.vertices, pred.faces, n_points, rng)
    d_pg, f_pg, _ = gq.closest(p_pts)   # pred samples -> GT surface
    d_gp, f_gp, _ = pq.closest(g_pts)   # GT samples -> pred surface
    chamfer = 0.5 * (d_pg.mean() + d_gp.mean()) / D
    nc_p = np.abs((pq.face_normals[p_face] * gq.face_normals[f_pg]).sum(1)).mean()
    nc_g = np.abs((gq.face_normals[g_face] * pq.face_normals[f_gp]).sum(1)).mean()
    tau = fscore_tau * D
    precision, recall = float((d_pg < tau).mean()), float((d_gp < tau).mean())
    fscore = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    lo, hi = gt.bbox
    pad = 0.05 * D
    vol = lo - pad + (hi - lo + 2 * pad) * rng.random((n_volume, 3))
    in_g, in_p = gq.inside(vol), pq.inside(vol)
    union = np.logical_or(in_g, in_p).sum()
    iou = float(np.logical_and(in_g, in_p).sum() / union) if union else 1.0
    return {"chamfer_l1": float(chamfer), "normal_consistency": float(0.5 * (nc_p + nc_g)),
            "fscore": float(fscore), "precision": precision, "recall": recall, "iou": iou,
            "fscore_tau": fscore_tau, "n_points": n_points, "n_volume": n_volume, "seed": seed,
            "gt_diagonal": D, "pred_faces": int(pred.faces.shape[0]), "pred_vertices": int(pred.vertices.shape[0])}
