"""Held-out evaluation of a NeRF run: PSNR/SSIM per image, renders, contact sheet, training curve."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from tqdm import tqdm

from ..metrics import psnr, ssim
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


def evaluate_nerf(task, run_dir: Path, split: str = "test", limit: Optional[int] = None,
                  sheet_rows: int = 4) -> Dict[str, Any]:
    scene = task.scene
    indices = scene.split_indices(split)
    if len(indices) == 0:
        from ..errors import ConfigError
        raise ConfigError(f"the scene has no {split!r} images (splits: {', '.join(sorted(scene.splits))})")
    if limit and limit < len(indices):
        indices = indices[np.round(np.linspace(0, len(indices) - 1, limit)).astype(int)]
    out_dir = run_dir / f"eval_{split}"
    out_dir.mkdir(parents=True, exist_ok=True)
    bg = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0)}.get(task.config.data.eval_background, (1.0, 1.0, 1.0))
    per_image, rows, seconds = [], [], []
    for k, i in enumerate(tqdm(indices, desc=f"eval {split}", unit="img")):
        gt = scene.images.rgb(int(i), background=np.array(bg, np.float32))[..., :3].astype(np.float32)
        start = time.perf_counter()
        rgb, depth, opacity = task.render_view(int(i), bg)
        seconds.append(time.perf_counter() - start)
        p, s = psnr(rgb, gt), ssim(rgb, gt)
        per_image.append({"index": int(i), "name": scene.names[int(i)], "psnr": p, "ssim": s})
        write_png(out_dir / f"{k:03d}_{Path(scene.names[int(i)]).stem}.png", rgb)
        if len(rows) < sheet_rows:
            err = np.abs(rgb - gt).mean(-1, keepdims=True) * 4
            rows.append([gt, rgb, colorize_depth(depth, opacity), np.repeat(np.clip(err, 0, 1), 3, -1)])
    metrics = {
        "split": split,
        "n_images": len(per_image),
        "psnr": float(np.mean([r["psnr"] for r in per_image])),
        "ssim": float(np.mean([r["ssim"] for r in per_image])),
        "seconds_per_image": float(np.mean(seconds)),
        "per_image": per_image,
    }
    contact_sheet(run_dir / f"contact_sheet_{split}.png", rows, ["ground truth", "render", "depth", "|error| x4"])
    log = []
    log_path = run_dir / "log.jsonl"
    if log_path.exists():
        log = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if training_curve(log, run_dir / "training_curve.png", metrics["psnr"]):
        metrics["training_curve"] = "training_curve.png"
    metrics["contact_sheet"] = f"contact_sheet_{split}.png"
    return metrics
