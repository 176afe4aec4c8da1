"""Rays through pixels, and a sampler of random training rays that never builds an all-rays tensor.

A ray is ``origin + t * direction`` in the scene's normalised coordinates with a unit ``direction``.
Pixel ``(x, y)`` in continuous coordinates (centre of the top-left pixel = (0.5, 0.5)) is unprojected
through the camera model (distortion undone exactly), rotated by the camera-to-world matrix, and
the origin is the camera centre.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .cameras import MODELS_BY_NAME, Camera, unproject
from .images import background_colour

if TYPE_CHECKING:  # pragma: no cover
    from .scene import Scene


def camera_directions(cameras: Sequence[Camera], image_index: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Unit camera-frame directions ``(B, 3)`` float64 for ``pixels (B, 2)`` of images ``image_index``.

    Rays are grouped by camera model and each group is unprojected in one vectorised call with
    per-ray parameter rows, so 77 per-image cameras cost the same as one shared camera."""
    image_index = np.asarray(image_index)
    out = np.empty((len(image_index), 3))
    models = np.array([c.model for c in cameras])
    ray_models = models[image_index]
    for name in np.unique(ray_models):
        sel = np.flatnonzero(ray_models == name)
        table = np.stack([c.params if c.model == name else np.zeros(MODELS_BY_NAME[name].num_params)
                          for c in cameras])
        out[sel] = unproject(MODELS_BY_NAME[name], table[image_index[sel]], pixels[sel])
    return out


def world_rays(c2w: np.ndarray, cameras: Sequence[Camera], image_index, pixels):
    """``(origins, directions)`` float64 ``(B, 3)`` in the coordinates of ``c2w``."""
    image_index = np.asarray(image_index, dtype=np.int64)
    pixels = np.asarray(pixels, dtype=np.float64)
    d_cam = camera_directions(cameras, image_index, pixels)
    R = c2w[image_index, :3, :3]
    d = np.einsum("bij,bj->bi", R, d_cam)
    d /= np.linalg.norm(d, axis=-1, keepdims=True)
    return c2w[image_index, :3, 3].copy(), d


def pixel_grid(width: int, height: int) -> np.ndarray:
    """Pixel-centre coordinates ``(H, W, 2)``: ``(x + 0.5, y + 0.5)``."""
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([xs, ys], axis=-1)


@dataclass
class RayBatch:
    """A batch of training rays. ``rgb`` is float in [0, 1]: composited over ``background`` (per ray,
    so a model trained with random backgrounds can be given the same colour), or RGBA when the sampler
    keeps alpha. ``image_index`` and integer ``pixel`` (x, y) say where each ray came from."""

    origins: torch.Tensor
    directions: torch.Tensor
    rgb: torch.Tensor
    background: Optional[torch.Tensor]
    image_index: torch.Tensor
    pixel: torch.Tensor

    def __len__(self) -> int:
        return int(self.origins.shape[0])


class RaySampler:
    """Random pixels, uniformly over all pixels of a split's images, with their rays and colours.

    The split's images are decoded once into one packed uint8 buffer (``sum(H*W) x C``); a batch
    gathers only its own pixels. Directions for distorted cameras come from a per-camera lookup
    table (float32, built once) unless ``jitter`` asks for sub-pixel positions, in which case they are
    unprojected exactly.

    ``background``: "white", "black", an RGB triple, "random" (a new colour per ray, returned in the
    batch) or "keep" (``rgb`` has 4 channels with alpha).
    """

    def __init__(self, scene: "Scene", split: str = "train", background: Union[str, Sequence[float]] = "white",
                 device: Union[str, torch.device] = "cpu", seed: int = 0, jitter: bool = False,
                 lut_bytes: int = 512 << 20):
        self.scene = scene
        self.indices = scene.split_indices(split)
        self.background = background
        self._fixed_bg = background_colour(background)
        self.device = torch.device(device)
        self.jitter = jitter
        self.generator = torch.Generator().manual_seed(seed)
        sizes = [scene.cameras[i].width * scene.cameras[i].height for i in self.indices]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        images = [scene.images.load(int(i)) for i in self.indices]
        self.channels = 4 if any(im.shape[2] == 4 for im in images) else 3
        packed = np.empty((int(self.offsets[-1]), self.channels), np.uint8)
        for k, im in enumerate(images):
            flat = im.reshape(-1, im.shape[2])
            packed[self.offsets[k]:self.offsets[k + 1], :flat.shape[1]] = flat
            if flat.shape[1] < self.channels:
                packed[self.offsets[k]:self.offsets[k + 1], 3] = 255
        self.pixels = torch.from_numpy(packed)
        self._offsets_t = torch.from_numpy(self.offsets)
        self._c2w = torch.from_numpy(scene.c2w[self.indices])
        self._luts: Dict[int, torch.Tensor] = {}
        self._lut_of_image: List[Optional[int]] = [None] * len(self.indices)
        if not jitter:
            self._build_luts(lut_bytes)

    def _build_luts(self, budget: int) -> None:
        """Per-pixel camera-frame directions of each distinct distorted camera, within ``budget`` bytes."""
        used, seen = 0, {}
        for k, i in enumerate(self.indices):
            cam = self.scene.cameras[int(i)]
            if not cam.is_distorted:
                continue
            key = next((kk for kk, c in seen.items() if c.same_as(cam)), None)
            if key is None:
                nbytes = cam.width * cam.height * 3 * 4
                if used + nbytes > budget:
                    continue
                key = len(seen)
                seen[key] = cam
                grid = pixel_grid(cam.width, cam.height).reshape(-1, 2)
                self._luts[key] = torch.from_numpy(cam.unproject(grid).astype(np.float32))
                used += nbytes
            self._lut_of_image[k] = key

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def sample(self, n: int) -> RayBatch:
        flat = torch.randint(0, int(self.offsets[-1]), (n,), generator=self.generator)
        local = torch.searchsorted(self._offsets_t, flat, right=True) - 1  # which image of the split
        within = flat - self._offsets_t[local]
        widths = torch.tensor([self.scene.cameras[int(i)].width for i in self.indices])[local]
        px = torch.stack([within % widths, within // widths], -1)
        if self.jitter:
            xy = px.double() + torch.rand(n, 2, generator=self.generator, dtype=torch.float64)
        else:
            xy = px.double() + 0.5
        d_cam = self._directions(local.numpy(), xy.numpy())
        R = self._c2w[local, :3, :3]
        d = torch.einsum("bij,bj->bi", R, d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        origins = self._c2w[local, :3, 3]
        colour = self.pixels[flat].float() / 255.0
        bg = None
        if self.channels == 4 and self.background != "keep":
            if self._fixed_bg is None:  # random
                bg = torch.rand(n, 3, generator=self.generator)
            else:
                bg = torch.from_numpy(self._fixed_bg).expand(n, 3)
            a = colour[:, 3:4]
            colour = colour[:, :3] * a + bg * (1 - a)
        to = dict(device=self.device)
        image_index = torch.from_numpy(self.indices)[local]
        return RayBatch(origins.float().to(**to), d.float().to(**to), colour.to(**to),
                        None if bg is None else bg.to(**to), image_index.to(**to), px.to(**to))

    def _directions(self, local: np.ndarray, xy: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(local), 3, dtype=torch.float64)
        lut_ids = np.array([-1 if k is None else k for k in self._lut_of_image])[local]
        exact = lut_ids < 0
        if exact.any():
            idx = self.indices[local[exact]]
            out[torch.from_numpy(exact)] = torch.from_numpy(camera_directions(self.scene.cameras, idx, xy[exact]))
        for key, lut in self._luts.items():
            sel = np.flatnonzero(lut_ids == key)
            if sel.size:
                w = self.scene.cameras[int(self.indices[local[sel[0]]])].width
                pix = (xy[sel, 1] - 0.5).astype(np.int64) * w + (xy[sel, 0] - 0.5).astype(np.int64)
                out[torch.from_numpy(sel)] = lut[torch.from_numpy(pix)].double()
        return out
