"""`load_scene`: any supported capture -> one normalised :class:`Scene`."""
from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..errors import ConfigError, DatasetError
from . import colmap, llff, normalize, transforms
from .cameras import Camera
from .capture import Capture, SparsePoints
from .images import ImageStore, downscaled_size, header_info
from .normalize import Normalization, aabb_for_cascades
from .rays import RaySampler, pixel_grid, world_rays
from .validate import contained, report_missing

FORMATS = ("auto", "colmap", "transforms", "llff")


#: shared cameras whose per-pixel directions Scene.rays keeps (a held-out view of a shared camera then skips
#: the undistortion; a camera of one image only is never kept)
GRID_DIRECTION_CACHE = 2


@dataclass
class Scene:
    """A posed image collection in normalised coordinates, whatever file it came from.

    Per image ``i`` (all lists/arrays have one entry per image, sorted as the reader orders them):

    - ``names[i]``, ``image_paths[i]``: name in the source file and the file on disk.
    - ``cameras[i]``: :class:`~nerf_app.data.cameras.Camera` (COLMAP model, ``params``, ``width``,
      ``height``) at the loaded resolution (after ``downscale``). Shared cameras are one object.
    - ``c2w[i]``: 4x4 float64 camera-to-world, OpenCV axes (x right, y down, z forward), in
      normalised coordinates. ``c2w_capture`` gives the same poses in the capture's coordinates.

    Scene-wide:

    - ``splits``: ``{"train": idx, "test": idx, ...}`` int64 index arrays. The file's own splits
      when it has them (Blender: train/val/test), else every ``holdout_every``-th image is "test".
    - ``normalization``: ``x_norm = scale * x_capture + translation``, with ``to_capture`` /
      ``inverse_matrix`` for writing meshes and camera paths back in capture coordinates.
    - ``n_cascades`` and ``aabb`` ((2, 3): min, max corner): the occupancy-grid cascades chosen
      and the box they span; the region of interest is the unit cube [0, 1]^3.
    - ``points3D``: :class:`~nerf_app.data.capture.SparsePoints` in normalised coordinates with
      their 2D observations (COLMAP), or None.
    - ``images``: :class:`~nerf_app.data.images.ImageStore`, lazily decoded uint8 images
      (``load(i)``, ``rgb(i, background)``, ``mask(i)``).
    - ``bounded``: images carry alpha around an object (Blender synthetic), so one cascade suffices.
    - ``format``, ``root`` (the scene folder), ``source`` (file or model folder read), ``downscale``,
      ``meta`` (format-specific extras, e.g. the file's ``aabb_scale`` hint, LLFF near/far).

    Rays: ``rays(i)`` for a whole image, ``rays_at(image_index, pixels)`` for chosen pixels, and
    ``ray_sampler(split)`` for random training batches with target colours.
    """

    format: str
    root: Path
    source: Path
    names: List[str]
    image_paths: List[Path]
    cameras: List[Camera]
    c2w: np.ndarray
    splits: Dict[str, np.ndarray]
    normalization: Normalization
    n_cascades: int
    aabb: np.ndarray
    images: ImageStore
    points3D: Optional[SparsePoints] = None
    bounded: bool = False
    downscale: float = 1
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def c2w_capture(self) -> np.ndarray:
        return self.normalization.c2w_to_capture(self.c2w)

    def split_indices(self, split: str) -> np.ndarray:
        if split == "all":
            return np.arange(len(self))
        if split not in self.splits:
            raise ConfigError(f"no split {split!r}; this scene has {', '.join(self.splits)} (and 'all')")
        return self.splits[split]

    def num_images(self, split: str = "all") -> int:
        return len(self.split_indices(split))

    def rays_at(self, image_index, pixels) -> Tuple[np.ndarray, np.ndarray]:
        """``(origins, directions)`` float64 ``(B, 3)`` for continuous ``pixels (B, 2)`` of ``image_index (B,)``."""
        return world_rays(self.c2w, self.cameras, image_index, pixels)

    def rays(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """All pixel-centre rays of image ``index`` as ``(H, W, 3)`` origins and unit directions: the rays of
        :func:`~nerf_app.data.rays.world_rays` for every pixel, bit for bit, without its per-ray matrices, and
        with the camera-frame directions of the last few cameras kept (:meth:`_grid_directions`)."""
        cam = self.cameras[index]
        d = np.einsum("ij,bj->bi", self.c2w[index, :3, :3], self._grid_directions(cam))
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        o = np.empty_like(d)
        o[:] = self.c2w[index, :3, 3]
        return o.reshape(cam.height, cam.width, 3), d.reshape(cam.height, cam.width, 3)

    def _grid_directions(self, cam: Camera) -> np.ndarray:
        """Camera-frame unit directions ``(H*W, 3)`` through every pixel centre of ``cam`` (read-only). The
        exact undistortion of a distorted camera is Newton iterations over every pixel: ~3 s a 720x1280
        view on the 2-core box, as long as its render. Views of one shared camera (a video, most phone
        captures) reuse it: the :data:`GRID_DIRECTION_CACHE` most recent cameras that two or more images share
        are kept (22 MB each at 720x1280); a camera of one image only (cup's 77) is never kept."""
        key = (cam.model, cam.width, cam.height, cam.params.tobytes())
        shared = self.__dict__.get("_grid_shared_cameras")
        if shared is None:
            counts: Dict[tuple, int] = {}
            for c in self.cameras:
                k = (c.model, c.width, c.height, c.params.tobytes())
                counts[k] = counts.get(k, 0) + 1
            shared = self.__dict__["_grid_shared_cameras"] = {k for k, n in counts.items() if n > 1}
        cache = self.__dict__.setdefault("_grid_direction_cache", OrderedDict())
        hit = cache.get(key)
        if hit is None:
            hit = cam.unproject(pixel_grid(cam.width, cam.height).reshape(-1, 2))
            hit.setflags(write=False)
            if key in shared:
                cache[key] = hit
                while len(cache) > GRID_DIRECTION_CACHE:
                    cache.popitem(last=False)
        else:
            cache.move_to_end(key)
        return hit

    def ray_sampler(self, split: str = "train", **options) -> RaySampler:
        """Random training rays with colours; see :class:`~nerf_app.data.rays.RaySampler` for options."""
        return RaySampler(self, split, **options)

    def reprojection_errors(self) -> Optional[np.ndarray]:
        """Pixel distance between each stored 2D observation and its 3D point projected with our
        camera model and pose, or None without sparse points."""
        pts = self.points3D
        if pts is None or len(pts.obs_image) == 0:
            return None
        errors = np.empty(len(pts.obs_image))
        w2c = np.linalg.inv(self.c2w)
        for i in np.unique(pts.obs_image):
            sel = np.flatnonzero(pts.obs_image == i)
            X = pts.xyz[pts.obs_point[sel]] @ w2c[i, :3, :3].T + w2c[i, :3, 3]
            errors[sel] = np.linalg.norm(self.cameras[i].project(X) - pts.obs_xy[sel], axis=1)
        return errors

    def summary(self) -> dict:
        models = sorted({c.model for c in self.cameras})
        resolutions = sorted({(c.width, c.height) for c in self.cameras})
        centres = self.c2w_capture[:, :3, 3]
        out = {
            "path": str(self.source), "format": self.format, "images": len(self),
            "splits": {k: int(len(v)) for k, v in self.splits.items()},
            "camera_models": models, "cameras": len({id(c) for c in self.cameras}),
            "resolutions": [f"{w}x{h}" for w, h in resolutions[:10]] + (["..."] if len(resolutions) > 10 else []),
            "downscale": self.downscale, "bounded": self.bounded,
            "camera_bounds_capture": [centres.min(0).tolist(), centres.max(0).tolist()],
            "normalization": self.normalization.to_dict(), "n_cascades": self.n_cascades,
            "aabb": self.aabb.tolist(), "points3D": 0 if self.points3D is None else len(self.points3D),
        }
        if "aabb_scale" in self.meta:
            out["aabb_scale_hint"] = self.meta["aabb_scale"]
        return out


def load_scene(path: Union[str, Path], *, format: str = "auto", downscale: float = 1, holdout_every: int = 8,
               images: Optional[str] = None, colmap_kind: str = "auto", n_cascades: Optional[int] = None,
               check_images: bool = True, masks: Union[str, bool] = "auto") -> Scene:
    """Load a capture (format auto-detected) and normalise it.

    - ``path``: a scene folder (COLMAP ``sparse/0`` + ``images/``, ``transforms*.json``, or LLFF
      ``poses_bounds.npy`` + ``images/``), a COLMAP model folder, or a ``transforms*.json`` file.
      Nothing outside the scene folder is ever opened.
    - ``format``: "auto" (COLMAP, then transforms.json, then LLFF), "colmap", "transforms", "llff".
    - ``downscale``: divide image resolution by this factor (box filter); intrinsics scale to match.
    - ``holdout_every``: without splits in the file, every n-th image (by name) is "test".
    - ``images``: the images folder name for COLMAP/LLFF (default "images").
    - ``colmap_kind``: "auto", "binary" or "text" when a model folder holds both.
    - ``n_cascades``: override the automatic cascade count.
    - ``check_images``: compare every image header's size with its camera (cheap; no decoding).
    - ``masks``: "auto" uses a ``masks/`` folder next to ``images/`` when present; False ignores it.
    """
    path = Path(path)
    if format not in FORMATS:
        raise DatasetError(path, f"unknown format {format!r}; choose one of {', '.join(FORMATS)}", "format")
    if not path.exists():
        raise DatasetError(path, "no such file or folder")
    if not downscale or not downscale >= 1:
        raise DatasetError(path, f"downscale must be >= 1, got {downscale}", "downscale")
    capture = _read(path, format, images or "images", colmap_kind, check_images)
    return _build(capture, downscale, holdout_every, n_cascades, check_images, masks, images or "images")


def is_capture(path) -> bool:
    """True when ``path`` holds a posed capture ``load_scene`` can read (any format): the one place that
    knows the formats' markers, used by mode detection too."""
    path = Path(path)
    return (colmap.find_model_dir(path) is not None or transforms.find_transforms(path) is not None
            or llff.find_llff(path) is not None)


def _read(path: Path, format: str, images_name: str, colmap_kind: str, check_images: bool) -> Capture:
    if format in ("auto", "colmap"):
        model = colmap.find_model_dir(path)
        if model is not None:
            root = _colmap_root(path, model)
            return colmap.build_capture(model, root, root / images_name, colmap_kind)
        if format == "colmap":
            raise DatasetError(path, "no COLMAP model (cameras.bin/.txt) here or in sparse/0")
    if format in ("auto", "transforms"):
        files = transforms.find_transforms(path)
        if files is not None:
            root = next(iter(files.values())).parent
            return transforms.build_capture(files, root, check_images)
        if format == "transforms":
            raise DatasetError(path, "no transforms.json or transforms_{train,val,test}.json here")
    npy = llff.find_llff(path)
    if npy is not None:
        return llff.build_capture(npy, npy.parent, npy.parent / images_name, check_images)
    raise DatasetError(path, "no scene found: expected a COLMAP model (sparse/0), transforms.json or poses_bounds.npy"
                       if format == "auto" else "no poses_bounds.npy here")


def _colmap_root(path: Path, model: Path) -> Path:
    """The scene folder of a model folder: the user's folder, or the one above ``sparse/`` when the
    user pointed at the model itself (``scene/sparse/0`` -> ``scene``)."""
    if model != path:
        return path
    if model.parent.name == "sparse":
        return model.parent.parent
    if model.name == "sparse":
        return model.parent
    return model


# Coordinates beyond this are corrupt values, not a capture; they would overflow the normalisation.
_MAX_COORDINATE = 1e12


def _build(cap: Capture, downscale: float, holdout_every: int, n_cascades: Optional[int], check_images: bool,
           masks, images_name: str) -> Scene:
    report_missing(cap.image_paths, cap.source)
    if np.abs(cap.c2w[:, :3, 3]).max() > _MAX_COORDINATE:
        raise DatasetError(cap.source, f"camera positions exceed {_MAX_COORDINATE:g} units", "poses")
    if cap.points is not None and len(cap.points) and np.abs(cap.points.xyz).max() > _MAX_COORDINATE:
        raise DatasetError(cap.source, f"points3D coordinates exceed {_MAX_COORDINATE:g} units", "points3D")
    if check_images and cap.format != "transforms":  # transforms.py checked its own sizes
        _match_cameras_to_images(cap)
    _check_rays_finite(cap)
    source_sizes = [(c.width, c.height) for c in cap.cameras]
    cameras = cap.cameras
    points = cap.points
    if downscale != 1:
        scaled: Dict[int, Camera] = {}
        for c in cameras:  # keep shared cameras shared
            scaled.setdefault(id(c), c.scaled(*downscaled_size(c.width, c.height, downscale)))
        new = [scaled[id(c)] for c in cameras]
        if points is not None and len(points.obs_image):
            sx = np.array([n.width / c.width for n, c in zip(new, cameras)])
            sy = np.array([n.height / c.height for n, c in zip(new, cameras)])
            xy = points.obs_xy * np.stack([sx[points.obs_image], sy[points.obs_image]], -1)
            points = SparsePoints(points.xyz, points.rgb, points.error, points.ids, points.obs_image,
                                  points.obs_point, xy)
        cameras = new

    mask_paths = cap.mask_paths
    if mask_paths is None and masks and cap.format != "transforms":
        mask_dir = cap.root / "masks"
        if mask_dir.is_dir():
            mask_paths = [contained(_mask_for(mask_dir, n), cap.root, mask_dir, n, "mask") for n in cap.names]
            report_missing(mask_paths, mask_dir, "masks")

    splits = cap.splits
    if splits is None:
        if holdout_every < 2:
            raise DatasetError(cap.source, f"holdout_every must be >= 2, got {holdout_every}", "holdout_every")
        order = np.argsort(np.array(cap.names, dtype=object))
        test = np.zeros(len(cap.names), bool)
        test[order[::holdout_every]] = True
        splits = {"train": np.flatnonzero(~test), "test": np.flatnonzero(test)}
        if len(cap.names) == 1:  # a single image is both
            splits = {"train": np.array([0]), "test": np.array([0])}

    report = normalize.choose(cap.c2w, cameras, None if points is None else points.xyz, cap.bounded,
                              depth_hint=_llff_depth(cap), n_cascades=n_cascades)
    norm = report.normalization
    if points is not None:
        points = SparsePoints(norm.to_normalized(points.xyz), points.rgb, points.error, points.ids,
                              points.obs_image, points.obs_point, points.obs_xy)
    meta = dict(cap.meta)
    meta["normalization"] = {"centre_from": report.centre_from, "radius_from": report.radius_from, **report.details}
    store = ImageStore(cap.image_paths, source_sizes, [(c.width, c.height) for c in cameras], mask_paths)
    return Scene(format=cap.format, root=cap.root, source=cap.source, names=cap.names, image_paths=cap.image_paths,
                 cameras=cameras, c2w=norm.c2w_to_normalized(cap.c2w), splits=splits, normalization=norm,
                 n_cascades=report.n_cascades, aabb=aabb_for_cascades(report.n_cascades), images=store,
                 points3D=points, bounded=cap.bounded, downscale=downscale, meta=meta)


def _check_rays_finite(cap: Capture) -> None:
    """Each distinct camera's rays through a grid of pixel centres (every pixel of a small image; 33 x 33
    including the corners and edges otherwise) must be finite:
    absurd intrinsics (a principal point 1e19 pixels away, a distortion that overflows) are refused here,
    naming the image, instead of feeding NaN rays to training."""
    seen = set()
    for name, cam in zip(cap.names, cap.cameras):
        if id(cam) in seen:
            continue
        seen.add(id(cam))
        w, h = cam.width, cam.height
        xs, ys = np.meshgrid(np.linspace(0.5, w - 0.5, min(w, 33)), np.linspace(0.5, h - 0.5, min(h, 33)))
        with np.errstate(all="ignore"):
            dirs = cam.unproject(np.stack([xs.ravel(), ys.ravel()], -1))
            norms = np.linalg.norm(dirs, axis=-1)
        if not (np.all(np.isfinite(dirs)) and np.all(np.abs(norms - 1.0) < 1e-3)):  # unit and finite
            params = ", ".join(f"{v:.4g}" for v in np.asarray(cam.params, np.float64))
            raise DatasetError(cap.source, f"the camera of {name} gives non-finite rays (implausible intrinsics: "
                               f"{cam.model} [{params}])", "camera")


def _match_cameras_to_images(cap: Capture) -> None:
    """Check each image's header size against its camera. An images folder that declares itself a
    uniformly downscaled copy by its name (``images_4/`` beside a COLMAP model, as COLMAP and LLFF
    write them) gets its cameras and observations rescaled when every image is the camera's size
    divided by that factor; any other mismatch is an error. A smaller image of the same aspect ratio
    in ``images/`` may be a crop, whose focal length must not be scaled: it is refused, not guessed."""
    scaled: Dict[Tuple[int, int, int], Camera] = {}
    new = []
    for p, cam in zip(cap.image_paths, cap.cameras):
        w, h, _ = header_info(p)
        if (w, h) != (cam.width, cam.height):
            factor = re.fullmatch(r"images_(\d+)", p.parent.name)
            k = int(factor.group(1)) if factor else 0
            if not k or (round(cam.width / k), round(cam.height / k)) != (w, h):
                hint = ""
                if w < cam.width and round(cam.height * w / cam.width) == h:
                    k_guess = cam.width / w
                    hint = (f"; if the images are a copy downscaled by {k_guess:g}, put them in a folder named "
                            f"images_{round(k_guess)} (then the intrinsics are rescaled); a cropped image needs "
                            f"its own camera")
                raise DatasetError(p, f"image is {w}x{h} but its camera says {cam.width}x{cam.height}{hint}", "size")
            cam = scaled.setdefault((id(cam), w, h), cam.scaled(w, h))
        new.append(cam)
    if not scaled:
        return
    pts = cap.points
    if pts is not None and len(pts.obs_image):
        sx = np.array([n.width / c.width for n, c in zip(new, cap.cameras)])
        sy = np.array([n.height / c.height for n, c in zip(new, cap.cameras)])
        pts.obs_xy = pts.obs_xy * np.stack([sx[pts.obs_image], sy[pts.obs_image]], -1)
    cap.cameras = new
    cap.meta["cameras_rescaled_to_images"] = True


def _mask_for(mask_dir: Path, name: str) -> Path:
    """COLMAP's convention is ``masks/<name>.png``; many datasets reuse the image name as is."""
    plain = mask_dir / name
    return plain if plain.is_file() else mask_dir / (name + ".png")


def _llff_depth(cap: Capture) -> Optional[float]:
    if "near" in cap.meta and "far" in cap.meta:
        return 0.5 * (cap.meta["near"] + cap.meta["far"])
    return None
