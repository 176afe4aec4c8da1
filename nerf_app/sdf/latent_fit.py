"""Fit the code of a new shape with the decoder frozen (DeepSDF inference): ``nerf-app fit-latent RUN MESH``.

The new mesh is normalised into the unit cube like the training shapes, ``latent.fit_pool`` points
around it are labelled (the training pool's mix: near-surface + uniform, distances truncated), and
only ``z`` is optimised - the sdf loss plus the same code prior as training - with Adam, the
learning rate decaying from ``latent.fit_lr`` to a tenth. The decoder's parameters are switched to
``requires_grad=False`` for the fit (restored after), so they are not touched, not even by the
optimizer. ``z`` starts at the mean of the training codes: the decoder has never seen the origin
of the code space if training codes drifted away from it, while the mean is "an average shape".
Batches come from a generator seeded with the run seed, so a fit is reproducible.

Writes ``OUT/<name>.ply`` (original coordinates of the new mesh), ``OUT/<name>.png`` (a view of
it), ``OUT/<name>_start.ply`` (the starting code's mesh, the baseline) and ``OUT/<name>_fit.json``
(chamfer_l1, normal consistency, F-score, IoU against the new mesh - also at the starting code -
the code, the loss at the first and last step, and the nearest training code).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..errors import ConfigError, NerfAppError
from ..geometry.mesh import TriMesh
from ..geometry.metrics import mesh_metrics
from ..results import contact_sheet, write_json
from .dataset import MeshSamplePool
from .shapes import load_shape
from .task import truncated_sdf_loss


def optimise_code(task, pool: MeshSamplePool, steps: int, progress: bool = False):
    """Adam on one code ``z`` against ``pool``; the decoder is frozen. Returns ``(z, first_loss, last_loss)``."""
    cfg = task.config
    L = cfg.latent
    model = task.model
    z = torch.nn.Parameter(model.codes.weight.detach().mean(0).clone())
    opt = torch.optim.Adam([z], lr=L.fit_lr)
    gen = torch.Generator().manual_seed(int(cfg.seed))
    decoder = model.decoder_parameters()
    was = [p.requires_grad for p in decoder]
    for p in decoder:
        p.requires_grad_(False)
    from tqdm import tqdm
    losses = []
    try:
        for k in tqdm(range(steps), desc="fit latent", unit="step", disable=not progress):
            for g in opt.param_groups:
                g["lr"] = L.fit_lr * 0.1 ** (k / max(1, steps))
            b = pool.table[torch.randint(0, pool.table.shape[0], (L.fit_batch,), generator=gen)]
            pred = model.decode(b[:, :3], z.reshape(1, -1))
            loss = truncated_sdf_loss(pred, b[:, 3], cfg.data.truncation) + L.reg_weight * (z ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    finally:
        for p, w in zip(decoder, was):
            p.requires_grad_(w)
    return z.detach(), losses[0] if losses else None, losses[-1] if losses else None


def fit_latent(task, run_dir, mesh_path, steps=None, out=None) -> Dict[str, Any]:
    cfg = task.config
    steps = cfg.latent.fit_steps if steps is None else int(steps)
    if steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {steps}")
    t0 = time.perf_counter()
    shape = load_shape(mesh_path, cfg.data.margin)
    # one pool, labelled once (refresh_size=0: no chunks to refresh)
    settings = dataclasses.replace(cfg.data, pool_size=cfg.latent.fit_pool, refresh_size=0)
    pool = MeshSamplePool(shape.query, settings, cfg.seed)
    pool.fill(0, progress=cfg.train.progress)
    folder = Path(out) if out else Path(run_dir) / "fit"
    e = cfg.eval

    def reconstruct(z, path):
        try:
            v, f = task.mesh_of_code(path, z, shape.to_original)
        except NerfAppError:  # no surface at this code: the metrics say so
            v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
        return v, f, mesh_metrics(TriMesh(v, f), shape.mesh, e.n_points, e.n_volume, e.seed)

    # the starting code (mean of the training codes) as a baseline: what the fit itself gained
    _, _, start = reconstruct(task.model.codes.weight.detach().mean(0), folder / f"{shape.name}_start.ply")
    z, first, last = optimise_code(task, pool, steps, cfg.train.progress)
    mesh_out = folder / f"{shape.name}.ply"
    v, f, metrics = reconstruct(z, mesh_out)
    # a look at the result: the fitted code, sphere traced as the contact sheet's tiles
    r = cfg.render
    tile = task.view(z, *shape.unit_mesh.bbox, r.resolution, r.shading)
    contact_sheet(folder / f"{shape.name}.png", [[tile]], labels=[f"{shape.name} (fitted)"], tile=tile.shape[0])
    dist = (task.model.codes.weight.detach() - z).norm(dim=1)
    result = {
        "input": str(Path(mesh_path).resolve()), "mesh": str(mesh_out), "steps": steps,
        **{k: metrics[k] for k in ("chamfer_l1", "normal_consistency", "fscore", "iou")},
        "faces": int(len(f)), "chamfer_l1_start_code": start["chamfer_l1"], "iou_start_code": start["iou"],
        "loss_first": first, "loss_last": last, "view": str(folder / f"{shape.name}.png"),
        "nearest_training_shape": task.names[int(dist.argmin())], "nearest_code_distance": float(dist.min()),
        "code_norm": float(z.norm()), "code": [float(c) for c in z.tolist()],
        "mesh_resolution": e.resolution, "seconds": round(time.perf_counter() - t0, 2),
    }
    for k in ("chamfer_l1", "chamfer_l1_start_code"):
        if not np.isfinite(result[k]):
            result[k] = None  # keep the JSON standard (no Infinity); no surface at that code
    write_json(folder / f"{shape.name}_fit.json", result)
    result["report"] = str(folder / f"{shape.name}_fit.json")
    return result
