"""The ``image`` mode: fit ``f: [0,1]^2 -> colour`` to one image (PNG/JPEG/EXR, grey or colour).

Data: the image ``I`` ``[H, W, C]`` (C = 1 for grey, also when an RGB file has R = G = B; alpha is
dropped), as float32. Pixel ``(row i, column j)`` has its centre at ``x = ((j + 0.5)/W, (i + 0.5)/H)``.

Colour space: by default the network is trained in the file's own space - PNG/JPEG values are
sRGB-encoded (``/255``), EXR values are linear - so PSNR/SSIM compare like with like against the
source. ``data.color_space=linear|srgb`` converts on load (IEC 61966-2-1 transfer function).
Rendered PNGs are 8-bit sRGB: a linear-space model is encoded to sRGB when written.

Loss: MSE over a batch of ``optim.batch_size`` random pixels per step (global torch RNG, so runs
are seeded and resumable). Adam, learning rate decaying exponentially ``lr -> lr_final``.
Eval: PSNR and SSIM (skimage) of the full-resolution prediction, ``data_range`` = 1 (or the
image's maximum if larger, for HDR EXR). Render: any ``W x H`` (super-resolution), optionally a
zoom ``render.crop`` of the unit square, to ``RUN/render_WxH.png``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np
import torch

from ..errors import ConfigError, DatasetError, NerfAppError, reraise_if_bug
from ..metrics import psnr_from_mse
from ..results import write_png
from ..train.task import Task
from .config import ImageConfig
from .field import InrField

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr")


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.04045, c / 12.92, ((np.clip(c, 0, None) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * np.clip(c, 0, None) ** (1 / 2.4) - 0.055)


def load_image(path) -> Tuple[np.ndarray, str]:
    """``(float32 [H, W, C], space)`` with ``space`` ``"srgb"`` (8/16-bit files) or ``"linear"`` (EXR)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "image not found")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise DatasetError(path, f"unsupported image type (expected {'/'.join(IMAGE_SUFFIXES)})")
    if suffix == ".exr":
        from .exr import read_exr
        ch = read_exr(path)
        names = [c for c in ("R", "G", "B") if c in ch] or [c for c in ch if c != "A"][:3]
        if not names:
            raise DatasetError(path, "no colour channels")
        img, space = np.stack([ch[c] for c in names], -1), "linear"
    else:
        import imageio.v3 as iio
        try:
            raw = iio.imread(path)
        except Exception as e:  # imageio raises many types for broken files
            reraise_if_bug(e)   # but not MemoryError, nor a mistake in the call above
            raise DatasetError(path, f"cannot read image: {e}") from None
        scale = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else 1.0
        img, space = raw.astype(np.float32) / scale, "srgb"
        if img.ndim == 2:
            img = img[..., None]
        if img.shape[-1] in (2, 4):
            img = img[..., :-1]     # drop alpha
    if img.ndim != 3 or img.shape[0] < 1 or img.shape[1] < 1:
        raise DatasetError(path, f"unexpected image shape {img.shape}")
    if img.shape[-1] == 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 0], img[..., 2]):
        img = img[..., :1]          # grey stored as RGB
    return np.ascontiguousarray(img, np.float32), space


def parse_resolution(resolution, shape_hw) -> Tuple[int, int]:
    """``None`` -> the source size; ``"WxH"`` -> (W, H); an int ``N`` -> longest side N, aspect kept."""
    H, W = shape_hw
    if resolution is None:
        return W, H
    if isinstance(resolution, str) and "x" in resolution.lower():
        try:
            w, h = (int(v) for v in resolution.lower().split("x"))
        except ValueError:
            raise NerfAppError(f"--resolution must be N or WxH, got {resolution!r}") from None
    else:
        try:
            n = int(resolution)
        except ValueError:
            raise NerfAppError(f"--resolution must be N or WxH, got {resolution!r}") from None
        w, h = (n, max(1, round(n * H / W))) if W >= H else (max(1, round(n * W / H)), n)
    if w < 1 or h < 1:
        raise NerfAppError(f"--resolution must be positive, got {resolution!r}")
    return w, h


def pixel_grid(w: int, h: int, crop=(0.0, 0.0, 1.0, 1.0)) -> torch.Tensor:
    """Pixel centres of a ``w x h`` image of the region ``crop = (x0, y0, x1, y1)``: ``[h*w, 2]`` (x, y)."""
    x0, y0, x1, y1 = crop
    xs = x0 + (torch.arange(w, dtype=torch.float32) + 0.5) / w * (x1 - x0)
    ys = y0 + (torch.arange(h, dtype=torch.float32) + 0.5) / h * (y1 - y0)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], -1).reshape(-1, 2)


class ImageTask(Task):
    config_class = ImageConfig
    description = "2D image: pixel coordinates -> colour"
    distributed = True

    def build(self) -> None:
        cfg = self.config
        img, space = load_image(cfg.input)
        target_space = space if cfg.data.color_space == "file" else cfg.data.color_space
        if target_space not in ("linear", "srgb"):
            raise ConfigError(f"data.color_space must be file, linear or srgb, got {cfg.data.color_space!r}")
        if target_space != space:
            img = (srgb_to_linear(img) if target_space == "linear" else linear_to_srgb(img)).astype(np.float32)
        self.space = target_space
        self.image = torch.from_numpy(img)                       # [H, W, C]
        self.H, self.W, self.C = img.shape
        self.pixels = self.image.reshape(-1, self.C)
        self.model = InrField(2, self.C, cfg.model, max(self.H, self.W), cfg.seed, cfg.backend).to(self.device)
        params = list(self.model.parameters())
        self.optimizer = torch.optim.Adam(params, lr=cfg.optim.lr, betas=(0.9, 0.99), eps=cfg.optim.eps,
                                          fused=True)

    def train_step(self, step: int) -> Dict[str, Any]:
        lr = self.decayed_lr(self.config.optim.lr, self.config.optim.lr_final)
        self.set_lr(lr)
        n = self.config.optim.batch_size
        idx = torch.randint(0, self.H * self.W, (n,))
        if self.dist is not None:  # every rank draws the global batch (same RNG state everywhere) and keeps its rows
            first, last, share = self.batch_part(n)
            idx = idx[first:last]
        x = torch.stack([((idx % self.W).float() + 0.5) / self.W, ((idx // self.W).float() + 0.5) / self.H], -1)
        mse = ((self.model(x.to(self.device)) - self.pixels[idx].to(self.device)) ** 2).mean()
        if self.dist is None:
            mse.backward()
            return {"loss": mse, "psnr": psnr_from_mse(mse.detach()), "lr": lr}
        (mse * share).backward()
        global_mse = self.dist.sum_values([float(mse.detach()) * (last - first) / n])[0]
        return {"loss": mse.detach() * share, "psnr": psnr_from_mse(torch.tensor(global_mse)), "lr": lr}

    def extra_state(self):
        return {"space": self.space, "shape": [self.H, self.W, self.C]}

    # -- after training ------------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, w: int, h: int, crop=(0.0, 0.0, 1.0, 1.0)) -> np.ndarray:
        """The model sampled at the pixel centres of a ``w x h`` image of ``crop``: ``[h, w, C]``."""
        x = pixel_grid(w, h, crop)
        chunk = self.config.eval.chunk
        out = torch.cat([self.model(x[s:s + chunk].to(self.device)).cpu() for s in range(0, len(x), chunk)])
        return out.reshape(h, w, self.C).numpy()

    def evaluate(self, run_dir: Path, **_) -> Dict[str, Any]:
        from skimage.metrics import structural_similarity

        from ..train.run import RunDir

        t0 = time.perf_counter()
        pred = self.predict(self.W, self.H)
        gt = self.image.numpy()
        rng = max(1.0, float(gt.max()))
        mse = float(np.mean((np.clip(pred, 0, rng) - gt) ** 2))
        psnr = psnr_from_mse(mse, rng)
        ssim = float(structural_similarity(gt, np.clip(pred, 0, rng), data_range=rng, channel_axis=-1))
        self._write_png(Path(run_dir) / "eval_prediction.png", pred)
        log = RunDir(run_dir).read_log()
        rec = [r for r in log if "loss" in r]
        start = [r for r in log if r.get("event") == "start"]
        return {"mode": "image", "input": self.config.input, "psnr": round(psnr, 3), "ssim": round(ssim, 5),
                "mse": mse, "resolution": [self.W, self.H], "channels": self.C, "color_space": self.space,
                "encoding": self.config.model.encoding, "network": self.config.model.network,
                "parameters": int(sum(p.numel() for p in self.model.parameters())),
                "steps": rec[-1]["step"] if rec else 0, "train_seconds": rec[-1]["time"] if rec else 0.0,
                "setup_seconds": start[0].get("build_seconds") if start else None,
                "eval_seconds": round(time.perf_counter() - t0, 2)}

    def _write_png(self, path: Path, img: np.ndarray) -> None:
        if self.space == "linear":
            img = linear_to_srgb(img)
        write_png(path, img)

    def render(self, run_dir: Path, resolution=None, out=None, path=None, **_) -> Dict[str, Any]:
        w, h = parse_resolution(resolution, (self.H, self.W))
        crop = tuple(float(v) for v in self.config.render.crop)
        if len(crop) != 4 or not (crop[0] < crop[2] and crop[1] < crop[3]):
            raise ConfigError(f"render.crop must be x0,y0,x1,y1 with x0<x1, y0<y1; got {list(crop)}")
        t0 = time.perf_counter()
        img = self.predict(w, h, crop)
        target = Path(out) if out else Path(run_dir) / f"render_{w}x{h}.png"
        self._write_png(target, img)
        return {"image": str(target), "resolution": [w, h], "crop": list(crop),
                "seconds": round(time.perf_counter() - t0, 2)}
