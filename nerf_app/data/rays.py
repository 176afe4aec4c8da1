"""Rays through pixels, and a sampler of random training rays that never builds an all-rays tensor.

A ray is ``origin + t * direction`` in the scene's normalised coordinates with a unit ``direction``.
Pixel ``(x, y)`` in continuous coordinates (centre of the top-left pixel = (0.5, 0.5)) is unprojected
through the camera model (distortion undone exactly), rotated by the camera-to-world matrix, and
the origin is the camera centre.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Protocol, Sequence, Union

import numpy as np
import torch

from .cameras import MODELS_BY_NAME, Camera, unproject
from .images import ImageStore, background_colour


class PosedImages(Protocol):
    """What :class:`RaySampler` reads of a scene (``nerf_app.data.scene.Scene`` provides it). A protocol
    rather than an import, so rays.py does not depend on scene.py, which builds samplers from it."""
    cameras: Sequence[Camera]
    c2w: np.ndarray
    images: "ImageStore"

    def split_indices(self, split: str) -> np.ndarray: ...


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


#: pixels per call of the exact unprojection while a direction table is built: its Newton iterations hold ~40
#: float64 temporaries per pixel, so a 1080p camera in one call peaked at +750 MB (measured on fox) for a 25 MB table
TABLE_CHUNK = 1 << 16


def direction_table(cam: Camera) -> np.ndarray:
    """Camera-frame unit directions ``[H*W, 3]`` float32 through every pixel centre of ``cam`` (row-major), computed
    :data:`TABLE_CHUNK` pixels at a time: each pixel's undistortion depends on that pixel only, so the table is the
    one-call table bit for bit (tested)."""
    grid = pixel_grid(cam.width, cam.height).reshape(-1, 2)
    out = np.empty((len(grid), 3), np.float32)
    for a in range(0, len(grid), TABLE_CHUNK):
        out[a:a + TABLE_CHUNK] = cam.unproject(grid[a:a + TABLE_CHUNK])
    return out


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

    The split's images are decoded once into one packed uint8 buffer (``sum(H*W) x C``) on
    ``device``, or into the out-of-core cache file (``cache``; image_cache.py), which a CPU sampler reads
    without holding it in memory; a batch gathers only its own pixels. Camera-frame directions come from the closed
    form for undistorted cameras, from a per-camera lookup table (float32, built once with the exact
    undistortion) for distorted ones, and from the exact iterative unprojection when ``jitter`` asks
    for sub-pixel positions on a distorted camera or the tables would exceed ``lut_bytes``.

    ``background``: "white", "black", an RGB triple, "random" (a new colour per ray, returned in the
    batch) or "keep" (``rgb`` keeps the alpha channel when the images have one).

    Masks (``scene.images.mask(i)``, True = keep; a ``masks/`` folder or a transforms.json ``mask_path``):
    masked-out pixels are never drawn — batches are drawn uniformly over the kept pixels only.
    """

    def __init__(self, scene: PosedImages, split: str = "train", background: Union[str, Sequence[float]] = "white",
                 device: Union[str, torch.device] = "cpu", seed: int = 0, jitter: bool = False,
                 lut_bytes: int = 512 << 20, cache: str = "none", log=None):
        self.scene = scene
        self.indices = scene.split_indices(split)
        self.background = background
        self._fixed_bg = background_colour(background)
        self.device = torch.device(device)
        self.jitter = jitter
        # the generator lives on the sampler's device: every draw of a batch happens there (on a GPU, no host
        # round trip per step); on the CPU this is the same stream as before
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        cams = [scene.cameras[int(i)] for i in self.indices]
        sizes = [c.width * c.height for c in cams]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        packed = self._mapped(scene, cache, log)
        if packed is None:
            packed = self._decoded(scene)
        # kept pixels (flat indices into the packed buffer) when the scene has masks
        self._kept = None
        kept = None
        if getattr(scene.images, "mask_paths", None) and not isinstance(packed, np.ndarray):
            # pixels out of core: the kept pixels too (a bit per pixel in a file beside them; image_cache.py)
            from .image_cache import cached_kept
            kept = cached_kept(scene.images, self.indices, self.offsets, packed.path.parent,
                               log or (lambda m: None))
        if kept is not None:
            if kept.numel() == 0:
                raise ValueError(f"every pixel of the {split!r} images is masked out")
            if kept.numel() < int(self.offsets[-1]):
                self._kept = kept if self.device.type == "cpu" else kept.to_device(self.device)
        elif getattr(scene.images, "mask_paths", None):
            keep = np.empty(int(self.offsets[-1]), bool)
            for k, i in enumerate(self.indices):
                m = scene.images.mask(int(i))
                keep[self.offsets[k]:self.offsets[k + 1]] = True if m is None else m.reshape(-1)
            if not keep.any():
                raise ValueError(f"every pixel of the {split!r} images is masked out")
            if not keep.all():
                self._kept = torch.from_numpy(np.flatnonzero(keep)).to(self.device)
        dev = self.device
        # the packed pixels: a tensor on the device, or rows read from the out-of-core cache file (image_cache.py)
        # on the CPU; a GPU gathers from its own memory, so the file is read into it once
        if not isinstance(packed, np.ndarray):
            self.pixels = packed if dev.type == "cpu" else packed.to_device(dev)
        else:
            self.pixels = torch.from_numpy(packed).to(dev)
        # everything a batch looks up lives on the device (sample() makes no host read and no host copy)
        self._offsets_t = torch.from_numpy(self.offsets).to(dev)
        self._widths = torch.tensor([c.width for c in cams], dtype=torch.int64).to(dev)
        self._indices_t = torch.from_numpy(np.asarray(self.indices, np.int64)).to(dev)
        self._c2w = torch.from_numpy(scene.c2w[self.indices]).to(dev, torch.float32)
        # pinhole intrinsics per image (used where the camera has no distortion)
        self._K = torch.tensor([[c.fx, c.fy, c.cx, c.cy] for c in cams], dtype=torch.float64).to(dev)
        # how each image's directions are computed: 0 closed form, 1 lookup table, 2 exact unprojection
        self._how = torch.tensor([1 if c.is_distorted else 0 for c in cams], dtype=torch.int64)
        self._lut_base = torch.zeros(len(cams), dtype=torch.int64)  # row offset of the image's camera in _lut
        if jitter:
            self._how[self._how == 1] = 2
            self._lut = torch.zeros(0, 3, device=dev)
        else:
            self._build_luts(cams, lut_bytes)
        # which direction rules occur at all (fixed per sampler: sample() needs no per-batch test)
        self._rules = {int(r) for r in torch.unique(self._how).tolist()}
        self._how = self._how.to(dev)
        self._lut_base = self._lut_base.to(dev)
        self._fixed_bg_t = None if self._fixed_bg is None else torch.from_numpy(self._fixed_bg).to(dev)

    def _decoded(self, scene) -> np.ndarray:
        """The packed pixels decoded into RAM one image at a time: the images are neither listed first nor
        kept in the store's cache (that held every training pixel twice: measured in
        tests/test_image_cache.py). The channel count comes from the file headers; an image that decodes
        with an alpha channel its header did not announce widens the buffer once."""
        from ..errors import DatasetError
        from .image_cache import header_channels
        store = scene.images
        try:
            self.channels = header_channels(store, self.indices)
        except DatasetError:  # a header PIL cannot parse (a format only the decoder reads): decoding decides
            self.channels = 3
        packed = np.empty((int(self.offsets[-1]), self.channels), np.uint8)
        for k, i in enumerate(self.indices):
            im = store.load(int(i), keep=False)
            flat = im.reshape(-1, im.shape[2])
            if flat.shape[1] > self.channels:
                wider = np.empty((len(packed), flat.shape[1]), np.uint8)
                wider[:, :self.channels] = packed
                wider[:, self.channels:] = 255        # the images packed so far are opaque
                packed, self.channels = wider, flat.shape[1]
            rows = slice(self.offsets[k], self.offsets[k + 1])
            packed[rows, :flat.shape[1]] = flat
            if flat.shape[1] < self.channels:
                packed[rows, 3] = 255
        return packed

    def _mapped(self, scene, cache: str, log):
        """The packed pixels in the out-of-core cache (``cache``: none | auto | always | a folder; a
        ``FilePixels`` of nerf_app/data/image_cache.py), or None: decode into RAM."""
        if cache == "none" or not hasattr(scene, "root"):
            return None
        from .image_cache import cache_folder, cached_pixels
        images = scene.images
        folder = cache_folder(cache, scene.root, int(self.offsets[-1]) * 3)  # RGB bytes: enough to choose
        if folder is None:
            return None
        got = cached_pixels(images, self.indices, self.offsets, folder, log or (lambda m: None))
        if got is None:
            return None
        packed, self.channels = got
        return packed

    def _build_luts(self, cams: List[Camera], budget: int) -> None:
        """One table of per-pixel directions per distinct distorted camera, within ``budget`` bytes."""
        tables, seen, used = [], [], 0
        for k, cam in enumerate(cams):
            if not cam.is_distorted:
                continue
            match = next((j for j, (c, _) in enumerate(seen) if c.same_as(cam)), None)
            if match is None:
                nbytes = cam.width * cam.height * 3 * 4
                if used + nbytes > budget:
                    self._how[k] = 2
                    continue
                seen.append((cam, used // 12))
                tables.append(torch.from_numpy(direction_table(cam)))
                used += nbytes
                match = len(seen) - 1
            self._lut_base[k] = seen[match][1]
        self._lut = (torch.cat(tables) if tables else torch.zeros(0, 3)).to(self.device)

    def __len__(self) -> int:
        """The number of pixels batches are drawn from (the kept ones when there are masks)."""
        return int(self.offsets[-1]) if self._kept is None else int(self._kept.numel())

    def sample(self, n: int, part: Optional[Sequence[int]] = None) -> RayBatch:
        """``n`` random training rays (``part=(start, stop)``: only those rows of them, every draw made for all
        ``n``, so the generator advances alike on every data-parallel rank and the rows equal the same rows of
        the whole batch). Everything is drawn and gathered on the sampler's device: no host read and
        no host-to-device copy, so a GPU step does not wait here (the one exception: cameras on the exact
        unprojection rule, see :meth:`_directions`). Per seed the draws are deterministic on each device;
        the CPU draws are the ones this sampler always made."""
        dev, g = self.device, self.generator
        if self._kept is None:
            flat = torch.randint(0, int(self.offsets[-1]), (n,), generator=g, device=dev)
        else:
            flat = self._kept[torch.randint(0, int(self._kept.numel()), (n,), generator=g, device=dev)]
        rows = slice(None) if part is None else slice(int(part[0]), int(part[1]))
        if part is not None:
            flat = flat[rows]
        local = torch.searchsorted(self._offsets_t, flat, right=True) - 1  # which image of the split
        within = flat - self._offsets_t[local]
        widths = self._widths[local]
        px = torch.stack([within % widths, within // widths], -1)
        if self.jitter:
            xy = px.double() + torch.rand(n, 2, generator=g, dtype=torch.float64, device=dev)[rows]
        else:
            xy = px.double() + 0.5
        d_cam = self._directions(local, within, xy)
        c2w = self._c2w[local]
        d = torch.einsum("bij,bj->bi", c2w[:, :3, :3], d_cam)
        d = d / d.norm(dim=-1, keepdim=True)
        colour = self.pixels[flat].float() / 255.0
        bg = None
        if self.channels == 4 and self.background != "keep":
            if self._fixed_bg_t is None:  # random
                bg = torch.rand(n, 3, generator=g, device=dev)[rows]
            else:
                bg = self._fixed_bg_t.expand(flat.shape[0], 3)
            a = colour[:, 3:4]
            colour = colour[:, :3] * a + bg * (1 - a)
        return RayBatch(c2w[:, :3, 3].contiguous(), d, colour, bg, self._indices_t[local], px)

    def _directions(self, local, within, xy) -> torch.Tensor:
        """Camera-frame unit directions ``[n, 3]`` float32. Rule 0 (closed form) and rule 1 (lookup table) are
        computed for every ray and selected per ray, without a host read (per element the same arithmetic as
        computing each group alone). Rule 2 (exact iterative unprojection: a jittered distorted camera, or one
        whose table did not fit ``lut_bytes``) runs on the host and costs host synchronisations on a GPU."""
        rules = self._rules
        out = None
        if 0 in rules:
            K = self._K[local]
            d = torch.stack([(xy[:, 0] - K[:, 2]) / K[:, 0], (xy[:, 1] - K[:, 3]) / K[:, 1],
                             torch.ones_like(xy[:, 0])], -1)
            out = (d / d.norm(dim=-1, keepdim=True)).float()
        if 1 in rules:
            rows = (self._lut_base[local] + within).clamp(max=self._lut.shape[0] - 1)  # other rules' rows: any
            table = self._lut[rows]
            out = table if out is None else torch.where((self._how[local] == 1)[:, None], table, out)
        if 2 in rules:
            if out is None:
                out = torch.empty(len(local), 3, dtype=torch.float32, device=self.device)
            exact = torch.nonzero(self._how[local] == 2).squeeze(1)  # host reads: see the docstring
            if exact.numel():
                idx = self.indices[local[exact].cpu().numpy()]
                d = camera_directions(self.scene.cameras, idx, xy[exact].cpu().numpy())
                out[exact] = torch.from_numpy(d).float().to(self.device)
        return out
