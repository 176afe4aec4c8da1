"""The package as a user installs it: a regular (non-editable) install finds its presets, files are
written with ordinary permissions, the import graph has no cycles, every third-party import is declared,
and the `nerf-app` entry point works."""
from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "nerf_app"
SHARED = ROOT.parent / "shared" / "data"


# ----------------------------------------------------------------------------------------------
# a regular install, outside the checkout

_RUN_INSTALLED = r"""
import sys
# An editable install of the checkout registers a meta-path finder that would shadow the copy under
# test; drop it so `import nerf_app` resolves through sys.path to the installed copy only.
sys.meta_path = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                 and "editable" not in getattr(f, "__name__", "").lower()]
sys.path.insert(0, sys.argv[1])
import json, nerf_app
from nerf_app.train.config import preset_dir
from nerf_app.cli import main
rc = main(["train", sys.argv[2], "--out", sys.argv[3], "--max-time", "2"])
print(json.dumps({"file": nerf_app.__file__, "presets": str(preset_dir()), "rc": rc}))
"""


@pytest.mark.slow
def test_non_editable_install_carries_presets(tmp_path):
    """`pip install .` (not -e) into a fresh folder: the installed package, run from elsewhere, reads its
    YAML presets from its own package data (the image preset's values end up in the run's config)."""
    target = tmp_path / "site"
    env = dict(os.environ, NERF_APP_NO_EXTENSION="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(ROOT)], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (target / "nerf_app" / "presets" / "nerf.yaml").is_file()
    assert (target / "nerf_app" / "presets" / "image.yaml").is_file()
    out = tmp_path / "run"
    work = tmp_path / "elsewhere"
    work.mkdir()
    r = subprocess.run([sys.executable, "-c", _RUN_INSTALLED, str(target), str(SHARED / "image" / "albert.png"),
                        str(out)], cwd=work, env=dict(os.environ, NERF_APP_BACKEND="torch"),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["rc"] == 0
    assert info["file"].startswith(str(target)), info
    assert info["presets"].startswith(str(target)), info
    import yaml
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    preset = yaml.safe_load((ROOT / "configs" / "image.yaml").read_text())
    # every value the preset sets reached the run (not the dataclass defaults)
    for section, values in preset.items():
        if isinstance(values, dict):
            for key, value in values.items():
                if section == "train" and key in ("max_time", "max_steps"):
                    continue  # --max-time overrides these
                assert cfg[section][key] == value, (section, key)


def test_missing_presets_is_a_clear_error(monkeypatch, tmp_path):
    from nerf_app.errors import ConfigError
    from nerf_app.train import config as C
    monkeypatch.setattr(C, "_PACKAGE_PRESETS", tmp_path / "a")
    monkeypatch.setattr(C, "_CHECKOUT_PRESETS", tmp_path / "b")
    with pytest.raises(ConfigError, match="presets are missing"):
        C.load_config(C.BaseConfig, "nerf")


# ----------------------------------------------------------------------------------------------
# permissions of written files


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_results_have_normal_permissions(tmp_path, umask):
    """Files come out as ``open(..., "w")`` would make them (0666 & ~umask), not mkstemp's 0600."""
    import numpy as np

    from nerf_app.results import atomic_write, write_json, write_png
    from nerf_app.train.run import RunDir

    old = os.umask(umask)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        write_png(tmp_path / "i.png", np.zeros((4, 4, 3), np.float32))
        atomic_write(tmp_path / "t.txt", lambda p: Path(p).write_text("x"))
        RunDir(tmp_path / "run").create().save_checkpoint({"model": {}, "step": 1})
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    for p in [tmp_path / "m.json", tmp_path / "i.png", tmp_path / "t.txt", tmp_path / "run" / "checkpoints" / "last.pt"]:
        assert (p.stat().st_mode & 0o777) == want, (p, oct(p.stat().st_mode & 0o777), oct(want))
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    from nerf_app.errors import NerfAppError
    from nerf_app.results import atomic_write, write_json
    write_json(tmp_path / "m.json", {"good": True})

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError(28, "No space left on device")
    with pytest.raises(NerfAppError, match="no space left on device"):
        atomic_write(tmp_path / "m.json", broken)
    assert json.loads((tmp_path / "m.json").read_text()) == {"good": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


# ----------------------------------------------------------------------------------------------
# the import graph


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path):
    """Every nerf_app module ``path`` imports, at any nesting level (imports inside functions too)."""
    mod = _module_name(path)
    is_pkg = path.name == "__init__.py"
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("nerf_app"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("nerf_app"):
                continue
            out.add(target)
            for a in node.names:  # `from . import colmap` imports a module
                out.add(f"{target}.{a.name}")
    return out


def _graph():
    modules = {_module_name(p): p for p in PKG.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in _imports(path) if m in modules and m != name}
    return graph


def _cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_graph_has_no_cycles():
    """No module imports (directly or through others, at module level or inside a function) itself.
    Package ``__init__`` files re-exporting their children are not cycles, so edges from a package to its
    own submodules are left out."""
    graph = _graph()
    for name in graph:
        graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    assert _cycles(graph) == []


def test_only_the_cli_imports_the_verbs():
    """commands/ is the top layer: the verbs import the library, never the other way round (``process``
    used to import its frusta plot from ``commands.inspect``); only ``cli`` and the verbs import it."""
    graph = _graph()
    upward = sorted((name, m) for name, deps in graph.items() for m in deps
                    if m.startswith("nerf_app.commands") and not (name == "nerf_app.cli" or
                                                                 name.startswith("nerf_app.commands")))
    assert upward == []
    assert any(m.startswith("nerf_app.commands") for m in graph["nerf_app.cli"])  # the check sees imports


# ----------------------------------------------------------------------------------------------
# declared dependencies and the entry point

# import name -> distribution name, where they differ
_DIST = {"PIL": "pillow", "cv2": "opencv-python-headless", "igl": "libigl", "skimage": "scikit-image",
         "yaml": "pyyaml", "imageio_ffmpeg": "imageio-ffmpeg", "fast_simplification": "fast-simplification"}
# imported only behind a check that reports their absence in one line (optional extras)
_OPTIONAL = {"lpips", "nerfacc", "embreex", "websockets", "websocket", "playwright", "selenium"}


def _third_party_imports():
    stdlib = set(sys.stdlib_module_names)
    names = set()
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in stdlib and n != "nerf_app" and n != "__future__"}


def test_every_import_is_declared():
    """Each third-party module the package imports is in install_requires (importlib.metadata of the
    installed package), so a fresh `pip install` brings it - not just another package's dependency."""
    from importlib.metadata import requires
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].strip().lower().replace("_", "-")
                for r in requires("nerf_app") or [] if "extra ==" not in r}
    setup_text = (ROOT / "setup.py").read_text()
    missing = []
    for name in sorted(_third_party_imports() - _OPTIONAL):
        dist = _DIST.get(name, name).lower().replace("_", "-")
        if dist not in declared and f'"{dist}' not in setup_text.lower():
            missing.append(f"{name} (distribution {dist})")
    assert not missing, f"imported but not in install_requires: {missing}"


def test_entry_point_runs():
    # the script of the interpreter running the tests first (a venv's bin/ need not be on PATH), else PATH's
    here = Path(sys.executable).parent / "nerf-app"
    exe = str(here) if here.is_file() else shutil.which("nerf-app")
    assert exe, "the nerf-app console script is not installed (pip install -e . makes it)"
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for verb in ("train", "eval", "render", "export", "inspect", "demo"):
        assert verb in r.stdout
