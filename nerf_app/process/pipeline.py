"""The ``process`` pipeline: photos or a video -> a posed capture (``images/`` + COLMAP ``sparse/0``) that every
other verb reads as it is (the verb is ``nerf-app process INPUT --out DIR``; :mod:`nerf_app.process` re-exports
:func:`process` and :class:`ProcessOptions`).

The whole output is built in a hidden sibling folder of DIR and renamed into place only when it is
complete (model written, re-read by our own loader, report and frusta PNG written), so a failed or
interrupted run never leaves DIR looking complete, and an existing DIR is replaced (``overwrite``)
only by a finished one.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..errors import ConfigError, DatasetError, reraise_if_bug
from .continuity import summary_lines as continuity_lines
from .frames import IMAGE_SUFFIXES, copy_images, list_images, select_video_frames
from .sfm import (EXHAUSTIVE_MAX, LONG_VIDEO_FRAMES, MAPPERS, MATCHERS, SfmOptions, extract, keypoint_counts,
                  long_video_options, make_pairs, map_images, match)

__all__ = ["ProcessOptions", "process", "MATCHERS", "MAPPERS"]

MIN_IMAGES = 3
REPORT_NAME = "process_report.json"
CAMERA_MODES = ("auto", "single", "per-folder", "per-image")
CONTINUITY_MODES = ("auto", "off", "on")
PAIR_CHECK_MODES = ("auto", "on", "off")
FRUSTA_NAME = "process_frusta.png"


@dataclass
class ProcessOptions:
    frames: int = 100  # video: how many frames to keep
    matcher: str = "auto"  # auto | exhaustive | sequential
    camera_model: Optional[str] = None  # None: SIMPLE_RADIAL (photos and video)
    camera_mode: str = "auto"  # auto | single | per-folder | per-image (auto: single for video, per-folder)
    max_size: int = 1280  # features are extracted on copies at most this large
    max_features: int = 4096
    masks: Optional[Path] = None
    threads: Optional[int] = None  # None: the CPUs this process may use
    overwrite: bool = False
    min_registered: float = 0.5  # fail when the largest model registers fewer than this fraction
    # video: auto = one pass, re-mapped with the constraint only if its trajectory jumps without a cut;
    # on = always the constraint (short-range pairs first, long ones verified; process/sequence.py);
    # off = one pass (a fold is only warned about). Photos: auto = off.
    continuity: str = "auto"
    # incremental (COLMAP's mapper) | global (GLOMAP in COLMAP); a re-map of --continuity uses the same one
    mapper: str = "incremental"
    # drop verified pairs whose relative rotation contradicts the triangles of pairs they are in (matched by
    # symmetry or repetition; process/pair_cycles.py) before mapping: auto = photos on, video off (a video has
    # --continuity instead)
    pair_check: str = "auto"
    seed: int = 0
    verbose: bool = False
    progress: bool = True


def _threads(requested: Optional[int]) -> int:
    if requested:
        return max(1, int(requested))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _bar(enabled: bool, total: int, desc: str, unit: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"{desc:>9}", unit=unit, disable=not enabled, dynamic_ncols=True,
                file=sys.stderr, leave=True)


def _check_paths(inp: Path, out: Path, overwrite: bool) -> None:
    if not inp.exists():
        raise DatasetError(inp, "does not exist (expected a folder of JPEG/PNG images or a video file)")
    ri, ro = inp.resolve(), out.resolve()
    if ro == ri or ro in ri.parents:
        raise ConfigError(f"--out {out} would contain the input {inp}; choose an output folder outside it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; choose another folder or pass --overwrite "
                          "(it is replaced only when the new capture is complete)")


def _find_mask(mask_dir: Path, name: str) -> Optional[Path]:
    stem = Path(name).with_suffix("")
    for candidate in (mask_dir / name, mask_dir / (name + ".png"), mask_dir / (str(stem) + ".png")):
        if candidate.is_file():
            return candidate
    return None


def _prepare_masks(mask_dir: Path, infos, colmap_dir: Path, capture_dir: Path) -> None:
    """Binary masks (white >= 128 = keep) for COLMAP (``<name>.png``, 0 = no features there) and for
    the capture (``masks/<name>.png``, read by ``load_scene``)."""
    from PIL import Image

    from ..results import write_png

    if not mask_dir.is_dir():
        raise DatasetError(mask_dir, "--masks is not a folder")
    missing = [i.name for i in infos if _find_mask(mask_dir, i.name) is None]
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise DatasetError(mask_dir, f"no mask for {len(missing)} of {len(infos)} images: {shown} "
                           "(expected <name>, <name>.png or <stem>.png)")
    for info in infos:
        path = _find_mask(mask_dir, info.name)
        try:
            with Image.open(path) as im:
                m = np.asarray(im.convert("L"))
        except Exception as exc:  # noqa: BLE001 - PIL raises assorted errors on a broken file
            reraise_if_bug(exc)   # but not MemoryError, nor a mistake in the call above
            raise DatasetError(path, f"mask does not decode ({type(exc).__name__}: {exc})") from None
        if m.shape != (info.height, info.width):
            raise DatasetError(path, f"mask is {m.shape[1]}x{m.shape[0]} but its image {info.name} is "
                               f"{info.width}x{info.height}")
        binary = np.where(m >= 128, 255, 0).astype(np.uint8)
        if not binary.any():
            raise DatasetError(path, "mask excludes the whole image")
        write_png(colmap_dir / (info.name + ".png"), binary)
        write_png(capture_dir / (info.name + ".png"), binary)


def _camera_groups(infos, mode: str) -> List[List[str]]:
    """Images that share one camera. Images of different sizes never share one."""
    groups: Dict[tuple, List[str]] = {}
    for info in infos:
        if mode == "per-image":
            key = (info.name,)
        elif mode == "single":
            key = (info.width, info.height)
        else:  # auto / per-folder: folder, size and the EXIF camera (make, model, focal length)
            key = info.camera_key
        groups.setdefault(key, []).append(info.name)
    return list(groups.values())


def _list_names(names: List[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def process(inp, out, options: Optional[ProcessOptions] = None) -> dict:
    """Run the whole pipeline; returns the report (also written to ``out/process_report.json``)."""
    import pycolmap

    from ..results import write_json

    opts = options or ProcessOptions()
    inp, out = Path(inp), Path(out)
    if opts.matcher not in MATCHERS:
        raise ConfigError(f"--matcher must be one of {', '.join(MATCHERS)}, not {opts.matcher!r}")
    if opts.frames < MIN_IMAGES:
        raise ConfigError(f"--frames must be at least {MIN_IMAGES}")
    if opts.max_size < 64:
        raise ConfigError("--max-size must be at least 64 pixels")
    if opts.camera_mode not in CAMERA_MODES:
        raise ConfigError(f"--camera-mode must be one of {', '.join(CAMERA_MODES)}, not {opts.camera_mode!r}")
    if opts.mapper not in MAPPERS:
        raise ConfigError(f"--mapper must be one of {', '.join(MAPPERS)}, not {opts.mapper!r}")
    if opts.pair_check not in PAIR_CHECK_MODES:
        raise ConfigError(f"--pair-check must be one of {', '.join(PAIR_CHECK_MODES)}, not {opts.pair_check!r}")
    if opts.continuity not in CONTINUITY_MODES:
        raise ConfigError(f"--continuity must be one of {', '.join(CONTINUITY_MODES)}, not {opts.continuity!r}")
    if not 0 <= opts.min_registered <= 1:
        raise ConfigError("--min-registered must be a fraction in [0, 1]")
    _check_paths(inp, out, opts.overwrite)
    threads = _threads(opts.threads)
    t_start = time.perf_counter()
    timings: Dict[str, float] = {}
    cpu: Dict[str, float] = {}
    c_start = time.process_time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.process-", dir=str(out.parent)))
    work = tmp / ".work"
    work.mkdir()
    report: dict = {"input": str(inp), "out": str(out)}
    try:
        # ---------------------------------------------------------------- images
        t, c = time.perf_counter(), time.process_time()
        images_dir = tmp / "images"
        images_dir.mkdir()
        if inp.is_dir():
            kind = "images"
            names = list_images(inp, exclude=[out, tmp])
            if not names:
                raise DatasetError(inp, f"no images ({'/'.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}) in this folder "
                                   "or its subfolders")
            bar = _bar(opts.progress, len(names), "images", "img")
            try:
                infos, unreadable = copy_images(inp, names, images_dir, progress=bar.update)
            finally:
                bar.close()
            if unreadable and len(infos) < MIN_IMAGES:
                raise DatasetError(inp, f"{len(unreadable)} of {len(names)} images do not decode "
                                   f"({_list_names(sorted(unreadable), 5)})")
            group_list = _camera_groups(infos, opts.camera_mode)
            report["unreadable"] = unreadable
            report["exif_rotated"] = [i.name for i in infos if i.rotated]
            sizes = sorted({(i.width, i.height) for i in infos})
            report["image_sizes"] = [f"{w}x{h}" for w, h in sizes[:10]] + (["..."] if len(sizes) > 10 else [])
        else:
            kind = "video"
            if opts.masks is not None:
                raise ConfigError("--masks needs a folder of images (a video's frame names are chosen by process)")
            holder = {}

            def factory(total):
                holder["bar"] = _bar(opts.progress, total, "decode", "frame")
                return holder["bar"]

            sel = select_video_frames(inp, opts.frames, images_dir, progress_factory=factory)
            from .frames import ImageInfo

            infos = [ImageInfo(n, sel.width, sel.height, ("video",)) for n in sel.names]
            group_list = _camera_groups(infos, "single" if opts.camera_mode == "auto" else opts.camera_mode)
            report["video"] = {"fps": sel.fps, "width": sel.width, "height": sel.height, "rotation": sel.rotation,
                               "frames_decoded": sel.frames_decoded, "frames_in_header": sel.frames_estimated,
                               "frames_kept": len(sel.names), "kept_frame_indices": sel.kept,
                               "sharpness": {"kept_median": float(np.median(sel.scores)),
                                             "all_median": sel.median_score,
                                             "measure": "variance of the Laplacian, longer side 640 px"}}
        report["kind"] = kind
        n = len(infos)
        if n < MIN_IMAGES:
            raise DatasetError(inp, f"only {n} usable image{'s' if n != 1 else ''}; structure from motion needs at "
                               f"least {MIN_IMAGES} (a few dozen overlapping views work best)")
        timings["images"] = time.perf_counter() - t
        cpu["images"] = time.process_time() - c

        # ---------------------------------------------------------------- options
        matcher = opts.matcher
        if matcher == "auto":
            matcher = "sequential" if kind == "video" or n > EXHAUSTIVE_MAX else "exhaustive"
        camera_model = (opts.camera_model or "SIMPLE_RADIAL").upper()
        if camera_model not in pycolmap.CameraModelId.__members__:
            raise ConfigError(f"--camera-model {opts.camera_model!r} is not a COLMAP camera model "
                              f"({', '.join(m for m in pycolmap.CameraModelId.__members__ if m != 'INVALID')})")
        sfm_opts = SfmOptions(matcher=matcher, camera_model=camera_model, max_size=opts.max_size,
                              max_features=opts.max_features, threads=threads, seed=opts.seed, mapper=opts.mapper,
                              verbose=opts.verbose)
        # issue 29: a long video (LONG_VIDEO_FRAMES or more frames) is posed with cheaper features and fewer global
        # bundle adjustments (sfm.LONG_VIDEO, measured in docs/data.md); shorter captures keep COLMAP's defaults
        long_video = long_video_options(sfm_opts, n) if kind == "video" else {}
        if opts.masks is not None:
            _prepare_masks(Path(opts.masks), infos, work / "masks", tmp / "masks")
            sfm_opts.mask_dir = work / "masks"
        report["options"] = {"matcher": matcher, "camera_model": camera_model, "camera_mode": opts.camera_mode,
                             "camera_groups": len(group_list),
                             "max_size": opts.max_size, "max_features": opts.max_features, "threads": threads,
                             "masks": str(opts.masks) if opts.masks is not None else None,
                             "frames": opts.frames if kind == "video" else None, "seed": opts.seed,
                             "mapper": opts.mapper,
                             "long_video": ({"from_frames": LONG_VIDEO_FRAMES, **long_video} if long_video else None),
                             "loop_detection": "none (needs a vocabulary tree download); sequential matching adds "
                                               "quadratic overlap and first-vs-last frames instead"}
        pycolmap.logging.minloglevel = 0 if opts.verbose else 3  # our own messages say what failed
        database = work / "database.db"

        # ---------------------------------------------------------------- features
        t, c = time.perf_counter(), time.process_time()
        bar = _bar(opts.progress, n, "features", "img")
        try:
            extract(database, images_dir, group_list, sfm_opts, progress=bar.update)
        finally:
            bar.close()
        counts = keypoint_counts(database)
        timings["features"] = time.perf_counter() - t
        cpu["features"] = time.process_time() - c

        # ---------------------------------------------------------------- matching
        t, c = time.perf_counter(), time.process_time()
        pairs = make_pairs([i.name for i in infos], matcher, sfm_opts.overlap)
        bar = _bar(opts.progress, len(pairs), "matching", "pair")
        try:
            verified = match(database, pairs, work, sfm_opts, progress=bar.update)
        finally:
            bar.close()
        timings["matching"] = time.perf_counter() - t
        cpu["matching"] = time.process_time() - c

        # ---------------------------------------------------------------- pairs matched by symmetry (issue 24)
        pair_check = opts.pair_check if opts.pair_check != "auto" else ("off" if kind == "video" else "on")
        report["options"]["pair_check"] = pair_check if pair_check == opts.pair_check else \
            f"{opts.pair_check} ({'video' if kind == 'video' else 'photos'}: {pair_check})"
        if pair_check == "on":
            from .pair_cycles import drop_inconsistent_pairs, summary_line

            t, c = time.perf_counter(), time.process_time()
            report["pair_check"] = drop_inconsistent_pairs(database)
            print(summary_line(report["pair_check"]), file=sys.stderr)
            timings["pair_check"] = time.perf_counter() - t
            cpu["pair_check"] = time.process_time() - c

        # ---------------------------------------------------------------- mapping
        t, c = time.perf_counter(), time.process_time()
        # issue 24: a video's time order constrains which pairs may place a frame (process/sequence.py);
        # auto re-maps with it only when one pass folds (the constraint alone was worse on a scene that
        # one pass did not fold, docs/data.md); photos have no time order to trust: one pass
        mapping_mode = opts.continuity if (opts.continuity != "auto" or kind == "video") else "off"
        report["options"]["continuity"] = opts.continuity if mapping_mode == opts.continuity else \
            f"{opts.continuity} (photos: off)"
        needed = max(MIN_IMAGES, math.ceil(opts.min_registered * n))
        bar = _bar(opts.progress, 2 * n if mapping_mode == "on" else n, "mapping", "img")
        try:
            if mapping_mode != "off":
                from .continuity import natural_key
                from .sequence import map_in_time_order, map_video_auto

                order = sorted((i.name for i in infos), key=natural_key)
            if mapping_mode == "on":
                rec, model_sizes, report["constraint"] = map_in_time_order(
                    database, images_dir, work, sfm_opts, order, progress=bar.update)
            elif mapping_mode == "auto":
                def grow():
                    bar.total += 2 * n
                    bar.refresh()

                rec, model_sizes, report["continuity_auto"], constraint = map_video_auto(
                    database, images_dir, work, sfm_opts, order, min_registered=needed, progress=bar.update,
                    on_remap=grow)
                if constraint is not None:
                    report["continuity_auto"]["constraint"] = constraint
            else:
                rec, model_sizes = map_images(database, images_dir, work, sfm_opts, n, progress=bar.update)
        finally:
            bar.close()
        timings["mapping"] = time.perf_counter() - t
        cpu["mapping"] = time.process_time() - c
        all_names = [i.name for i in infos]
        registered = set() if rec is None else {rec.image(i).name for i in rec.reg_image_ids()}
        unregistered = [nm for nm in all_names if nm not in registered]
        if len(registered) < needed:
            tips = [] if matcher == "exhaustive" else ["--matcher exhaustive"]
            if kind == "video":
                tips += [f"more frames (--frames, now {opts.frames})", "a slower, steadier video with more overlap"]
            else:
                tips += ["more photos with more overlap (each part of the scene seen from several nearby viewpoints)"]
            hint = "try " + ", or ".join(tips)
            raise DatasetError(inp, f"only {len(registered)} of {n} images registered (need {needed}); not registered: "
                               f"{_list_names(unregistered)}; {hint}")

        # ---------------------------------------------------------------- does a video's walk close? (issue 24)
        if kind == "video":
            from .continuity import natural_key
            from .sequence import loop_check

            t, c = time.perf_counter(), time.process_time()
            order = sorted(all_names, key=natural_key)
            report["loop"] = loop_check(database, rec, order)
            timings["loop_check"] = time.perf_counter() - t
            cpu["loop_check"] = time.process_time() - c

        # ---------------------------------------------------------------- write + verify
        t, c = time.perf_counter(), time.process_time()
        from .orient import orient_reconstruction
        from .report import reconstruction_stats

        report["orientation"] = orient_reconstruction(rec)  # upright, facing +y: see process/orient.py
        model_dir = tmp / "sparse" / "0"
        model_dir.mkdir(parents=True)
        rec.write(str(model_dir))
        report.update({"images_in": n, "images_registered": len(registered),
                       "registered_fraction": len(registered) / n, "unregistered": unregistered,
                       "models": model_sizes, "pairs_matched": len(pairs), "pairs_verified": verified,
                       "keypoints_mean": float(np.mean(list(counts.values()))) if counts else 0.0})
        report.update(reconstruction_stats(rec))
        shutil.rmtree(work)
        report["check"], report["continuity"] = _verify(tmp, out, all_names, kind)
        cut_section = report.get("constraint") or report.get("continuity_auto")
        if cut_section and "cuts" in cut_section:  # a jump across a cut of the video is the cut, not a fold
            from .sequence import cut_lines, label_cuts

            label_cuts(report["continuity"], cut_section, report["models"])
            for line in cut_lines(cut_section):
                print(line, file=sys.stderr)
        auto = report.get("continuity_auto") or {}
        if auto.get("remapped"):
            print(f"continuity: the first pass jumped without a cut ({auto['first_pass']['fold_jumps']} jumps); "
                  f"re-mapped with the constraint, kept: {auto['kept']}", file=sys.stderr)
        elif (auto.get("first_pass") or {}).get("fold_jumps"):
            print(f"continuity: not re-mapped: {auto.get('not_remapped', '')}", file=sys.stderr)
        for line in continuity_lines(report["continuity"]):  # issue 24: a folded trajectory is reported
            print(line, file=sys.stderr)
        if "loop" in report:  # ... and one that is continuous but does not close
            from .sequence import loop_lines

            for line in loop_lines(report["loop"], order[0], order[-1]):
                print(line, file=sys.stderr)
        timings["write"] = time.perf_counter() - t
        cpu["write"] = time.process_time() - c
        timings["total"] = time.perf_counter() - t_start
        cpu["total"] = time.process_time() - c_start
        report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
        report["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}  # CPU time of all threads: wall on a busy machine
        report["pycolmap"] = pycolmap.__version__
        report["files"] = {"images": "images/", "model": "sparse/0 (COLMAP binary)", "report": REPORT_NAME,
                           "frusta_png": FRUSTA_NAME, **({"masks": "masks/"} if opts.masks is not None else {})}
        write_json(tmp / REPORT_NAME, report)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def _verify(tmp: Path, out: Path, order: List[str], kind: str):
    """Load the written capture with our own loader (as train/eval/render will), measure the
    reprojection error with our own camera models, check the trajectory's continuity in capture
    order (process/continuity.py) and draw the frusta PNG with its jumps. Returns (check, continuity)."""
    from ..data.frusta import write_frusta_png
    from ..data import load_scene
    from .continuity import check_continuity, jump_pairs

    scene = load_scene(tmp)
    errors = scene.reprojection_errors()
    poses = {nm[len("images/"):] if nm.startswith("images/") else nm: c for nm, c in zip(scene.names, scene.c2w)}
    continuity = check_continuity(order, poses, kind="video" if kind == "video" else "images")
    scene.source = out / "sparse" / "0"  # the PNG's title names where the model will be
    write_frusta_png(scene, tmp / FRUSTA_NAME, jumps=jump_pairs(continuity))
    check = {"loaded_images": len(scene), "n_cascades": int(scene.n_cascades)}
    if errors is not None and errors.size:
        check["reprojection_error_px"] = {"mean": float(errors.mean()), "median": float(np.median(errors)),
                                          "p95": float(np.percentile(errors, 95))}
    return check, continuity


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.is_dir():
        if any(out.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=str(out.parent)))
            os.rmdir(old)
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.rmdir(out)
    os.replace(tmp, out)
