"""Held-out evaluation of a NeRF run: PSNR/SSIM per image, renders, contact sheet, training curve."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from ..metrics import lpips, lpips_unavailable_reason, psnr, ssim
from ..results import contact_sheet, write_figure, write_png


def colorize_depth(depth: np.ndarray, opacity: np.ndarray) -> np.ndarray:
    """Depth as a turbo-coloured image (near = warm), transparent pixels black."""
    import matplotlib
    valid = opacity > 0.5
    lo, hi = (np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0))
    norm = np.clip((depth - lo) / max(hi - lo, 1e-8), 0, 1)
    rgb = matplotlib.colormaps["turbo"](1.0 - norm)[..., :3]
    return (rgb * valid[..., None]).astype(np.float32)


def training_curve(log_records: List[Dict[str, Any]], path: Path, eval_psnr: Optional[float] = None) -> bool:
    """PSNR of the training batches against training time, from the run's log.jsonl."""
    pts = [(r["time"], r["psnr"]) for r in log_records if "psnr" in r and "time" in r]
    if not pts:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t, p = zip(*pts)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(t, p, label="training batches")
    if eval_psnr is not None:
        ax.axhline(eval_psnr, color="C1", linestyle="--", label=f"held-out {eval_psnr:.2f} dB")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    write_figure(path, fig, dpi=100)
    return True


def eval_views(scene, split: str, limit: Optional[int]) -> np.ndarray:
    """The images of ``split`` an evaluation scores: all, or ``limit`` of them spread evenly over the split."""
    indices = scene.split_indices(split)
    if len(indices) == 0:
        from ..errors import ConfigError
        raise ConfigError(f"the scene has no {split!r} images (splits: {', '.join(sorted(scene.splits))})")
    if limit and limit < len(indices):
        indices = indices[np.round(np.linspace(0, len(indices) - 1, limit)).astype(int)]
    return indices


def eval_background(config) -> tuple:
    """The fixed background RGBA images are composited over for scoring (``data.eval_background``)."""
    return {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}.get(config.data.eval_background, (1.0, 1.0, 1.0))


def fit_left_score_right(rgb: np.ndarray, gt: np.ndarray, mask: Optional[np.ndarray] = None) -> Dict[str, float]:
    """The held-out appearance protocol of NeRF-W: a 3x4 affine colour map (the form of the per-image
    appearance, see ``appearance`` in the config) fitted by least squares to the *left* half of the held-out
    photo, then the *right* half scored with it, so no scored pixel informs the fit. Returns PSNR/SSIM of
    the right half with the fitted map (``psnr``, ``ssim``) and without it (``psnr_unfitted``: the same
    pixels, for comparison). ``mask [H, W]``: pixels that count (fit and score)."""
    H, W = gt.shape[:2]
    half = W // 2
    keep = np.ones((H, W), bool) if mask is None else np.asarray(mask, bool)
    if not keep[:, half:].any():  # a right half masked out entirely: nothing to score (NaN, left out of the mean)
        return {"psnr": float("nan"), "ssim": float("nan"), "psnr_unfitted": float("nan")}
    left = keep.copy()
    left[:, half:] = False
    x = np.concatenate([rgb[left].reshape(-1, 3), np.ones((int(left.sum()), 1))], 1).astype(np.float64)
    y = gt[left].reshape(-1, 3).astype(np.float64)
    M = np.concatenate([np.eye(3), np.zeros((1, 3))])   # [rgb, 1] @ M: the identity map
    if len(x) >= 16:
        # a small ridge towards the identity: a left half of one flat colour cannot pin 12 numbers down
        lam = 1e-3 * len(x)
        M = np.linalg.solve(x.T @ x + lam * np.eye(4), x.T @ y + lam * M)
    right_rgb = np.clip(np.concatenate([rgb[:, half:], np.ones((H, W - half, 1))], -1) @ M, 0, 1)
    right_gt, right_mask = gt[:, half:], keep[:, half:]
    return {"psnr": psnr(right_rgb, right_gt, mask=right_mask), "ssim": ssim(right_rgb, right_gt, mask=right_mask),
            "psnr_unfitted": psnr(rgb[:, half:], right_gt, mask=right_mask)}


SHEETS = ("worst", "all")
TILE_SIDE = 400   # contact-sheet tiles are at most this many pixels on a side
SHEET_GAP = 4     # white pixels between the contact sheet's cells (rows of views stay apart)
SHEET_COLUMNS = ["ground truth", "render (PSNR)", "depth", "|error| x4"]


def check_sheet(sheet: str) -> None:
    """An unknown ``--sheet`` as one line, before anything is rendered."""
    if sheet not in SHEETS:
        from ..errors import ConfigError
        raise ConfigError(f"--sheet must be one of {', '.join(SHEETS)}, got {sheet!r}")


def sheet_order(psnrs, sheet: str = "worst", rows: int = 4) -> List[tuple]:
    """Which views a contact sheet shows, in order, with a label each: ``[(position, label)]``.

    ``worst``: the ``rows`` lowest-PSNR views, worst first, then the median and the best view (when not
    already shown); ``all``: every view, worst first. Views without a score (NaN) come last."""
    check_sheet(sheet)
    p = np.asarray(psnrs, dtype=np.float64)
    n = len(p)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda k: (not np.isfinite(p[k]), p[k] if np.isfinite(p[k]) else 0.0, k))
    if sheet == "all":
        return [(k, f"{r + 1}/{n} (worst first)") for r, k in enumerate(order)]
    picks = [(k, f"worst {r + 1}/{n}") for r, k in enumerate(order[:max(1, rows)])]
    scored = [k for k in order if np.isfinite(p[k])]
    shown = {k for k, _ in picks}
    if scored:
        for k, label in ((scored[len(scored) // 2], "median"), (scored[-1], "best")):
            if k not in shown:
                picks.append((k, f"{label} of {n}"))
                shown.add(k)
    return picks


def _tile(image: np.ndarray) -> np.ndarray:
    """A float [0,1] image -> uint8 at most ``TILE_SIDE`` pixels on a side (what a sheet tile shows)."""
    from PIL import Image
    from ..results import to_uint8
    im = Image.fromarray(np.ascontiguousarray(to_uint8(np.clip(image, 0, 1))[..., :3]))
    scale = TILE_SIDE / max(im.size)
    if scale < 1:
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.BILINEAR)
    return np.asarray(im)


class SheetTiles:
    """Every view's contact-sheet tiles (:func:`_tile`, small), waiting on disk until all views are scored and
    the sheet picks its rows: ~1 MB per 1080p view that RAM would otherwise hold for the whole pass. Used by
    ``eval`` and ``eval --splats``."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="nerf_app_sheet_tiles_")
        self._paths: List[Path] = []

    def add(self, images) -> None:
        self._paths.append(Path(self._dir.name) / f"{len(self._paths)}.npz")
        np.savez(self._paths[-1], *[_tile(t) for t in images])

    def get(self, k: int) -> List[np.ndarray]:
        with np.load(self._paths[k]) as z:
            return [z[f"arr_{j}"] for j in range(len(z.files))]

    def close(self) -> None:
        self._dir.cleanup()


def label_tile(tile: np.ndarray, lines: List[str]) -> np.ndarray:
    """``lines`` written into the top-left corner of a uint8 tile, black on a white box (readable on any
    image)."""
    from PIL import Image, ImageDraw, ImageFont
    im = Image.fromarray(np.ascontiguousarray(tile))
    size = max(12, max(im.size) // 20)   # the same size on portrait and landscape tiles
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed size
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(im)
    y = 2
    for line in lines:
        box = draw.textbbox((4, y), line, font=font)
        draw.rectangle((box[0] - 2, box[1] - 1, box[2] + 2, box[3] + 1), fill=(255, 255, 255))
        draw.text((4, y), line, fill=(0, 0, 0), font=font)
        y = box[3] + 3
    return np.asarray(im)


def evaluate_nerf(task, run_dir: Path, split: str = "test", limit: Optional[int] = None,
                  sheet_rows: int = 4, sheet: str = "worst") -> Dict[str, Any]:
    """Score ``split`` (or ``limit`` views of it): PSNR/SSIM(/LPIPS) per image, renders in RUN/eval_SPLIT/,
    the contact sheet RUN/contact_sheet_SPLIT.png (:func:`sheet_order`: the worst views first, then the
    median and the best, each labelled with its PSNR; ``sheet="all"``: every view, worst first), the
    training curve."""
    check_sheet(sheet)  # an unknown sheet: the one-line error before any rendering
    scene = task.scene
    indices = eval_views(scene, split, limit)
    out_dir = Path(run_dir) / f"eval_{split}"
    # the renders are staged in a hidden sibling and renamed to eval_SPLIT once every view is scored: a failure
    # midway (an error, Ctrl-C) leaves the run folder as it was, not an eval_SPLIT with some of the views
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage_dir = Path(tempfile.mkdtemp(prefix=f".eval_{split}.partial.", dir=out_dir.parent))
    try:
        metrics = _evaluate_into(task, run_dir, stage_dir, split, indices, sheet_rows, sheet)
        _replace_dir(stage_dir, out_dir)
    finally:
        if stage_dir.exists():
            shutil.rmtree(stage_dir, ignore_errors=True)
    return metrics


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename the folder ``src`` to ``dst``, replacing an earlier ``dst`` (moved aside first, then deleted)."""
    os.chmod(src, 0o777 & ~_umask())   # mkdtemp makes it 0700; eval_SPLIT had the ordinary mode
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _evaluate_into(task, run_dir: Path, out_dir: Path, split: str, indices, sheet_rows: int,
                   sheet: str) -> Dict[str, Any]:
    """:func:`evaluate_nerf`'s scoring, the renders written into ``out_dir`` (its staging folder)."""
    scene = task.scene
    bg = eval_background(task.config)
    per_image, seconds = [], []
    no_lpips = lpips_unavailable_reason()
    if no_lpips:
        tqdm.write(no_lpips)
    samples = 0
    rays = 0
    # runs with per-image appearance also get the fit-left/score-right protocol next to the mean-appearance one
    appearance_fit = bool(getattr(task, "use_appearance", False))
    tiles = SheetTiles()
    bar = tqdm(indices, desc=f"eval {split}", unit="img")
    for k, i in enumerate(bar):
        # streamed: one view decoded at a time and dropped (kept, the store grew by 6.2 MB per 1080p view up to 8 GiB)
        gt = scene.images.rgb(int(i), background=np.array(bg, np.float32), keep=False)[..., :3].astype(np.float32)
        mask = scene.images.mask(int(i))  # masked pixels (transients, people) are not scored
        start = time.perf_counter()
        stats = {}
        rgb, depth, opacity = task.render_view(int(i), bg, stats=stats)
        seconds.append(time.perf_counter() - start)
        samples += stats.get("samples", 0)
        rays += stats.get("rays", 0)
        p, s = psnr(rgb, gt, mask=mask), ssim(rgb, gt, mask=mask)
        row = {"index": int(i), "name": scene.names[int(i)], "psnr": p, "ssim": s,
               "seconds": seconds[-1], "samples_per_ray": stats.get("samples", 0) / max(1, stats.get("rays", 1))}
        if not no_lpips:
            row["lpips"] = lpips(rgb, gt)
        if appearance_fit:
            row["fit_left"] = fit_left_score_right(rgb, gt, mask)
        per_image.append(row)
        bar.set_postfix(psnr=f"{p:.2f}", s=f"{seconds[-1]:.1f}", spr=f"{row['samples_per_ray']:.1f}")
        write_png(out_dir / f"{k:03d}_{Path(scene.names[int(i)]).stem}.png", rgb)
        # every view's tiles, small (the sheet picks its rows once all are scored)
        err = np.abs(rgb - gt).mean(-1, keepdims=True) * 4
        tiles.add((gt, rgb, colorize_depth(depth, opacity), np.repeat(np.clip(err, 0, 1), 3, -1)))
    metrics = {
        "split": split,
        "n_images": len(per_image),
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "ssim_window": "gaussian 11x11, sigma 1.5 (papers' SSIM)",
        "lpips": (float(np.mean([r["lpips"] for r in per_image])) if not no_lpips else None),
        "seconds_per_image": float(np.mean(seconds)),
        "samples_per_ray": samples / max(1, rays),
        "resolution": f"{scene.cameras[int(indices[0])].width}x{scene.cameras[int(indices[0])].height}",
        "appearance": (task.config.appearance.eval if getattr(task, "use_appearance", False) else "none"),
        "masked": bool(scene.images.mask_paths),
        "per_image": per_image,
    }
    if no_lpips:
        metrics["lpips_note"] = no_lpips
    if appearance_fit:
        fit = {"protocol": "3x4 affine colour fitted on the left half of each held-out image, right half scored"}
        for key in ("psnr", "ssim", "psnr_unfitted"):
            v = np.array([r["fit_left"][key] for r in per_image])   # NaN: a right half masked out entirely
            fit[key] = float(np.nanmean(v)) if np.isfinite(v).any() else None
        metrics["fit_left"] = fit
    picks = sheet_order([r["psnr"] for r in per_image], sheet, sheet_rows)
    sheet_tiles = []
    for k, label in picks:
        r = per_image[k]
        gt_t, rgb_t, depth_t, err_t = tiles.get(k)
        sheet_tiles.append([label_tile(gt_t, [label, str(r["name"])]),
                            label_tile(rgb_t, [f"PSNR {r['psnr']:.2f} dB", f"SSIM {r['ssim']:.3f}"]),
                            depth_t, err_t])
    tiles.close()
    contact_sheet(run_dir / f"contact_sheet_{split}.png", sheet_tiles,
                  SHEET_COLUMNS, gap=SHEET_GAP)
    metrics["contact_sheet_views"] = [{"row": n, "name": per_image[k]["name"], "label": label,
                                       "psnr": per_image[k]["psnr"]} for n, (k, label) in enumerate(picks)]
    log = []
    log_path = run_dir / "log.jsonl"
    if log_path.exists():
        log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if training_curve(log, run_dir / "training_curve.png", metrics["psnr"]):
        metrics["training_curve"] = "training_curve.png"
    metrics["contact_sheet"] = f"contact_sheet_{split}.png"
    return metrics
