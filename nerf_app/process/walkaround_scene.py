"""A scene that folds structure from motion: a 360-degree hand-held walk around a near-uniform
cylinder standing on a repetitive tile floor inside a room (issue 24, part 4).

The scene is made of analytic surfaces and traced exactly (ray against planes and a finite
cylinder, nearest hit), with the demo scene's camera conventions (OpenCV: x right, y down, z
forward; pixel centres at +0.5; world +z up) and the same shading model (albedo x (ambient +
Lambert)); the light is a point above the cylinder's axis, so shading is symmetric under rotations
about that axis. Nothing here is random at render time: every texture and the camera path come
from ``seed``.

- **Floor** (z = 0): square tiles of ``tile`` metres, all the same, each with a motif that is
  symmetric under a half turn only (two dark squares on one diagonal, two grey discs on the other),
  tiles laid so that the origin is a tile corner: the floor is unchanged by a half turn about the
  cylinder's axis, and by any whole-tile shift.
- **Cylinder** at the origin: a red label with two white bands and one small logo (a checker patch
  on ``logo_deg`` degrees of the circumference), a grey lid with concentric rings.
- **Walls** of a square room of half-width ``room_half``: ``walls="differ"`` gives each wall its own
  posters; ``"half-turn"`` gives opposite walls the same posters (the room is unchanged by a half turn)
  except one small ``cue`` poster; ``"quarter-turn"`` gives all four walls the same posters except
  the cue.
- **Camera**: a walk of ``turn_deg`` degrees around the cylinder at ``walk_radius`` and eye height,
  aimed at the cylinder, with hand-held wobble (radius, height, aim, roll, uneven pace: slow sums of
  sines) and shake (small per-frame noise).

:func:`render_video` writes an mp4 (one video frame per camera, so ``process --frames N`` keeps
frame k as ``frame_00000k.jpg``) and a ``truth.json`` with the true camera-to-world matrices; a
:func:`cut_poses` joins two stretches of the walk that do not meet (a real cut; render it with
``render_video(cfg, out, poses=cut_poses(cfg))``).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

WALL_MODES = ("differ", "half-turn", "quarter-turn")


@dataclass(frozen=True)
class WalkaroundConfig:
    width: int = 480
    height: int = 360
    frames: int = 100
    fps: float = 10.0
    hfov_deg: float = 62.0
    room_half: float = 3.0
    room_height: float = 2.6
    tile: float = 0.3
    can_radius: float = 0.22
    can_height: float = 0.7
    logo_deg: float = 30.0
    walk_radius: float = 1.5
    eye_height: float = 1.25
    aim_height: float = 0.45
    turn_deg: float = 360.0
    start_deg: float = 0.0
    walls: str = "differ"
    cue: bool = True
    wobble: float = 1.0  # scales the hand-held wobble and shake (0: a perfect circle)
    supersample: int = 2
    seed: int = 0

    def focal(self) -> float:
        return 0.5 * self.width / math.tan(0.5 * math.radians(self.hfov_deg))


# ----------------------------------------------------------------------------- camera path

def _look_at(centre: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> np.ndarray:
    """OpenCV camera-to-world (x right, y down, z forward) looking from ``centre`` at ``target``
    with world +z up, rolled by ``roll_deg`` about the optical axis."""
    z = target - centre
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    a = math.radians(roll_deg)
    x, y = math.cos(a) * x + math.sin(a) * y, -math.sin(a) * x + math.cos(a) * y
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = x, y, z, centre
    return m


def _smooth(rng: np.random.Generator, p: np.ndarray, terms: int = 3) -> np.ndarray:
    """A slow random wiggle of ``p`` in [0, 1): a sum of sines of 1-4 periods, amplitude ~1."""
    out = np.zeros_like(p)
    for _ in range(terms):
        f, phase, amp = rng.uniform(0.7, 4.0), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.0)
        out += amp * np.sin(2 * np.pi * f * p + phase)
    return out / terms


def camera_path(cfg: WalkaroundConfig) -> List[np.ndarray]:
    """The ``cfg.frames`` true camera-to-world matrices of the walk (4x4, OpenCV axes)."""
    rng = np.random.default_rng(cfg.seed + 1)
    n = cfg.frames
    p = np.arange(n) / n
    w = cfg.wobble
    pace = p + w * 0.015 * _smooth(rng, p)  # uneven pace; stays monotonic (derivative of the wiggle < 1)
    azimuth = np.radians(cfg.start_deg + cfg.turn_deg * pace)
    radius = cfg.walk_radius * (1 + w * 0.06 * _smooth(rng, p))
    height = cfg.eye_height + w * 0.06 * _smooth(rng, p)
    aim = np.stack([w * 0.05 * _smooth(rng, p), w * 0.05 * _smooth(rng, p),
                    cfg.aim_height + w * 0.05 * _smooth(rng, p)], 1)
    roll = w * 3.0 * _smooth(rng, p)
    shake = w * rng.normal(size=(n, 4)) * np.array([0.004, 0.004, 0.004, 0.25])  # metres, metres, metres, degrees
    poses = []
    for k in range(n):
        centre = np.array([radius[k] * math.cos(azimuth[k]), radius[k] * math.sin(azimuth[k]), height[k]]) + shake[k, :3]
        poses.append(_look_at(centre, aim[k] + 0.3 * shake[k, :3], roll[k] + shake[k, 3]))
    return poses


# ----------------------------------------------------------------------------- textures

def _posters(rng: np.random.Generator, wall_width: float, wall_height: float, count: int) -> List[dict]:
    """Non-overlapping rectangles along a wall (u from -width/2 to +width/2, z up), each a grid of
    random colour blocks (distinctive features), in a frame."""
    out: List[dict] = []
    tries = 0
    while len(out) < count and tries < 500:
        tries += 1
        w, h = rng.uniform(0.5, 1.2), rng.uniform(0.4, 1.0)
        u0 = rng.uniform(-wall_width / 2 + 0.1, wall_width / 2 - 0.1 - w)
        z0 = rng.uniform(0.25, wall_height - 0.2 - h)
        if any(u0 < q["u1"] + 0.1 and q["u0"] < u0 + w + 0.1 and z0 < q["z1"] + 0.1 and q["z0"] < z0 + h + 0.1
               for q in out):
            continue
        nu, nz = int(rng.integers(3, 8)), int(rng.integers(3, 7))
        out.append({"u0": u0, "u1": u0 + w, "z0": z0, "z1": z0 + h, "blocks": rng.uniform(0.05, 0.95, size=(nz, nu, 3)),
                    "frame": rng.uniform(0.1, 0.4, size=3)})
    return out


@dataclass
class _Textures:
    walls: List[List[dict]]  # per wall (+x, +y, -x, -y): posters
    wall_colour: List[np.ndarray]


def _textures(cfg: WalkaroundConfig) -> _Textures:
    if cfg.walls not in WALL_MODES:
        raise ValueError(f"walls must be one of {WALL_MODES}, not {cfg.walls!r}")
    rng = np.random.default_rng(cfg.seed)
    width = 2 * cfg.room_half
    sets = [_posters(rng, width, cfg.room_height, 4) for _ in range(4)]
    colours = [rng.uniform(0.55, 0.85, size=3) for _ in range(4)]
    if cfg.walls == "half-turn":
        sets = [sets[0], sets[1], sets[0], sets[1]]
        colours = [colours[0], colours[1], colours[0], colours[1]]
    elif cfg.walls == "quarter-turn":
        sets = [sets[0]] * 4
        colours = [colours[0]] * 4
    sets = [list(s) for s in sets]
    if cfg.walls != "differ" and cfg.cue:  # one small poster on the +x wall only
        cue_rng = np.random.default_rng(cfg.seed + 7)
        sets[0].append({"u0": -0.2, "u1": 0.2, "z0": cfg.room_height - 0.55, "z1": cfg.room_height - 0.25,
                        "blocks": cue_rng.uniform(0.05, 0.95, size=(3, 3, 3)), "frame": np.array([0.1, 0.1, 0.1])})
    return _Textures(sets, colours)


def _poster_colour(posters: Sequence[dict], u: np.ndarray, z: np.ndarray, base: np.ndarray) -> np.ndarray:
    out = np.broadcast_to(base, u.shape + (3,)).copy()
    out[z < 0.12] = 0.25  # skirting board
    for q in posters:
        inside = (u >= q["u0"]) & (u < q["u1"]) & (z >= q["z0"]) & (z < q["z1"])
        if not inside.any():
            continue
        out[inside] = q["frame"]
        border = 0.03
        iu = (u - q["u0"] - border) / (q["u1"] - q["u0"] - 2 * border)
        iz = (z - q["z0"] - border) / (q["z1"] - q["z0"] - 2 * border)
        picture = inside & (iu >= 0) & (iu < 1) & (iz >= 0) & (iz < 1)
        nz, nu = q["blocks"].shape[:2]
        bi = np.clip((iz[picture] * nz).astype(int), 0, nz - 1)
        bj = np.clip((iu[picture] * nu).astype(int), 0, nu - 1)
        out[picture] = q["blocks"][bi, bj]
    return out


def _floor_colour(x: np.ndarray, y: np.ndarray, tile: float, quarter: bool = False) -> np.ndarray:
    """Identical tiles, the origin a tile corner. Each tile's motif is symmetric under a half turn
    about the tile centre only (two dark squares on one diagonal, two discs on the other), so the
    floor is symmetric under a half turn about the origin; with ``quarter``, a pinwheel of four bars,
    symmetric under a quarter turn (and not under a mirror)."""
    u, v = (x / tile) % 1.0, (y / tile) % 1.0
    out = np.empty(x.shape + (3,))
    out[:] = (0.86, 0.82, 0.72)  # cream
    if quarter:
        a, b = u - 0.5, v - 0.5
        for _ in range(4):  # a bar in one quadrant, turned by 90 degrees three times
            out[(a > 0.06) & (a < 0.40) & (b > 0.10) & (b < 0.22)] = (0.20, 0.24, 0.34)
            out[(a - 0.3) ** 2 + (b + 0.3) ** 2 < 0.06 ** 2] = (0.45, 0.58, 0.48)
            a, b = -b, a
    else:
        for cu, cv in ((0.27, 0.27), (0.73, 0.73)):  # dark squares on one diagonal
            out[(np.abs(u - cu) < 0.11) & (np.abs(v - cv) < 0.11)] = (0.20, 0.24, 0.34)
        for cu, cv in ((0.27, 0.73), (0.73, 0.27)):  # grey-green discs on the other
            out[(u - cu) ** 2 + (v - cv) ** 2 < 0.10 ** 2] = (0.45, 0.58, 0.48)
    grout = (np.minimum(u, 1 - u) < 0.035) | (np.minimum(v, 1 - v) < 0.035)
    out[grout] = (0.48, 0.46, 0.44)
    return out


def _can_side_colour(cfg: WalkaroundConfig, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape + (3,))
    out[:] = (0.78, 0.12, 0.12)
    rel = z / cfg.can_height
    out[((rel > 0.18) & (rel < 0.22)) | ((rel > 0.78) & (rel < 0.82))] = (0.95, 0.95, 0.92)
    out[(rel < 0.03) | (rel > 0.97)] = (0.7, 0.7, 0.72)  # metal rims
    phi = np.degrees(np.arctan2(y, x)) % 360.0
    logo = (phi < cfg.logo_deg) & (rel > 0.35) & (rel < 0.65)
    if logo.any():
        a = np.floor(phi[logo] / (cfg.logo_deg / 5)) + np.floor((rel[logo] - 0.35) / 0.06)
        out[logo] = np.where((a % 2 == 0)[:, None], (0.98, 0.85, 0.15), (0.1, 0.1, 0.1))
    return out


def _can_top_colour(cfg: WalkaroundConfig, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    r = np.sqrt(x * x + y * y) / cfg.can_radius
    out = np.empty(x.shape + (3,))
    out[:] = (0.72, 0.72, 0.74)
    out[((r > 0.55) & (r < 0.62)) | (r > 0.9)] = (0.45, 0.45, 0.48)
    return out


# ----------------------------------------------------------------------------- tracing

def trace_rays(cfg: WalkaroundConfig, tex: _Textures, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Colour (N, 3) in [0, 1] of each ray: the nearest of floor, ceiling, walls, cylinder side and lid."""
    n = len(dirs)
    ox, oy, oz = origins.T
    dx, dy, dz = dirs.T
    big = np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        # room: the camera is inside, so the exit through the box is the hit
        tx = np.where(dx > 0, (cfg.room_half - ox) / dx, np.where(dx < 0, (-cfg.room_half - ox) / dx, big))
        ty = np.where(dy > 0, (cfg.room_half - oy) / dy, np.where(dy < 0, (-cfg.room_half - oy) / dy, big))
        tz = np.where(dz > 0, (cfg.room_height - oz) / dz, np.where(dz < 0, -oz / dz, big))
        # cylinder side: (ox + t dx)^2 + (oy + t dy)^2 = r^2, entering root, 0 < z < h
        a = dx * dx + dy * dy
        b = ox * dx + oy * dy
        c = ox * ox + oy * oy - cfg.can_radius ** 2
        disc = b * b - a * c
        ts = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / a, big)
        zs = oz + ts * dz
        ts = np.where((ts > 0) & (zs > 0) & (zs < cfg.can_height), ts, big)
        # lid: z = h, inside the radius
        tl = np.where(dz < 0, (cfg.can_height - oz) / dz, big)
        xl, yl = ox + tl * dx, oy + tl * dy
        tl = np.where((tl > 0) & (xl * xl + yl * yl < cfg.can_radius ** 2), tl, big)
    ts_all = np.stack([tx, ty, tz, ts, tl], 1)
    which = np.argmin(ts_all, 1)
    t = ts_all[np.arange(n), which]
    p = origins + t[:, None] * dirs
    colour = np.zeros((n, 3))
    normal = np.zeros((n, 3))
    # walls
    for k, sel in ((0, which == 0), (1, which == 1)):
        if not sel.any():
            continue
        d = (dx if k == 0 else dy)[sel]
        q = p[sel]
        positive = d > 0
        # wall index: 0 +x, 1 +y, 2 -x, 3 -y; u runs counterclockwise seen from above
        idx = np.where(positive, k, k + 2)
        u = np.select([idx == 0, idx == 1, idx == 2, idx == 3], [q[:, 1], -q[:, 0], -q[:, 1], q[:, 0]])
        col = np.zeros((len(q), 3))
        for w in range(4):
            m = idx == w
            if m.any():
                col[m] = _poster_colour(tex.walls[w], u[m], q[m, 2], tex.wall_colour[w])
        colour[sel] = col
        nrm = np.zeros((len(q), 3))
        nrm[:, k] = np.where(positive, -1.0, 1.0)
        normal[sel] = nrm
    sel = which == 2
    if sel.any():
        q = p[sel]
        up = dz[sel] > 0
        col = _floor_colour(q[:, 0], q[:, 1], cfg.tile, quarter=cfg.walls == "quarter-turn")
        col[up] = (0.93, 0.93, 0.93)  # ceiling
        colour[sel] = col
        normal[sel] = np.where(up[:, None], (0.0, 0.0, -1.0), (0.0, 0.0, 1.0))
    sel = which == 3
    if sel.any():
        q = p[sel]
        colour[sel] = _can_side_colour(cfg, q[:, 0], q[:, 1], q[:, 2])
        nrm = np.stack([q[:, 0], q[:, 1], np.zeros(len(q))], 1)
        normal[sel] = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
    sel = which == 4
    if sel.any():
        q = p[sel]
        colour[sel] = _can_top_colour(cfg, q[:, 0], q[:, 1])
        normal[sel] = (0.0, 0.0, 1.0)
    # a point light above the cylinder's axis: shading symmetric about the axis
    light = np.array([0.0, 0.0, cfg.room_height - 0.2]) - p
    dist = np.linalg.norm(light, axis=1, keepdims=True)
    lam = np.clip((normal * light / dist).sum(1), 0, None) / (1 + 0.08 * dist[:, 0] ** 2)
    return np.clip(colour * (0.45 + 0.9 * lam)[:, None], 0, 1)


def render_frame(cfg: WalkaroundConfig, c2w: np.ndarray, tex: Optional[_Textures] = None) -> np.ndarray:
    """RGB uint8 (height, width, 3) of one camera (supersampled ``cfg.supersample``^2 per pixel)."""
    tex = tex or _textures(cfg)
    s = cfg.supersample
    f = cfg.focal()
    offsets = (np.arange(s) + 0.5) / s
    xs = (np.arange(cfg.width)[:, None] + offsets[None]).ravel()
    ys = (np.arange(cfg.height)[:, None] + offsets[None]).ravel()
    px, py = np.meshgrid(xs, ys)  # (H*s, W*s)
    d_cam = np.stack([(px - cfg.width / 2) / f, (py - cfg.height / 2) / f, np.ones_like(px)], -1).reshape(-1, 3)
    d = d_cam @ c2w[:3, :3].T
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    o = np.broadcast_to(c2w[:3, 3], d.shape)
    rgb = trace_rays(cfg, tex, o, d).reshape(cfg.height, s, cfg.width, s, 3).mean((1, 3))
    return np.round(rgb * 255).astype(np.uint8)


# ----------------------------------------------------------------------------- files

def _write_mp4(path: Path, frames, cfg: WalkaroundConfig) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (cfg.width, cfg.height), fps=cfg.fps, quality=9,
                                         macro_block_size=2, ffmpeg_log_level="error")
    writer.send(None)
    try:
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()


def truth_record(cfg: WalkaroundConfig, poses: Sequence[np.ndarray], names: Sequence[str]) -> dict:
    f = cfg.focal()
    return {"config": asdict(cfg), "camera": {"model": "PINHOLE", "width": cfg.width, "height": cfg.height,
                                              "fx": f, "fy": f, "cx": cfg.width / 2, "cy": cfg.height / 2},
            "convention": "c2w: 4x4 camera-to-world, OpenCV axes (x right, y down, z forward), world +z up, metres",
            "frames": {n: np.asarray(p).round(9).tolist() for n, p in zip(names, poses)}}


def frame_name(index: int) -> str:
    """The name `process` gives video frame ``index`` (process/frames.py)."""
    return f"frame_{index:06d}.jpg"


def render_video(cfg: WalkaroundConfig, out_dir, name: str = "walkaround",
                 poses: Optional[Sequence[np.ndarray]] = None, progress: bool = False) -> Dict[str, Path]:
    """Render ``out_dir/<name>.mp4`` (one video frame per camera) and ``out_dir/<name>_truth.json``
    (true c2w per frame name as `process` names them). Returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    poses = list(poses) if poses is not None else camera_path(cfg)
    tex = _textures(cfg)

    def frames():
        for k, c2w in enumerate(poses):
            if progress and (k + 1) % 10 == 0:
                print(f"rendered {k + 1}/{len(poses)}", flush=True)
            yield render_frame(cfg, c2w, tex)

    video = out / f"{name}.mp4"
    _write_mp4(video, frames(), cfg)
    truth = out / f"{name}_truth.json"
    truth.write_text(json.dumps(truth_record(cfg, poses, [frame_name(k) for k in range(len(poses))])) + "\n",
                     encoding="utf-8")
    return {"video": video, "truth": truth}


def cut_poses(cfg: WalkaroundConfig, first: Tuple[float, float] = (0.0, 0.5),
              second: Tuple[float, float] = (0.75, 1.0)) -> List[np.ndarray]:
    """Two stretches of the walk joined with nothing in between (a cut): the frames of
    ``first`` and ``second`` (fractions of the walk), as one list."""
    poses = camera_path(cfg)
    n = len(poses)
    a = poses[int(first[0] * n):int(first[1] * n)]
    b = poses[int(second[0] * n):int(second[1] * n)]
    return a + b


def load_truth(path) -> Dict[str, np.ndarray]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {n: np.asarray(m, float) for n, m in data["frames"].items()}


def with_(cfg: WalkaroundConfig, **changes) -> WalkaroundConfig:
    return replace(cfg, **changes)
