"""Refine baked splats against the training photos for a time budget (3D Gaussian Splatting's recipe,
shortened): Adam on every parameter with 3DGS's per-group learning rates, an L1 + D-SSIM photometric loss on
one training view per step, drawn at ``scale`` of its resolution; every ``densify_every`` steps splats
whose screen-space position gradient is large are cloned (small ones) or split in two (large ones) while
the budget allows, and nearly transparent ones are pruned."""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..export.depth import corrected_c2w
from ..ops.splat import SplatCamera, render_splats
from .model import Splats

# 3DGS's learning rates, with the position's in normalised scene units (the unit cube)
LR = {"means": 1.6e-4, "log_scales": 5e-3, "quats": 1e-3, "opacity_logits": 2.5e-2, "sh_dc": 2.5e-3,
      "sh_rest": 2.5e-3 / 20}
# ... all times this. 3DGS's rates are for 30,000 steps; a refinement of a few hundred steps might want larger
# ones, but measured with the `export --splats` defaults (quiet 2-core box, 90 s, one run each) it is not
# clear: cup10 (~300 steps at 400x300, 10 held-out views at 400x300) x1 25.65 dB, x2 26.01, x4 25.14;
# lego10 (~480 steps at 400x400, 25 held-out views) x1 30.99, x2 30.32. So 3DGS's own.
LR_SCALE = 1.0
# the rates at the end of the budget, as a fraction of the start (exponential decay in the budget's elapsed share;
# 3DGS decays the position's rate to 1/100 over its 30,000 steps and keeps the others). Measured on cup10 at 480
# steps: every rate to 1/10 and the position's to 1/100 cost 1.5 dB (24.87 against 26.35; docs/splats.md), so none
LR_FINAL = {"means": 1.0, "log_scales": 1.0, "quats": 1.0, "opacity_logits": 1.0, "sh": 1.0}
# A cool-down: in the last COOL_SHARE of the budget every rate falls linearly to COOL_FACTOR of itself, and
# density control stops after DENSIFY_UNTIL of it (a split's or a clone's new splats need steps to settle).
# Together, measured with a step budget (the steps the defaults' 180 s bought before; docs/splats.md): lego10
# 863 steps, 25 held-out views, 32.12 -> 32.61 dB; cup10 307 steps, 10 views at 400x300, 26.85 -> 27.20 dB.
# Unlike LR_FINAL's decay over the whole budget, the rates stay high while the splats still move far.
COOL_SHARE = 0.2
COOL_FACTOR = 0.1
DENSIFY_UNTIL = 0.7
GRAD_THRESHOLD = 2e-4     # mean screen-space position gradient (per view that saw the splat) that densifies it
PRUNE_OPACITY = 0.005
CROP = None               # train on a random CROP x CROP window of the view each step (None: the whole view).
                          # lego10, 164 s, 256x256 windows of the 400x400 photos: 802 steps (the projection of
                          # every splat stays), 30.39 dB against 32.12 for whole views (docs/splats.md)


def _ssim_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - SSIM (11x11 Gaussian window, sigma 1.5) of ``[H, W, 3]`` images. The window is separable: a column
    then a row pass (22 products a pixel instead of 121; a refinement step's SSIM cost 0.058 of its 0.47 s)."""
    x, y = a.permute(2, 0, 1)[None], b.permute(2, 0, 1)[None]
    g = torch.exp(-0.5 * ((torch.arange(11, dtype=a.dtype) - 5) / 1.5) ** 2)
    g = g / g.sum()
    col = g.view(1, 1, 11, 1).expand(3, 1, 11, 1).contiguous()
    row = g.view(1, 1, 1, 11).expand(3, 1, 1, 11).contiguous()
    f = lambda t: F.conv2d(F.conv2d(t, col, padding=(5, 0), groups=3), row, padding=(0, 5), groups=3)  # noqa: E731
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return 1 - s.mean()


def rate_factor(name: str, share: float) -> float:
    """The factor on group ``name``'s learning rate once ``share`` (0..1) of the budget is spent: ``LR_FINAL``'s
    exponential decay times the cool-down's linear fall to ``COOL_FACTOR`` over the last ``COOL_SHARE``."""
    cool = 1.0
    if COOL_SHARE > 0 and share > 1.0 - COOL_SHARE:
        cool = 1.0 - (1.0 - COOL_FACTOR) * min(1.0, (share - (1.0 - COOL_SHARE)) / COOL_SHARE)
    return LR_FINAL[name] ** share * cool


class _Targets:
    """Training photos at the refinement's resolution, decoded once and kept (float32)."""

    def __init__(self, task, indices, step: int, background):
        self.task, self.step, self.bg = task, step, np.asarray(background, np.float32)
        self.cache: Dict[int, torch.Tensor] = {}

    def __call__(self, index: int) -> torch.Tensor:
        if index not in self.cache:
            img = torch.from_numpy(self.task.scene.images.rgb(index, background=self.bg)[..., :3].astype(np.float32))
            if self.step > 1:
                H, W = img.shape[:2]
                h, w = math.ceil(H / self.step), math.ceil(W / self.step)
                # replicate padding pads the last two dims of a [1, C, H, W] tensor (a 6-value pad of [H, W, 3]
                # is refused by torch: every photo larger than max_side failed here, e.g. cup10's)
                chw = F.pad(img.permute(2, 0, 1)[None], (0, w * self.step - W, 0, h * self.step - H), mode="replicate")
                img = F.avg_pool2d(chw, self.step)[0].permute(1, 2, 0).contiguous()
            self.cache[index] = img
        return self.cache[index]


def block_camera(task, index: int, step: int) -> SplatCamera:
    """Image ``index``'s camera at the resolution of :class:`_Targets` (means of ``step`` x ``step`` blocks):
    block ``k``'s centre is full-resolution pixel coordinate ``(k + 0.5) step``, so ``x' = x / step`` (not the
    every-step-th-pixel camera of ``views.scene_camera``, which is off by ``(step - 1) / 2`` pixels there)."""
    cam = task.scene.cameras[int(index)]
    return SplatCamera(corrected_c2w(task, index), cam.fx / step, cam.fy / step, cam.cx / step, cam.cy / step,
                       math.ceil(cam.width / step), math.ceil(cam.height / step))


def refine_splats(task, splats: Splats, seconds: float, max_splats: int, step: Optional[int] = None,
                  densify_every: int = 100, seed: int = 0, progress: bool = True, max_side: int = 400,
                  max_steps: Optional[int] = None) -> tuple:
    """``(refined Splats, report)``; ``splats`` in the normalised frame. ``step``: train at every ``step``-th
    pixel's resolution (default: the smallest step that brings the photos' longer side to ``max_side``). 400:
    on cup10's 294k-splat bake, 90 s on a quiet 2-core box with the C++ projection and the AVX-512 rasteriser
    bought 292 steps at 400x300 (21.10 -> 23.89 dB held-out), 185 at 800x600 (23.39) and ~320 at 200x150
    (300 steps: 23.29): a step costs 0.31 s at 400x300 against 0.28 at 200x150 (docs/splats.md).
    ``max_steps``: stop after this many steps if the time runs out later (the learning-rate schedule then
    follows the steps, so a run is the same on a busy and a quiet machine)."""
    from ..nerf.evaluate import eval_background
    from tqdm import tqdm
    t0 = time.perf_counter()
    scene = task.scene
    train = [int(i) for i in scene.split_indices("train")]
    if step is None:
        step = max(1, math.ceil(max(max(scene.cameras[i].width, scene.cameras[i].height) for i in train) / max_side))
    bg = torch.tensor(eval_background(task.config), dtype=torch.float32)
    targets = _Targets(task, train, step, bg.numpy())
    cams = {i: block_camera(task, i, step) for i in train}
    params = {k: t.detach().clone().contiguous().requires_grad_()
              for k, t in zip(("means", "log_scales", "quats", "opacity_logits", "sh"), splats.tensors())}

    def make_optimizer(params):
        sh = params["sh"]
        groups = [{"params": [params[k]], "lr": LR[k] * LR_SCALE, "name": k}
                  for k in ("means", "log_scales", "quats", "opacity_logits")]
        # DC and the higher bands of one tensor: the rest's smaller rate through a gradient hook scale
        groups.append({"params": [sh], "lr": LR["sh_dc"] * LR_SCALE, "name": "sh"})
        # fused: one pass over each tensor. cup10's 372,769 splats at SH degree 2: 0.0083 s a step against
        # 0.0347 s for the foreach loop (benchmarks/splats.py --adam, 7 reps, quiet, 2-core EPYC), ~6 % of a
        # refinement step; the same PSNR after the same steps (25.874 dB both, docs/splats.md)
        return torch.optim.Adam(groups, eps=1e-15, fused=True)

    def rest_scale(g):
        g = g.clone()
        g[:, 1:] *= LR["sh_rest"] / LR["sh_dc"]
        return g

    hook = params["sh"].register_hook(rest_scale)
    opt = make_optimizer(params)
    rng = np.random.default_rng(seed)
    grad_acc = torch.zeros(len(splats))
    seen = torch.zeros(len(splats))
    losses, n_steps, densified, pruned, rounds = [], 0, 0, 0, 0
    bar = tqdm(total=int(seconds), desc="refine splats", unit="s", disable=not progress, file=sys.stderr)
    order = []

    def progress_share():
        if max_steps:
            return min(1.0, n_steps / max_steps)
        return min(1.0, (time.perf_counter() - t0) / seconds) if seconds > 0 else 0.0

    # a step starts only if, at the last step's pace, it ends within the budget (the export's bake + refine
    # then stays within its total instead of passing it by up to a step, 0.45 s on cup10)
    step_seconds = 0.0
    while time.perf_counter() - t0 + step_seconds < seconds and (max_steps is None or n_steps < max_steps):
        step_start = time.perf_counter()
        share = progress_share()
        for group in opt.param_groups:
            group["lr"] = LR[group["name"] if group["name"] != "sh" else "sh_dc"] * LR_SCALE * \
                rate_factor(group["name"], share)
        if not order:
            order = list(rng.permutation(train))
        i = int(order.pop())
        cam, gt = cams[i], targets(i)
        if CROP and (cam.width > CROP or cam.height > CROP):
            w, h = min(CROP, cam.width), min(CROP, cam.height)
            x0, y0 = int(rng.integers(0, cam.width - w + 1)), int(rng.integers(0, cam.height - h + 1))
            cam, gt = cam.cropped(x0, y0, w, h), gt[y0:y0 + h, x0:x0 + w]
        img, _, proj = render_splats(params["means"], params["log_scales"], params["quats"], params["opacity_logits"],
                                     params["sh"], cam, bg)
        proj.mean2d.retain_grad()
        loss = 0.8 * (img - gt).abs().mean() + 0.2 * _ssim_loss(img, gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n_steps += 1
        losses.append(float(loss.detach()))
        with torch.no_grad():
            vis = proj.radius > 0
            g = proj.mean2d.grad
            if g is not None:
                # 3DGS measures the gradient in NDC units: pixels times 2/size
                gn = (g * torch.tensor([0.5 * cams[i].width, 0.5 * cams[i].height])).norm(dim=-1)
                grad_acc[vis] += gn[vis]
                seen[vis] += 1
        if n_steps % densify_every == 0 and progress_share() <= DENSIFY_UNTIL:
            rounds += 1
            params, opt, grad_acc, seen, d, p = _densify_and_prune(params, opt, grad_acc, seen, max_splats,
                                                                  make_optimizer, hook, rest_scale)
            hook = params["sh"].register_hook(rest_scale)
            densified += d
            pruned += p
        bar.n = min(int(seconds), int(time.perf_counter() - t0))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", n=len(params["means"]))
        step_seconds = time.perf_counter() - step_start
    bar.close()
    hook.remove()
    out = Splats(*[params[k].detach() for k in ("means", "log_scales", "quats", "opacity_logits", "sh")])
    report = {"refine_seconds": round(time.perf_counter() - t0, 2), "refine_steps": n_steps,
              "refine_resolution": f"1/{step}", "densify_rounds": rounds, "densified": densified, "pruned": pruned,
              "loss_first": round(float(np.mean(losses[:10])), 5) if losses else None,
              "loss_last": round(float(np.mean(losses[-10:])), 5) if losses else None,
              "seconds_per_step": round((time.perf_counter() - t0) / max(1, n_steps), 3)}
    return out, report


@torch.no_grad()
def _densify_and_prune(params, opt, grad_acc, seen, max_splats, make_optimizer, hook, rest_scale):
    """3DGS's adaptive density control within ``max_splats``; the optimiser's moments follow the splats
    (kept rows keep theirs, new rows start at zero)."""
    from ..ops.splat import quat_to_rotmat
    n = params["means"].shape[0]
    avg = grad_acc / seen.clamp_min(1)
    keep = torch.sigmoid(params["opacity_logits"]) >= PRUNE_OPACITY
    scale = torch.exp(params["log_scales"]).amax(-1)
    big = scale > torch.quantile(scale, 0.9)
    cand = torch.nonzero((avg >= GRAD_THRESHOLD) & keep)[:, 0]
    room = max(0, max_splats - int(keep.sum()))
    if len(cand) > room:   # the budget: the largest gradients first (a split adds one splat, as a clone does)
        cand = cand[torch.argsort(avg[cand], descending=True)[:room]]
    clone, split = cand[~big[cand]], cand[big[cand]]
    base = keep.clone()
    base[split] = False                      # a split parent is replaced by its two children
    base_idx = torch.nonzero(base)[:, 0]
    extra = {k: [params[k][clone]] for k in params}
    if len(split):
        # two children inside the parent, drawn from it, scales divided by 1.6 (3DGS)
        R = quat_to_rotmat(params["quats"][split])
        s = torch.exp(params["log_scales"][split])
        offset = (R @ (torch.randn_like(s) * s)[..., None])[..., 0]
        for sign in (1.0, -1.0):
            for k in params:
                v = params[k][split]
                if k == "means":
                    v = v + sign * offset
                elif k == "log_scales":
                    v = v - math.log(1.6)
                extra[k].append(v)
    hook.remove()
    out = {k: torch.cat([params[k][base_idx]] + extra[k], 0).contiguous().requires_grad_() for k in params}
    opt2 = make_optimizer(out)
    for k in params:
        st = opt.state.get(params[k])
        if not st:
            continue
        added = out[k].shape[0] - len(base_idx)
        pad = lambda t: torch.cat([t[base_idx], torch.zeros((added,) + t.shape[1:], dtype=t.dtype)], 0)  # noqa: E731
        opt2.state[out[k]] = {"step": st["step"], "exp_avg": pad(st["exp_avg"]), "exp_avg_sq": pad(st["exp_avg_sq"])}
    m = out["means"].shape[0]
    return out, opt2, torch.zeros(m), torch.zeros(m), int(len(clone) + len(split)), int(n - int(keep.sum()))
