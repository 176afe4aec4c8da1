"""Open an exported GLB in a real glTF viewer and keep a screenshot: viser's web client (three.js'
GLTFLoader, served from the installed viser package; nothing is downloaded) in the headless Chromium the
viewer test uses.

    python scripts/glb_in_browser.py runs/lego/lego.glb --out lego_glb.png [--distance 3.5]

The camera looks at the mesh's bounding-box centre from ``--distance`` bounding-box radii, from above and to
the side, or from ``--eye`` at ``--target`` with ``--up`` and a vertical ``--fov`` (the file's coordinates: put it
where a training camera was, see docs/export.md); the GLB is loaded as the file's bytes (its embedded PNG
texture included).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


BARE_JS = """(() => {
  const cs = [...document.querySelectorAll('canvas')];
  const c = cs.sort((a, b) => b.width * b.height - a.width * a.height)[0];
  if (!c) return 0;
  let n = 0;
  document.querySelectorAll('body *').forEach(e => {
    if (e !== c && !e.contains(c)) { e.style.visibility = 'hidden'; n++; }
  });
  return n;
})()"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("glb")
    ap.add_argument("--out", required=True, help="screenshot PNG")
    ap.add_argument("--distance", type=float, default=2.2, help="camera distance in bounding-box radii")
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--height", type=int, default=700)
    ap.add_argument("--wait", type=float, default=8.0, help="seconds to let the page load and draw")
    vec = lambda t: np.array([float(x) for x in t.split(",")], np.float64)  # noqa: E731
    ap.add_argument("--eye", type=vec, default=None, help="camera position x,y,z (the file's coordinates)")
    ap.add_argument("--target", type=vec, default=None, help="point looked at (default: the bounding-box centre)")
    ap.add_argument("--up", type=vec, default=None, help="camera up direction (default: the file's up axis)")
    ap.add_argument("--fov", type=float, default=None, help="vertical field of view in degrees")
    ap.add_argument("--bare", action="store_true",
                    help="hide the viewer's panels and notices: only the 3D view (for pictures beside a render)")
    args = ap.parse_args()

    import trimesh
    import viser

    from nerf_app.viewer.headless import Chromium, find_chromium

    exe, why = find_chromium()
    if exe is None:
        print(f"no browser: {why}", file=sys.stderr)
        return 1
    data = Path(args.glb).read_bytes()
    scene = trimesh.load(args.glb)
    lo, hi = scene.bounds
    centre = (lo + hi) / 2
    radius = float(np.linalg.norm(hi - lo)) / 2
    server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)   # the OS picks a free port
    port = int(server.get_port())
    # GLBs written with --blender are y-up; the capture's own (default) axes are z-up for Blender/instant-ngp
    # captures (the file says which: nerf_app_axes)
    z_up = str(scene.metadata.get("nerf_app_axes", "capture")) != "blender"
    server.scene.set_up_direction("+z" if z_up else "+y")
    server.scene.add_glb("/mesh", data)
    server.scene.add_light_ambient("/ambient", intensity=1.0)
    server.scene.add_light_directional("/sun", intensity=1.5, wxyz=(0.92, -0.38, 0.0, 0.0))
    up = np.array([0.0, 0.0, 1.0]) if z_up else np.array([0.0, 1.0, 0.0])
    side = np.array([0.75, -0.55, 0.0]) if z_up else np.array([0.75, 0.0, 0.55])
    view = side + 0.6 * up
    eye = centre + radius * args.distance * view / np.linalg.norm(view)
    if args.target is not None:
        centre = args.target
    if args.up is not None:
        up = args.up / np.linalg.norm(args.up)
    if args.eye is not None:
        eye = args.eye

    @server.on_client_connect
    def _(client) -> None:
        client.camera.position = tuple(eye)
        client.camera.look_at = tuple(centre)
        client.camera.up_direction = tuple(up)
        if args.fov:
            client.camera.fov = float(np.radians(args.fov))

    try:
        with Chromium(width=args.width, height=args.height, exe=exe) as page:
            page.open(f"http://127.0.0.1:{port}")
            time.sleep(args.wait)
            if args.bare:   # everything but the largest canvas and the elements that hold it
                page.evaluate(BARE_JS)
                time.sleep(0.5)
            img = page.screenshot(args.out)
    finally:
        server.stop()
    print(f"{args.out}: {img.shape[1]}x{img.shape[0]}, pixel std {img.std():.1f}, "
          f"mesh {len(scene.triangles) if hasattr(scene, 'triangles') else '?'} triangles")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
