"""The frusta plot of a capture: its cameras and sparse points from above and from the side, in normalised
coordinates, with the unit cube and the cascades' box. Drawn by ``nerf-app inspect`` and by ``process``
(``process_frusta.png``), so it lives below both."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..results import write_figure


def write_frusta_png(scene, path: Path, jumps=()) -> None:
    """Top view (looking along the axis the camera centres spread least along, i.e. an orbit's
    normal) and a side view, in normalised coordinates, with the unit cube and the cascades' aabb.
    ``jumps``: pairs of image names (``process``'s continuity check) drawn as thick magenta lines
    between their camera centres."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c2w = scene.c2w
    centres = c2w[:, :3, 3]
    # "up": the cameras' mean up vector (OpenCV -y) when they agree on one, else the normal of the
    # plane the centres spread least across (an orbit's normal); snapped to the nearest world axis
    # so the unit cube and the aabb appear as squares
    up = -c2w[:, :3, 1].mean(0)
    if np.linalg.norm(up) < 0.5:
        normal = np.linalg.svd(centres - centres.mean(0), full_matrices=False)[2][2]
        up = normal if np.dot(normal, up) >= 0 else -normal
    k = int(np.argmax(np.abs(up)))
    up = np.sign(up[k]) * np.eye(3)[k]
    a1 = np.eye(3)[(k + 1) % 3]
    a2 = np.cross(up, a1)
    views = [("top (looking down)", a1, a2), ("side", a1, up)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 6))
    size = 0.1 * max(np.ptp(centres, axis=0).max(), 1.0)
    names = {nm[len("images/"):] if nm.startswith("images/") else nm: i for i, nm in enumerate(scene.names)}
    jumps = [(names[a], names[b]) for a, b in jumps if a in names and b in names]
    corners = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float)
    for ax, (title, u, v) in zip(axes, views):
        to2d = lambda p: np.stack([p @ u, p @ v], -1)  # noqa: E731
        if scene.points3D is not None:
            p = to2d(scene.points3D.xyz)
            ax.scatter(p[:, 0], p[:, 1], s=1, c=scene.points3D.rgb / 255.0, alpha=0.5)
        for i in range(len(scene)):
            cam = scene.cameras[i]
            pix = np.array([[0, 0], [cam.width, 0], [cam.width, cam.height], [0, cam.height]], float)
            d = scene.cameras[i].unproject(pix)
            d = np.nan_to_num(d / np.maximum(np.abs(d[:, 2:]), 1e-3)) * size
            world = d @ c2w[i, :3, :3].T + c2w[i, :3, 3]
            o = to2d(c2w[i, :3, 3][None])[0]
            w2 = to2d(world)
            colour = "tab:red" if i in set(scene.splits.get("test", [])) else "tab:blue"
            for k in range(4):
                ax.plot([o[0], w2[k, 0]], [o[1], w2[k, 1]], color=colour, lw=0.5)
                ax.plot([w2[k, 0], w2[(k + 1) % 4, 0]], [w2[k, 1], w2[(k + 1) % 4, 1]], color=colour, lw=0.5)
        for a, b in jumps:
            p = to2d(centres[[a, b]])
            ax.plot(p[:, 0], p[:, 1], color="magenta", lw=2.0, zorder=5)
        for box, style in ((corners, "k-"), (scene.aabb[0] + corners * (scene.aabb[1] - scene.aabb[0]), "k:")):
            b = to2d(box)
            for i, j in ((0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)):
                ax.plot(b[[i, j], 0], b[[i, j], 1], style, lw=0.6)
        # frame the cameras, points and unit cube; a huge aabb may extend past the border
        shown = to2d(np.concatenate([centres, corners]))
        lo, hi = shown.min(0), shown.max(0)
        pad = 0.1 * (hi - lo).max()
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        ax.set_title(title)
        ax.set_aspect("equal")
    fig.suptitle(f"{scene.source}: {len(scene)} images (blue train, red test), unit cube solid, "
                 f"{scene.n_cascades} cascades dotted"
                 + (f"; {len(jumps)} trajectory jump(s) magenta" if len(jumps) else ""), fontsize=9)
    write_figure(Path(path), fig, dpi=110)
