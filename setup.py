"""Build nerf_app and its compiled extension ``nerf_app._C``.

* C++ CPU kernels (OpenMP via at::parallel_for) are always built.
* CUDA kernels join when the installed torch has CUDA and nvcc is found (or NERF_APP_FORCE_CUDA=1).
  Architectures come from TORCH_CUDA_ARCH_LIST, else the local GPU, else 8.0;8.6;8.9;9.0.
* NERF_APP_NO_EXTENSION=1 installs the pure-PyTorch package with no compiled code at all.
* NERF_APP_REQUIRE_CUDA=1 makes a build without CUDA kernels an error instead of a CPU-only build (a GPU
  machine must never pass its checks on a silently CPU-only extension; the tests honour it too).

Install against the torch already present: ``pip install --no-build-isolation -e .``
(an isolated build would download a different torch).
"""
import glob
import os

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "true", "yes", "on")


def extensions():
    if _flag("NERF_APP_NO_EXTENSION"):
        print("nerf_app: NERF_APP_NO_EXTENSION=1, building no extension (torch backend only)")
        return [], {}
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    with_cuda = _flag("NERF_APP_FORCE_CUDA") or (torch.version.cuda is not None and CUDA_HOME is not None)
    if _flag("NERF_APP_NO_CUDA"):
        with_cuda = False
    if _flag("NERF_APP_REQUIRE_CUDA") and not with_cuda:
        why = ("NERF_APP_NO_CUDA is set" if _flag("NERF_APP_NO_CUDA") else
               f"torch {torch.__version__} has no CUDA" if torch.version.cuda is None else
               "no CUDA toolkit (nvcc) was found: set CUDA_HOME")
        raise SystemExit(f"nerf_app: NERF_APP_REQUIRE_CUDA=1 but the CUDA kernels cannot be built: {why}")
    rel = lambda pattern: sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))
    sources = rel("csrc/*.cpp") + rel("csrc/cpu/*.cpp")
    include_dirs = [os.path.join(ROOT, "csrc", "include")]
    cxx = ["-O3", "-g0", "-fopenmp", "-ffp-contract=off"]  # torch picks the C++ standard (C++20 for 2.13)
    link = ["-fopenmp"]  # without it in the link step OpenMP silently runs on one thread
    if not _flag("NERF_APP_PORTABLE"):
        # The extension is built on the machine that runs it: let the CPU kernels use its vector units
        # (AVX2 on x86). NERF_APP_PORTABLE=1 builds for the baseline ISA instead (e.g. shared wheels).
        cxx.append("-march=native")
    if with_cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
            if torch.cuda.is_available():
                major, minor = torch.cuda.get_device_capability()
                os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
            else:
                os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;8.6;8.9;9.0"
        sources += rel("csrc/cuda/*.cu") + rel("csrc/cuda/*.cpp")
        nvcc = ["-O3", "--expt-relaxed-constexpr",
                # torch disables fp16 operators by default; the fp16 hash tables need them
                "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
                "-U__CUDA_NO_HALF2_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__"]
        ext = CUDAExtension("nerf_app._C", sources, include_dirs=include_dirs,
                            define_macros=[("NERF_APP_WITH_CUDA", "1")],
                            extra_compile_args={"cxx": cxx, "nvcc": nvcc}, extra_link_args=link)
        print(f"nerf_app: building C++ and CUDA kernels for {os.environ['TORCH_CUDA_ARCH_LIST']}")
    else:
        ext = CppExtension("nerf_app._C", sources, include_dirs=include_dirs,
                           extra_compile_args={"cxx": cxx}, extra_link_args=link)
        print("nerf_app: building C++ CPU kernels (no CUDA torch or no nvcc: CUDA kernels skipped)")
    return [ext], {"build_ext": BuildExtension.with_options(use_ninja=True)}


ext_modules, cmdclass = extensions()

setup(
    name="nerf_app",
    version="0.1.0",
    description="Neural radiance fields and implicit neural representations with C++/CUDA kernels",
    packages=find_packages(include=["nerf_app", "nerf_app.*"]) + ["nerf_app.presets"],
    # configs/ (the YAML presets) travels with the package as nerf_app/presets, so a regular
    # (non-editable) install finds them; nerf_app/train/config.py looks there first.
    package_dir={"nerf_app.presets": "configs"},
    package_data={"nerf_app.presets": ["*.yaml"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.0",
        "numpy",
        "tqdm",
        "pyyaml",
        "imageio>=2.28",
        "imageio-ffmpeg",
        "opencv-python-headless",
        "trimesh",
        "scikit-image",
        "scipy",
        "matplotlib",
        "viser>=1.0",  # the live web viewer (nerf-app view / train --viewer); its wheel ships the web client
        "pillow",  # contact sheets and PNG bytes (imported directly, not only through imageio)
        "libigl>=2.5",  # sdf/occupancy: exact point-mesh distance (AABB) and fast generalised winding numbers
        "pycolmap>=4.0",  # `nerf-app process`: structure from motion on the CPU (SIFT, matching, mapping)
        "xatlas>=0.0.9",  # `export --texture`: UV unwrapping and chart packing
        "fast-simplification>=0.1.7",  # `export --texture`: quadric decimation to a face budget
        "embreex",  # `eval --mesh`: Embree ray casting of the exported mesh (trimesh falls back without it)
        "OpenEXR>=3.2",  # EXR images (inr): the reference library reads every compression and tiled files
    ],
    extras_require={"test": ["pytest", "hypothesis", "plyfile"]},
    entry_points={"console_scripts": ["nerf-app=nerf_app.cli:main"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
