"""Property-based fuzzing of every reader: whatever the bytes, load_scene raises only DatasetError.

Each format gets at least 2,000 generated malformed inputs (truncations, bit flips, overwritten
fields, wrong counts, wrong types, huge numbers, NaN, escaping paths) built from a tiny valid scene.
Each load runs in a child process confined by the kernel to the scene folder and the installation
(fuzz_confine.py): an open outside is refused and counted whatever library makes it, a load that runs
past its time is killed, and a traceback printed anywhere counts.
"""
import io
import json
import random
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerf_app.data import load_scene

from fuzz_confine import traceback_in
from fuzz_support import Tally, cases, judge, runner

# 2,000 generated inputs per format under NERF_APP_FUZZ_FULL=1; a fast subset in the default run.
EXAMPLES = cases(150, 2000)
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=True,
                    suppress_health_check=list(HealthCheck))

TALLY = Tally()
LOAD_SECONDS = 10.0  # a load is killed after this (a hang on an absurd count)


# ---------------------------------------------------------------- a tiny valid scene on disk


def _make_scene_dir() -> Path:
    import cv2

    base = Path(tempfile.mkdtemp(prefix="nerf_app_fuzz_"))
    (base / "secret.png").write_bytes(b"outside the scene: must never be opened")
    scene = base / "scene"
    (scene / "images").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(scene / "images" / name), np.full((3, 4, 3), 100, np.uint8))
        cv2.imwrite(str(scene / name), np.full((3, 4, 3), 100, np.uint8))
    (scene / "images" / "evil.png").symlink_to(base / "secret.png")
    return scene


NAMES = ["a.png", "b.png", "c.png", "../secret.png", "../../secret.png", "/etc/passwd", "evil.png", "images/../a.png",
         "C:\\a.png", "", "a.png\x00x", "missing.png", "ä.png", "./a.png"]
FLOAT_TOKENS = ["nan", "inf", "-inf", "1e400", "-1e308", "0", "-0", "1", "-1", "2.5", "1e-320", "x", "", "0x10"]
INT_TOKENS = ["-1", "0", "1", "2", "3", "2147483648", "18446744073709551615", "99999999999999999999999", "1.5", "a"]


def _cameras_bin(cams):
    out = struct.pack("<Q", len(cams))
    for cid, model, w, h, params in cams:
        out += struct.pack("<iiQQ", cid, model, w, h) + struct.pack(f"<{len(params)}d", *params)
    return out


def _images_bin(images):
    out = struct.pack("<Q", len(images))
    for iid, q, t, cid, name, obs in images:
        out += struct.pack("<i7di", iid, *q, *t, cid) + name.encode("utf-8", "surrogatepass") + b"\x00"
        out += struct.pack("<Q", len(obs)) + b"".join(struct.pack("<ddq", *o) for o in obs)
    return out


def _points_bin(points):
    out = struct.pack("<Q", len(points))
    for pid, xyz, rgb, err, track in points:
        out += struct.pack("<Q3d3Bd", pid, *xyz, *rgb, err) + struct.pack("<Q", len(track))
        out += b"".join(struct.pack("<ii", *t) for t in track)
    return out


BASE_CAMS = [(1, 1, 4, 3, [5.0, 5.0, 2.0, 1.5]), (2, 2, 4, 3, [5.0, 2.0, 1.5, -0.1])]
BASE_IMAGES = [
    (1, [1, 0, 0, 0], [0, 0, 3], 1, "a.png", [(1.0, 1.0, 10), (2.0, 2.0, 11)]),
    (2, [0.9238795, 0, 0.3826834, 0], [0, 0, 3], 2, "b.png", [(1.5, 1.0, 10), (3.0, 2.0, -1)]),
    (3, [0.7071068, 0, 0.7071068, 0], [0.1, 0, 3], 1, "c.png", [(2.0, 1.0, 11)]),
]
BASE_POINTS = [(10, [0.1, 0.0, 0.2], [1, 2, 3], 0.5, [(1, 0), (2, 0)]), (11, [0.0, 0.1, -0.1], [4, 5, 6], 0.3, [(1, 1), (3, 0)])]


# Hypothesis picks the kind of damage and a seed; the payload comes from random.Random(seed). Drawing
# every byte through hypothesis costs ~10 ms an example, which 8,000 examples cannot afford in CI.
SEEDS = st.integers(0, 2**32 - 1)
SPECIAL_FLOATS = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, 1e-12]


def _float(rng: random.Random) -> float:
    return rng.choice(SPECIAL_FLOATS) if rng.random() < 0.6 else rng.uniform(-1e3, 1e3)


def _mutate_bytes(rng: random.Random, data: bytes, max_ops: int = 3) -> bytes:
    """0-3 raw mutations: truncate, flip bits, overwrite with random/huge/NaN fields, insert, delete."""
    data = bytearray(data)
    for _ in range(rng.randint(0, max_ops)):
        kind = rng.choice(["truncate", "flip", "overwrite", "insert", "delete", "u64", "f64", "u32"])
        pos = rng.randint(0, max(0, len(data) - 1))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip":
            if data:
                data[pos] ^= 1 << rng.randint(0, 7)
        elif kind == "overwrite":
            data[pos:pos + 8] = rng.randbytes(rng.randint(1, 8))
        elif kind == "insert":
            data[pos:pos] = rng.randbytes(rng.randint(1, 16))
        elif kind == "delete":
            del data[pos:pos + rng.randint(1, 16)]
        elif kind == "u64":
            data[pos:pos + 8] = struct.pack("<Q", rng.choice([0, 1, 2**31, 2**32 + 1, 2**63, 2**64 - 1]))
        elif kind == "u32":
            data[pos:pos + 4] = struct.pack("<I", rng.choice([0, 1, 11, 12, 2**31, 2**32 - 1]))
        else:
            data[pos:pos + 8] = struct.pack("<d", rng.choice([float("nan"), float("inf"), -1e308, 0.0]))
    return bytes(data)


def _check_load(path: Path, scene: Path, family: str = "scene", **kw):
    """Load ``path`` in a confined child: either a DatasetError of one line naming the file, or a scene
    that passes every invariant check (finite poses, orthonormal rotations, positive focal lengths, images
    inside the folder, finite rays). Nothing outside ``scene`` may be opened; no load may hang."""
    report = runner("load").run("fuzz_cases:load_case", [scene], {"path": str(path), "kwargs": kw, "decode": False},
                          timeout=LOAD_SECONDS)
    res = judge(report, TALLY, family, f"{family}: {sorted(kw.items())}")
    TALLY.case(family, res["outcome"] if res else "tracebacks")
    if res and res.get("bad_error"):
        TALLY.fail(family, "tracebacks", res["bad_error"])
    if res and res.get("bad_success"):
        TALLY.fail(family, "bad_success", res["bad_success"])
    # this case's own failures (hypothesis shrinks on them, so nothing of an earlier case may count)
    problems = (["hang"] if report["hang"] else []) + ([f"traceback: {traceback_in(report)}"]
                                                       if not report["hang"] and traceback_in(report) else []) \
        + ([f"outside: {report['outside']}"] if report["outside"] else [])
    assert res is not None and not problems and not res.get("bad_error") and not res.get("bad_success"), \
        f"{problems} {res} {report['stderr'][-1500:]}"


COUNTS = {}


def _count(name):
    COUNTS[name] = COUNTS.get(name, 0) + 1


@pytest.fixture(scope="module")
def scene_dir():
    return _make_scene_dir()


# ---------------------------------------------------------------- COLMAP binary


@st.composite
def colmap_binary(draw):
    rng = random.Random(draw(SEEDS))
    cams = [list(c) for c in BASE_CAMS]
    images = [list(i) for i in BASE_IMAGES]
    points = [list(p) for p in BASE_POINTS]
    for _ in range(draw(st.integers(0, 2))):  # structural changes that still pack
        what = draw(st.sampled_from(["model", "size", "param", "name", "camref", "pose", "obs", "track", "dup"]))
        if what == "model":
            rng.choice(cams)[1] = rng.randint(-2, 12)
        elif what == "size":
            rng.choice(cams)[2] = rng.choice([0, 1, 4, 2**31, 2**64 - 1])
        elif what == "param":
            c = rng.choice(cams)
            c[4] = list(c[4])
            c[4][rng.randrange(len(c[4]))] = _float(rng)
        elif what == "name":
            rng.choice(images)[4] = rng.choice(NAMES)
        elif what == "camref":
            rng.choice(images)[3] = rng.randint(-1, 4)
        elif what == "pose":
            im = rng.choice(images)
            im[1] = [_float(rng) for _ in range(4)] if rng.random() < 0.5 else im[1]
            im[2] = [_float(rng) for _ in range(3)]
        elif what == "obs":
            rng.choice(images)[5] = [(_float(rng), _float(rng), rng.randint(-2, 12))]
        elif what == "track":
            rng.choice(points)[4] = [(rng.randint(-1, 5), rng.randint(-1, 3))]
        else:
            images.append(list(images[0]))
    files = {"cameras.bin": _cameras_bin(cams), "images.bin": _images_bin(images), "points3D.bin": _points_bin(points)}
    target = draw(st.sampled_from(sorted(files)))
    files[target] = _mutate_bytes(rng, files[target])
    return files


@given(files=colmap_binary())
@SETTINGS
def _fuzz_colmap_binary(scene_dir, files):
    model = scene_dir / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (model / name).write_bytes(data)
    _count("colmap-binary")
    _check_load(scene_dir, scene_dir, "colmap-binary", format="colmap")


def test_fuzz_colmap_binary(scene_dir):
    _fuzz_colmap_binary(scene_dir)
    assert COUNTS["colmap-binary"] >= EXAMPLES


# ---------------------------------------------------------------- COLMAP text

BASE_TEXT = {
    "cameras.txt": "# cameras\n1 PINHOLE 4 3 5 5 2 1.5\n2 SIMPLE_RADIAL 4 3 5 2 1.5 -0.1\n",
    "images.txt": ("# images\n1 1 0 0 0 0 0 3 1 a.png\n1 1 10 2 2 11\n"
                   "2 0.9238795 0 0.3826834 0 0 0 3 2 b.png\n1.5 1 10 3 2 -1\n"
                   "3 0.7071068 0 0.7071068 0 0.1 0 3 1 c.png\n2 1 11\n"),
    "points3D.txt": "# points\n10 0.1 0 0.2 1 2 3 0.5 1 0 2 0\n11 0 0.1 -0.1 4 5 6 0.3 1 1 3 0\n",
}


TEXT_VOCAB = FLOAT_TOKENS + INT_TOKENS + NAMES + ["PINHOLE", "OPENCV", "FOV", "THIN_PRISM_FISHEYE", "BOGUS", "#"]


@st.composite
def colmap_text(draw):
    rng = random.Random(draw(SEEDS))
    files = dict(BASE_TEXT)
    target = draw(st.sampled_from(sorted(files)))
    lines = [line.split(" ") for line in files[target].split("\n")]
    for _ in range(draw(st.integers(1, 3))):
        what = draw(st.sampled_from(["token", "drop_token", "add_token", "drop_line", "dup_line", "swap_lines"]))
        i = rng.randrange(len(lines))
        line = lines[i]
        if what == "token" and line:
            tok = rng.choice(TEXT_VOCAB) if rng.random() < 0.8 else rng.randbytes(3).decode("latin-1")
            line[rng.randrange(len(line))] = tok
        elif what == "drop_token" and line:
            del line[rng.randrange(len(line))]
        elif what == "add_token":
            line.insert(rng.randint(0, len(line)), rng.choice(FLOAT_TOKENS + INT_TOKENS))
        elif what == "drop_line":
            del lines[i]
            if not lines:
                lines = [[]]
        elif what == "dup_line":
            lines.insert(i, list(line))
        else:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
    text = "\n".join(" ".join(line) for line in lines).encode("utf-8", "surrogatepass")
    files[target] = _mutate_bytes(rng, text) if draw(st.booleans()) else text
    return files


@given(files=colmap_text())
@SETTINGS
def _fuzz_colmap_text(scene_dir, files):
    model = scene_dir / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (model / name).unlink(missing_ok=True)
    for name, data in files.items():
        (model / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    _count("colmap-text")
    _check_load(scene_dir, scene_dir, "colmap-text", format="colmap")


def test_fuzz_colmap_text(scene_dir):
    _fuzz_colmap_text(scene_dir)
    assert COUNTS["colmap-text"] >= EXAMPLES


# ---------------------------------------------------------------- transforms.json

def _base_transforms():
    eye = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]
    return {"fl_x": 5.0, "fl_y": 5.0, "cx": 2.0, "cy": 1.5, "w": 4, "h": 3, "k1": 0.01, "aabb_scale": 4,
            "frames": [{"file_path": "a.png", "transform_matrix": eye},
                       {"file_path": "images/b", "transform_matrix": eye, "fl_x": 6.0, "camera_model": "OPENCV"},
                       {"file_path": "c.png", "transform_matrix": eye}]}


KEYS = ["fl_x", "fl_y", "cx", "cy", "w", "h", "k1", "k2", "k3", "k4", "p1", "p2", "camera_angle_x",
        "camera_angle_y", "camera_model", "is_fisheye", "frames", "file_path", "transform_matrix", "mask_path"]
STRINGS = NAMES + ["OPENCV_FISHEYE", "EQUIRECTANGULAR", "PINHOLE", "1", "nan"]


def _json_value(rng: random.Random, depth: int = 0):
    """A random JSON value of any type: wrong types, huge ints, NaN/Infinity, nested junk."""
    kind = rng.choice(["none", "bool", "int", "float", "str", "list", "dict"] if depth < 2 else ["int", "float", "str"])
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 4, 2**31, 2**64, -2**70, 10**400])
    if kind == "float":
        return _float(rng)
    if kind == "str":
        return rng.choice(STRINGS)
    if kind == "list":
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(KEYS): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}


def _is_matrix(m):
    return isinstance(m, list) and len(m) == 4 and all(isinstance(r, list) and len(r) == 4 for r in m)


@st.composite
def transforms_json(draw):
    rng = random.Random(draw(SEEDS))
    doc = _base_transforms()
    for _ in range(draw(st.integers(1, 3))):
        frames = doc.get("frames")
        use_frame = isinstance(frames, list) and frames and rng.random() < 0.6
        holder = rng.choice(frames) if use_frame else doc
        if not isinstance(holder, dict):
            continue
        what = draw(st.sampled_from(["set", "delete", "matrix_entry", "frames"]))
        key = rng.choice(KEYS)
        if what == "set":
            holder[key] = _json_value(rng)
        elif what == "delete":
            holder.pop(key, None)
        elif what == "matrix_entry" and _is_matrix(holder.get("transform_matrix")):
            m = [list(r) for r in holder["transform_matrix"]]
            m[rng.randrange(4)][rng.randrange(4)] = _float(rng) if rng.random() < 0.7 else _json_value(rng)
            holder["transform_matrix"] = m
        elif what == "frames":
            doc["frames"] = rng.choice([_json_value(rng), [], frames * 3 if isinstance(frames, list) else frames])
    text = json.dumps(doc).encode()  # NaN/Infinity are written as such: Python's json reads them back
    return _mutate_bytes(rng, text) if draw(st.integers(0, 3)) == 0 else text


@given(data=transforms_json())
@SETTINGS
def _fuzz_transforms(scene_dir, data):
    (scene_dir / "transforms.json").write_bytes(data)
    _count("transforms")
    _check_load(scene_dir, scene_dir, "transforms", format="transforms")


def test_fuzz_transforms(scene_dir):
    try:
        _fuzz_transforms(scene_dir)
    finally:
        (scene_dir / "transforms.json").unlink(missing_ok=True)
    assert COUNTS["transforms"] >= EXAMPLES


# ---------------------------------------------------------------- LLFF poses_bounds.npy

def _base_llff():
    rows = []
    for angle in (0.0, 0.3, 0.6):
        c, s = np.cos(angle), np.sin(angle)
        right, down, fwd = np.array([c, 0, -s]), np.array([0, 1.0, 0]), np.array([s, 0, c])
        m = np.stack([down, right, -fwd, np.array([0, 0, -3.0]), np.array([3.0, 4.0, 5.0])], 1)
        rows.append(np.concatenate([m.reshape(-1), [1.0, 10.0]]))
    return np.array(rows)


@st.composite
def llff_npy(draw):
    rng = random.Random(draw(SEEDS))
    arr = _base_llff()
    what = draw(st.sampled_from(["values", "shape", "dtype", "raw", "values"]))
    if what == "values":
        for _ in range(rng.randint(1, 4)):
            arr[rng.randrange(3), rng.randrange(17)] = _float(rng)
    elif what == "shape":
        arr = np.resize(arr, [rng.randint(0, 20) for _ in range(rng.randint(0, 3))])
    elif what == "dtype":
        arr = arr.astype(rng.choice(["float32", "int64", "complex128", "U3", "bool", "object"]))
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    data = buf.getvalue()
    return _mutate_bytes(rng, data) if what == "raw" or rng.random() < 0.2 else data


@given(data=llff_npy())
@SETTINGS
def _fuzz_llff(scene_dir, data):
    (scene_dir / "poses_bounds.npy").write_bytes(data)
    _count("llff")
    _check_load(scene_dir, scene_dir, "llff", format="llff")


def test_fuzz_llff(scene_dir, tmp_path):
    # LLFF needs exactly as many images as poses: a scene folder of its own with three images
    import shutil
    llff_scene = tmp_path / "scene"
    (llff_scene / "images").mkdir(parents=True)
    for n in ("a.png", "b.png", "c.png"):
        shutil.copy(scene_dir / "images" / n, llff_scene / "images" / n)
    (tmp_path / "secret.png").write_bytes(b"outside")
    _fuzz_llff(llff_scene)
    assert COUNTS["llff"] >= EXAMPLES


def test_base_scenes_are_valid(scene_dir, tmp_path):
    """The fuzzers start from inputs that load, so mutations explore past the first check."""
    model = scene_dir / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        (model / name).unlink(missing_ok=True)
    (model / "cameras.bin").write_bytes(_cameras_bin(BASE_CAMS))
    (model / "images.bin").write_bytes(_images_bin(BASE_IMAGES))
    (model / "points3D.bin").write_bytes(_points_bin(BASE_POINTS))
    s = load_scene(scene_dir, format="colmap")
    assert len(s) == 3 and len(s.points3D) == 2
    for name in ("cameras.bin", "images.bin", "points3D.bin"):
        (model / name).unlink()
    for name, text in BASE_TEXT.items():
        (model / name).write_text(text)
    assert len(load_scene(scene_dir, format="colmap")) == 3
    (scene_dir / "transforms.json").write_text(json.dumps(_base_transforms()))
    try:
        assert len(load_scene(scene_dir, format="transforms")) == 3
    finally:
        (scene_dir / "transforms.json").unlink()
    (tmp_path / "images").mkdir()
    for n in ("a.png", "b.png", "c.png"):
        (tmp_path / "images" / n).write_bytes((scene_dir / "images" / n).read_bytes())
    np.save(tmp_path / "poses_bounds.npy", _base_llff())
    assert len(load_scene(tmp_path, format="llff")) == 3


def test_zz_emit_figures():
    """The figures of this module as JSON lines (shown with -s; appended to $NERF_APP_FUZZ_REPORT)."""
    TALLY.emit()
    assert TALLY.bad() == 0, TALLY.report()
