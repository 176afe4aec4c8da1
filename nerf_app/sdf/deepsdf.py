"""The latent-conditioned SDF mode (DeepSDF-style auto-decoder): one decoder, one code per shape.

``nerf-app train FOLDER --mode sdf`` (a folder of meshes; internally the ``deepsdf`` mode, preset
``configs/deepsdf.yaml``) trains :class:`~nerf_app.sdf.latent_field.LatentSDF` on all shapes at once:

* data: one :class:`~nerf_app.sdf.dataset.MeshSamplePool` per shape (``data.pool_size`` points each,
  seeded by (seed, shape), refreshed a slice at a time - a pure function of (seed, step), so resume
  is bit-identical without checkpointing the pools);
* step: ``optim.batch_size // n_shapes`` points from every shape (each batch sees every shape, so no
  code goes stale), the sdf mode's truncated L1 loss, plus the DeepSDF code prior
  ``latent.reg_weight * mean_batch ||z||^2``;
* the learning rate of decoder and codes decays exponentially to ``optim.lr_final / optim.lr`` of its start.

After training: ``eval`` (a mesh, metrics and a view per shape), ``export`` (meshes per shape, or
``--interpolate A B --steps K`` along the straight line between two codes), ``render`` (the contact
sheet) and ``fit-latent`` (a new shape's code with the decoder frozen, see :mod:`.latent_fit`).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, NerfAppError
from ..camera_paths.orbit import framing_radius, orbit_path, pinhole_rays
from ..geometry.marching_cubes import export_field_mesh
from ..geometry.mesh import TriMesh
from ..geometry.metrics import mesh_metrics
from ..results import contact_sheet, grid
from .surface_trace import gradient_normals, ray_interval, shade, sphere_trace
from ..train.task import Task
from .dataset import MeshSamplePool
from .latent_config import DeepSDFConfig
from .latent_field import LatentSDF
from .latent_fit import fit_latent
from .shapes import load_shapes, shape_index
from .task import truncated_sdf_loss

METRIC_KEYS = ("chamfer_l1", "normal_consistency", "fscore", "iou")


def shape_seed(seed: int, i: int) -> int:
    """Seed of shape ``i``'s sample pool: distinct per shape, a function of the run seed."""
    return int(seed) * 100_003 + i


def mesh_validity(v: np.ndarray, f: np.ndarray) -> Dict[str, Any]:
    """What makes an exported surface usable: non-empty, finite, closed (no boundary edges)."""
    import trimesh

    if f.shape[0] == 0:
        return {"vertices": 0, "faces": 0, "finite": True, "watertight": False, "boundary_edges": 0,
                "components": 0, "valid": False}
    m = trimesh.Trimesh(v, f, process=False)
    # an edge used by one face only is a hole's rim; by more than two, a pinch (marching cubes' ambiguous cells)
    _, counts = np.unique(np.sort(m.edges, axis=1), axis=0, return_counts=True)
    boundary, pinched = int((counts == 1).sum()), int((counts > 2).sum())
    finite = bool(np.isfinite(v).all())
    return {"vertices": int(len(v)), "faces": int(len(f)), "finite": finite, "watertight": bool(m.is_watertight),
            "boundary_edges": boundary, "nonmanifold_edges": pinched, "components": int(m.body_count),
            "valid": finite and boundary == 0}


class DeepSDFTask(Task):
    config_class = DeepSDFConfig
    description = "latent-conditioned signed distance fields of a folder of meshes (DeepSDF auto-decoder)"

    def build(self) -> None:
        cfg = self.config
        if cfg.optim.eikonal_weight > 0:
            raise ConfigError("optim.eikonal_weight: the latent sdf (a folder of meshes) has no eikonal term; set it to 0")
        self.shapes = load_shapes(cfg.input, cfg.data.margin, progress=cfg.train.progress)
        self.names = [s.name for s in self.shapes]
        self.pools = [MeshSamplePool(s.query, cfg.data, shape_seed(cfg.seed, i)) for i, s in enumerate(self.shapes)]
        self.pool_step = None
        self.model = LatentSDF(len(self.shapes), cfg.model, cfg.latent, cfg.backend).to(self.device)
        code_lr = cfg.latent.lr or cfg.optim.lr
        # fused Adam as the sdf mode (one pass over the hash table); codes in their own group
        self.optimizer = torch.optim.Adam(
            [{"params": self.model.decoder_parameters(), "lr": cfg.optim.lr},
             {"params": list(self.model.codes.parameters()), "lr": code_lr, "lr_scale": code_lr / cfg.optim.lr}],
            betas=(0.9, 0.99), eps=cfg.optim.eps, fused=True)

    # -- training -----------------------------------------------------------------------------

    def prepare(self, step: int) -> None:
        from tqdm import tqdm
        for pool in tqdm(self.pools, desc="labelling shape samples", unit="shape",
                         disable=not self.config.train.progress, leave=False):
            pool.fill(step, progress=False)
        self.pool_step = step

    def batch(self):
        """``points [B,3], sdf [B], shape index [B]``: the same number of points from every shape."""
        n = max(1, self.config.optim.batch_size // len(self.pools))
        parts = [pool.batch(n) for pool in self.pools]
        pts = torch.cat([p[0] for p in parts])
        sdf = torch.cat([p[1] for p in parts])
        idx = torch.arange(len(self.pools)).repeat_interleave(n)
        return pts, sdf, idx

    def train_step(self, step: int) -> Dict[str, Any]:
        if self.pool_step is None:
            self.prepare(step)
        o = self.config.optim
        lr = self.decayed_lr(o.lr, o.lr_final)
        self.set_lr(lr)
        pts, sdf, idx = self.batch()
        z = self.model.codes(idx)
        pred = self.model.decode(pts, z)
        fit = truncated_sdf_loss(pred, sdf, self.config.data.truncation)
        prior = self.config.latent.reg_weight * (z ** 2).sum(-1).mean()
        loss = fit + prior
        loss.backward()
        return {"loss": loss, "sdf_loss": fit.detach(), "code_norm": self.model.codes.weight.detach().norm(dim=1).mean(),
                "lr": lr}

    def after_step(self, step: int, out) -> None:
        for pool in self.pools:
            pool.maybe_refresh(step)

    def extra_state(self):
        return {"kind": "deepsdf", "names": list(self.names),
                "to_original": torch.from_numpy(np.stack([s.to_original for s in self.shapes]))}

    def load_for_inference(self, checkpoint: Dict[str, Any]) -> None:
        self.build()
        saved = list(checkpoint.get("task", {}).get("names", self.names))
        if saved != self.names:
            raise DatasetError(self.config.input, f"the shape folder changed since training: the run has shapes "
                                                  f"{saved}, the folder now {self.names}")
        self.model.load_state_dict(checkpoint["model"])
        self.model.eval()

    # -- meshes -------------------------------------------------------------------------------

    def code(self, name: str, field: str = "shape") -> torch.Tensor:
        return self.model.codes.weight.detach()[shape_index(self.names, name, field)]

    def _level(self, threshold) -> float:
        if threshold in (None, "auto"):
            return 0.0
        try:
            return float(threshold)
        except ValueError:
            raise ConfigError(f"--threshold must be a number or 'auto', got {threshold!r}") from None

    def mesh_of_code(self, path, z, to_original, resolution=None, level=0.0, chunks=None, min_component=0.0):
        """Marching cubes of ``f(., z)`` in the unit cube, written to ``path`` in ``to_original`` coordinates."""
        return export_field_mesh(path, self.model.field(z), [0.0] * 3, [1.0] * 3,
                                 resolution or self.config.eval.resolution, level, "below", chunks,
                                 to_original=to_original, min_component=float(min_component or 0.0),
                                 progress=False)

    def export(self, run_dir: Path, mesh=None, resolution=None, threshold=None, chunks=None, min_component=0.0,
               shape=None, interpolate=None, steps=None, **_):
        level = self._level(threshold)
        opts = dict(resolution=resolution, level=level, chunks=chunks, min_component=min_component)
        if interpolate:
            return self.interpolate(run_dir, interpolate[0], interpolate[1], steps or 5, out=mesh, **opts)
        names = [self.names[shape_index(self.names, shape, "--shape")]] if shape else self.names
        single_file = mesh is not None and len(names) == 1 and Path(mesh).suffix
        folder = Path(mesh) if mesh and not single_file else Path(run_dir) / "meshes"
        from tqdm import tqdm
        out = []
        for name in tqdm(names, desc="export shapes", unit="shape", disable=not self.config.train.progress):
            i = self.names.index(name)
            path = Path(mesh) if single_file else folder / f"{name}.ply"
            t0 = time.perf_counter()
            v, f = self.mesh_of_code(path, self.code(name), self.shapes[i].to_original, **opts)
            out.append({"shape": name, "mesh": str(path), "vertices": int(len(v)), "faces": int(len(f)),
                        "seconds": round(time.perf_counter() - t0, 2)})
        return {"level": level, "meshes": out}

    def interpolate(self, run_dir: Path, a: str, b: str, steps: int, out=None, **opts) -> Dict[str, Any]:
        """``steps`` meshes of ``z = (1-t) z_a + t z_b``, ``t = k/(steps-1)``, each with a validity report.

        ``(1-t) z_a + t z_b`` (not ``z_a + t (z_b - z_a)``) so the endpoints are the shapes' own codes
        bit for bit. Meshes are written in coordinates interpolated the same way between the two
        shapes' normalisations (uniform scale + shift, so a blend is again one)."""
        if steps < 2:
            raise ConfigError(f"--steps must be >= 2 for an interpolation, got {steps}")
        ia, ib = shape_index(self.names, a, "--interpolate"), shape_index(self.names, b, "--interpolate")
        za, zb = self.code(a), self.code(b)
        ma, mb = self.shapes[ia].to_original, self.shapes[ib].to_original
        folder = Path(out) if out else Path(run_dir) / f"interpolate_{a}_{b}"
        from tqdm import tqdm
        results = []
        for k in tqdm(range(steps), desc=f"interpolate {a}->{b}", unit="mesh", disable=not self.config.train.progress):
            t = k / (steps - 1)
            z = (1.0 - t) * za + t * zb
            path = folder / f"{a}_{b}_{k:02d}.ply"
            try:
                v, f = self.mesh_of_code(path, z, (1.0 - t) * ma + t * mb, **opts)
            except NerfAppError as exc:  # no surface at this code: report it, keep going
                v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
                path = f"(not written: {exc})"
            results.append({"t": t, "mesh": str(path), **mesh_validity(v, f)})
        # one view per step, framed on both shapes' boxes, to look at the path
        lo = np.minimum(self.shapes[ia].unit_mesh.bbox[0], self.shapes[ib].unit_mesh.bbox[0])
        hi = np.maximum(self.shapes[ia].unit_mesh.bbox[1], self.shapes[ib].unit_mesh.bbox[1])
        res = self.config.render.resolution
        tiles = [self.view((1.0 - r["t"]) * za + r["t"] * zb, lo, hi, res, self.config.render.shading) for r in results]
        sheet = folder / "sheet.png"
        write_contact_sheet(sheet, tiles, [f"t={r['t']:.2f}" for r in results], cols=len(tiles))
        return {"interpolate": [a, b], "steps": steps, "all_valid": all(r["valid"] for r in results),
                "sheet": str(sheet), "meshes": results}

    def fit_latent(self, run_dir: Path, mesh_path, steps=None, out=None) -> Dict[str, Any]:
        """A new shape's code with the decoder frozen (see :mod:`.latent_fit`)."""
        return fit_latent(self, run_dir, mesh_path, steps, out)

    # -- evaluation ---------------------------------------------------------------------------

    def evaluate(self, run_dir: Path, **_) -> Dict[str, Any]:
        from tqdm import tqdm

        from ..train.run import RunDir

        e = self.config.eval
        t0 = time.perf_counter()
        table = {}
        for i, s in enumerate(tqdm(self.shapes, desc="eval shapes", unit="shape",
                                   disable=not self.config.train.progress)):
            path = Path(run_dir) / "eval" / f"{s.name}.ply"
            try:
                v, f = self.mesh_of_code(path, self.code(s.name), s.to_original)
            except NerfAppError:  # no surface: the metrics say so (chamfer inf, fscore 0)
                v, f = np.zeros((0, 3)), np.zeros((0, 3), np.int64)
            m = mesh_metrics(TriMesh(v, f), s.mesh, e.n_points, e.n_volume, e.seed)
            table[s.name] = {**{k: m[k] for k in METRIC_KEYS}, "faces": int(len(f)), "mesh": str(path)}
        mean = {k: float(np.mean([r[k] for r in table.values()])) for k in METRIC_KEYS}
        sheet = self.render(run_dir, out=Path(run_dir) / "eval_contact_sheet.png")
        log = RunDir(run_dir).read_log()
        train_records = [r for r in log if "loss" in r]
        start = [r for r in log if r.get("event") == "start"]
        return {
            "mode": self.config.mode, "input": self.config.input, "shapes": self.names,
            "per_shape": table, "mean": mean,
            "steps": train_records[-1]["step"] if train_records else 0,
            "train_seconds": train_records[-1]["time"] if train_records else 0.0,
            "setup_seconds": start[0].get("build_seconds") if start else None,
            "final_loss": train_records[-1]["loss"] if train_records else None,
            "mesh_resolution": e.resolution, "contact_sheet": sheet["image"],
            "eval_seconds": round(time.perf_counter() - t0, 2),
        }

    # -- rendering ----------------------------------------------------------------------------

    def view(self, z: torch.Tensor, lo, hi, res: int, shading: str) -> np.ndarray:
        """One sphere-traced view ``[res,res,3] uint8`` of ``f(., z)``, framed on the unit-cube box
        ``lo..hi`` (the orbit's first frame, from the front-right: meshes are y-up)."""
        r = self.config.render
        c2w = orbit_path(0.5 * (lo + hi), framing_radius(lo, hi, r.fov_deg), 1, r.elevation_deg,
                         up=(0.0, 1.0, 0.0), start_deg=210.0)[0]
        o, d = pinhole_rays(c2w, res, res, r.fov_deg)
        o, d = torch.from_numpy(o).float(), torch.from_numpy(d).float()
        fn = self.model.field(z)
        t_near, t_far = ray_interval(o, d, lo - 0.02, hi + 0.02)
        t, hit = sphere_trace(fn, o, d, t_near, t_far, r.max_steps, eps=2e-4, step_scale=0.9)
        rgb = torch.ones(res * res, 3)
        if hit.any():
            x = o[hit] + t[hit, None] * d[hit]
            rgb[hit] = shade(gradient_normals(fn, x, eps=2e-3), d[hit], shading)
        return (rgb.reshape(res, res, 3).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)

    def render(self, run_dir: Path, path="sheet", resolution=None, shading=None, out=None, **_):
        """The contact sheet: one view per shape, names written on the tiles, one PNG."""
        if path not in ("sheet", "orbit"):
            raise NerfAppError(f"the latent sdf renders a contact sheet (--path sheet), got {path!r}")
        r = self.config.render
        res, shading = int(resolution or r.resolution), shading or r.shading
        if shading not in ("lambert", "normals"):
            raise NerfAppError(f"--shading must be lambert or normals, got {shading!r}")
        from tqdm import tqdm
        tiles = [self.view(self.code(s.name), *s.unit_mesh.bbox, res, shading)
                 for s in tqdm(self.shapes, desc="contact sheet", unit="shape", disable=not self.config.train.progress)]
        target = Path(out) if out else Path(run_dir) / f"contact_sheet_{shading}.png"
        write_contact_sheet(target, tiles, self.names)
        return {"image": str(target), "shapes": self.names, "tile_resolution": res}


def write_contact_sheet(path, tiles, labels, cols: int = 3) -> None:
    """Tiles ``[res,res,3] uint8`` in a grid of ``cols`` columns, each labelled."""
    contact_sheet(path, grid(tiles, cols), labels=list(labels), tile=tiles[0].shape[0])
