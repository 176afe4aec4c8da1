"""eval's contact sheet: the worst views first (then the median and the best), each labelled with its PSNR;
--sheet all for every view. Checked on the PNG itself with a stub task whose views have known errors."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from nerf_app.nerf import evaluate as ev

H, W = 120, 160
NOISE = [0.02, 0.30, 0.08, 0.01, 0.15, 0.05, 0.20]   # per view: bigger -> lower PSNR
COLOURS = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230], [230, 230, 30], [30, 230, 230],
                    [230, 30, 230], [120, 60, 200]], np.uint8)


class StubImages:
    def rgb(self, i, background=None, keep=True):
        return np.broadcast_to(COLOURS[i] / 255.0, (H, W, 3)).astype(np.float32)

    def mask(self, i):
        return None

    mask_paths = []


class StubTask:
    """Seven held-out views: a flat colour each, rendered with a fixed-amplitude +-noise pattern."""
    def __init__(self):
        self.scene = SimpleNamespace(split_indices=lambda split: np.arange(len(NOISE)),
                                     images=StubImages(), names=[f"view_{i}.jpg" for i in range(len(NOISE))],
                                     cameras=[SimpleNamespace(width=W, height=H)] * len(NOISE), splits={"test": 0})
        self.config = SimpleNamespace(data=SimpleNamespace(eval_background="white"))

    def render_view(self, i, bg, stats=None):
        gt = self.scene.images.rgb(i)
        sign = np.where((np.arange(H)[:, None] + np.arange(W)[None, :]) % 2 == 0, 1.0, -1.0)[..., None]
        rgb = np.clip(gt + NOISE[i] * sign, 0, 1)
        return rgb.astype(np.float32), np.ones((H, W), np.float32), np.ones((H, W), np.float32)


def test_sheet_order():
    p = [25.0, 17.5, 30.0, float("nan"), 22.0, 33.8, 28.0]
    picks = ev.sheet_order(p, "worst", rows=3)
    assert [k for k, _ in picks] == [1, 4, 0, 6, 5]    # 3 worst, then the median (28.0 of 6 scored), the best
    assert picks[0][1] == "worst 1/7" and picks[3][1].startswith("median") and picks[4][1].startswith("best")
    allp = ev.sheet_order(p, "all")
    assert [k for k, _ in allp] == [1, 4, 0, 6, 2, 5, 3]   # NaN last
    assert ev.sheet_order([20.0, 10.0], "worst", rows=4) == [(1, "worst 1/2"), (0, "worst 2/2")]
    from nerf_app.errors import ConfigError
    with pytest.raises(ConfigError, match="--sheet"):
        ev.sheet_order(p, "best")


def rows_in_sheet(path, n_rows):
    """The flat colour of each row's ground-truth tile (the middle of the tile, below the label box), read at
    the positions :func:`nerf_app.results.sheet_layout` gives for tiles of this size."""
    from PIL import Image
    from nerf_app.results import sheet_layout
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)
    scale = min(1.0, ev.TILE_SIDE / max(H, W))         # eval's tiles are shrunk to TILE_SIDE, never grown
    tile = (round(H * scale), round(W * scale))
    layout = sheet_layout([[tile] * 4] * n_rows, ev.SHEET_COLUMNS, gap=ev.SHEET_GAP)
    assert img.shape[:2] == layout["sheet"][::-1]
    out = []
    for r in range(n_rows):
        px = img[layout["y"][r] + int(0.8 * layout["heights"][r]), layout["x"][0] + layout["widths"][0] // 2]
        out.append(int(np.argmin(np.abs(COLOURS.astype(int) - px).sum(1))))
    return out, img, layout


@pytest.mark.parametrize("sheet", ["worst", "all"])
def test_contact_sheet_shows_worst_first_with_psnr(tmp_path, monkeypatch, sheet):
    monkeypatch.setattr(ev, "lpips_unavailable_reason", lambda: "lpips skipped in this test")
    metrics = ev.evaluate_nerf(StubTask(), tmp_path, "test", None, sheet_rows=3, sheet=sheet)
    psnr = {r["name"]: r["psnr"] for r in metrics["per_image"]}
    by_psnr = sorted(range(len(NOISE)), key=lambda i: psnr[f"view_{i}.jpg"])
    expect = by_psnr[:3] + [by_psnr[3], by_psnr[-1]] if sheet == "worst" else by_psnr
    shown = [int(Path(v["name"]).stem.split("_")[1]) for v in metrics["contact_sheet_views"]]
    assert shown == expect and shown[0] == int(np.argmax(NOISE))
    rows, img, layout = rows_in_sheet(tmp_path / "contact_sheet_test.png", len(expect))
    assert rows == expect          # the picture agrees with the metrics
    # a white label box with dark text in the top-left corner of the render tile (the PSNR)
    top, left = layout["y"][0], layout["x"][1]
    corner = img[top + 3:top + 14, left + 2:left + 60]
    assert (corner == 255).all(-1).mean() > 0.3 and (corner < 80).all(-1).any()
    for v in metrics["contact_sheet_views"]:
        assert v["psnr"] == pytest.approx(psnr[v["name"]])


def test_label_tile_writes_readable_text():
    tile = np.zeros((200, 300, 3), np.uint8)
    out = ev.label_tile(tile, ["PSNR 17.52 dB"])
    assert out.shape == tile.shape and (out[:30, :150] == 255).any() and (out[60:] == 0).all()


def test_the_nerf_task_passes_the_sheet_choice_through(monkeypatch, tmp_path):
    """`eval --sheet all` reaches evaluate_nerf through NerfTask.evaluate (the verb passes its options on)."""
    from nerf_app.nerf import evaluate as ev
    from nerf_app.nerf.task import NerfTask
    seen = {}
    monkeypatch.setattr(ev, "evaluate_nerf", lambda task, run_dir, split, limit, sheet="worst": seen.update(
        split=split, limit=limit, sheet=sheet) or {})
    NerfTask.evaluate(object(), tmp_path, limit=3, sheet="all")
    assert seen == {"split": "test", "limit": 3, "sheet": "all"}
    NerfTask.evaluate(object(), tmp_path)
    assert seen["sheet"] == "worst"


@pytest.mark.parametrize("shape", [(400, 225), (300, 400), (200, 200)])
def test_sheet_cells_fit_their_tiles(tmp_path, shape):
    """Portrait and landscape tiles fill their cells (no white band above/below or beside them beyond the
    gap), and the column titles are written large enough to read (cap height well over the old 7 pixels)."""
    from PIL import Image
    from nerf_app.results import contact_sheet
    h, w = shape
    rows = [[np.full((h, w, 3), 40 * (1 + r + c), np.uint8) for c in range(3)] for r in range(2)]
    gap = 4
    layout = contact_sheet(tmp_path / "s.png", rows, ["ground truth", "render (PSNR)", "depth"], gap=gap)
    img = np.asarray(Image.open(tmp_path / "s.png").convert("RGB")).astype(int)
    assert img.shape[:2] == (layout["head"] + 2 * h + gap, 3 * w + 2 * gap)
    for r in range(2):
        for c in range(3):
            y, x = layout["y"][r], layout["x"][c]
            assert (img[y:y + h, x:x + w] == 40 * (1 + r + c)).all()      # the tile, edge to edge
    title = img[:layout["head"], :layout["widths"][0]]
    ink = np.nonzero((title < 128).all(-1).any(1))[0]
    assert layout["font"] >= 14 and ink.size and ink[-1] - ink[0] >= 10     # letters >= 10 pixels tall
    assert (img[:layout["head"], layout["x"][1]:] < 128).all(-1).any()       # every column has its title


class FailingTask(StubTask):
    """Renders three views, then fails (a crash midway through eval)."""
    def render_view(self, i, bg, stats=None):
        if i >= 3:
            raise RuntimeError("render failed")
        return super().render_view(i, bg, stats)


def test_eval_folder_is_staged_and_renamed_on_success(tmp_path, monkeypatch):
    """eval_SPLIT appears only once every view is scored: a failure midway leaves no partial folder (nor its
    staging folder) and an earlier eval_SPLIT as it was; a success replaces it whole."""
    monkeypatch.setattr(ev, "lpips_unavailable_reason", lambda: "lpips skipped in this test")
    with pytest.raises(RuntimeError, match="render failed"):
        ev.evaluate_nerf(FailingTask(), tmp_path, "test", None, sheet_rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == []          # nothing: not eval_test with 3 views
    earlier = tmp_path / "eval_test"
    earlier.mkdir()
    (earlier / "stale.png").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="render failed"):
        ev.evaluate_nerf(FailingTask(), tmp_path, "test", None, sheet_rows=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval_test"]
    assert [p.name for p in earlier.iterdir()] == ["stale.png"]       # the earlier evaluation untouched
    ev.evaluate_nerf(StubTask(), tmp_path, "test", None, sheet_rows=3)
    renders = sorted(p.name for p in earlier.iterdir())
    assert len(renders) == len(NOISE) and "stale.png" not in renders  # replaced whole by the new one
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert earlier.stat().st_mode & 0o777 == 0o777 & ~_umask()       # not mkdtemp's 0700


def _umask():
    import os
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
