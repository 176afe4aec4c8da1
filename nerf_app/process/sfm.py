"""Structure from motion on the CPU through pycolmap: SIFT extraction, matching, incremental mapping.

- Features are extracted on copies scaled to ``max_size`` pixels (COLMAP's own ``max_image_size``):
  the keypoints, and so the cameras, intrinsics and poses written, are in the full-size images' pixels.
- Cameras: one per group of images (a video: one group; photos: one per folder, size and EXIF
  camera), made by extracting each group in its own calls with the group's camera reused.
- Pairs are generated here (exhaustive, or sequential with linear and quadratic overlap plus the
  first and last frames matched to each other, which closes an orbit) and matched in chunks through
  ``match_image_pairs`` so that each stage can show a progress bar. COLMAP's loop detection needs a
  vocabulary tree that would have to be downloaded, so it is not used: nothing is fetched at run time.
- Mapping (``mapper``): COLMAP's incremental mapper (the default) or its global one (GLOMAP inside COLMAP:
  rotation averaging, then global positioning, then bundle adjustment); either may produce several
  models, and the one with the most registered images is kept. Measured side by side in docs/data.md.
- A video of :data:`LONG_VIDEO_FRAMES` frames or more (issue 29) is posed with :data:`LONG_VIDEO`: SIFT from the
  frames' own size and fewer, shorter global bundle adjustments (700 frames of 720p: 1365 s -> 473 s, 2 cores).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

MATCHERS = ("auto", "exhaustive", "sequential")
MAPPERS = ("incremental", "global")
#: the photo count up to which "auto" matches every pair
EXHAUSTIVE_MAX = 100
#: threads of the mappers, whatever ``--threads`` says. Ceres solves a bundle adjustment of 50000 or more
#: residuals on several threads, and each thread sums its share of the cost and gradient in the order the
#: scheduler hands out work: the sums differ in the last bits from run to run, and incremental mapping of a
#: symmetric scene amplifies that into another model (the walk-around's database mapped 3 times in one process
#: with 2 threads: 24.47, 24.47 and 24.59 % centre error; with 1 thread 24.59 % in every process; a synthetic
#: 5-image, 5400-point database mapped with 4 threads: 4 runs, 4 different models). One thread: the same input
#: gives the same model; the mapping's CPU time is the same (44 s on the walk-around), only its wall time grows.
MAPPING_THREADS = 1
#: a video of at least this many frames is posed with :data:`LONG_VIDEO` (issue 29); shorter ones, photos and
#: issue 24's 100-frame walk-around keep COLMAP's defaults
LONG_VIDEO_FRAMES = 300
#: what changes for a long video (``SfmOptions`` fields), measured on the 700-frame 720p video (docs/data.md, "The
#: 700-frame video in under 10 minutes"; quiet, 2 cores): SIFT from the image's own size (COLMAP doubles it first:
#: first_octave -1) takes 0.21 instead of 0.70 CPU s a frame and finds 838 keypoints a frame instead of ~1,140, so
#: features take 89 s instead of 265 and matching (fewer keypoints) 98 s instead of 145; the incremental mapper's
#: global bundle adjustment runs when the model has grown by 40 % instead of 10 %, with at most 50 solver iterations
#: and 2 refinement rounds instead of 5: mapping 270 s instead of 936 (one thread). End to end 473 s instead of
#: 1365, 700/700 frames, centre error 0.54 % of the spread instead of 0.27 %
LONG_VIDEO = {"first_octave": 0, "ba_global_ratio": 1.4, "ba_global_max_iterations": 50,
              "ba_global_max_refinements": 2}


@dataclass
class SfmOptions:
    matcher: str = "exhaustive"  # "exhaustive" | "sequential" (resolved, not "auto")
    camera_model: str = "SIMPLE_RADIAL"
    max_size: int = 1280
    max_features: int = 4096
    threads: int = 2
    overlap: int = 10
    seed: int = 0
    mapper: str = "incremental"  # "incremental" | "global"
    mask_dir: Optional[Path] = None  # COLMAP masks: <mask_dir>/<image name>.png, 0 = no features
    verbose: bool = False
    # SIFT's first octave: -1 (COLMAP's default) doubles the image first; 0 starts at its own size
    first_octave: int = -1
    # the incremental mapper's global bundle adjustment: after the model has grown by this ratio (images and
    # points; COLMAP's 1.1), at most this many solver iterations (-1: COLMAP's) and refinement rounds
    ba_global_ratio: float = 1.1
    ba_global_max_iterations: int = -1
    ba_global_max_refinements: int = 5


def long_video_options(options: SfmOptions, n_frames: int) -> Dict[str, object]:
    """Apply :data:`LONG_VIDEO` to ``options`` when a video has at least :data:`LONG_VIDEO_FRAMES` frames;
    returns what was changed (empty otherwise)."""
    if n_frames < LONG_VIDEO_FRAMES:
        return {}
    for key, value in LONG_VIDEO.items():
        setattr(options, key, value)
    return dict(LONG_VIDEO)


@dataclass
class SfmResult:
    reconstruction: object  # pycolmap.Reconstruction, the largest model
    model_sizes: List[int]
    pairs: int
    verified_pairs: int
    keypoints: Dict[str, int]
    timings: Dict[str, float] = field(default_factory=dict)


def _quiet(verbose: bool) -> None:
    import pycolmap

    pycolmap.logging.minloglevel = 0 if verbose else 3  # glog: 0 info, 1 warning, 2 error, 3 fatal


def extract(database: Path, image_dir: Path, groups: Sequence[Sequence[str]], options: SfmOptions,
            progress: Optional[Callable[[int], None]] = None) -> None:
    """SIFT features of every image into ``database``; each group shares one camera."""
    import pycolmap

    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = int(options.max_size)
    extraction.num_threads = int(options.threads)
    extraction.sift.max_num_features = int(options.max_features)
    extraction.sift.first_octave = int(options.first_octave)
    chunk = max(4, 4 * int(options.threads))
    pycolmap.Database.open(database).close()  # import_images needs the file
    for names in groups:
        camera_id = -1
        for start in range(0, len(names), chunk):
            part = list(names[start:start + chunk])
            reader = pycolmap.ImageReaderOptions()
            reader.camera_model = options.camera_model
            reader.existing_camera_id = camera_id
            if options.mask_dir is not None:
                reader.mask_path = str(options.mask_dir)
            # the images enter the database one by one in name order first; the extractor's threads would give
            # them ids in the order they finish (frames 0 and 1 swapped between two runs), and the mappers
            # order their work by id: another numbering, another model (the walk-around: 6.9 % and 3.8 %)
            pycolmap.import_images(database, image_dir, camera_mode=pycolmap.CameraMode.SINGLE, image_names=part,
                                   options=reader)
            pycolmap.extract_features(database, image_dir, image_names=part, camera_mode=pycolmap.CameraMode.SINGLE,
                                      reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
            if camera_id < 0:
                db = pycolmap.Database.open(database)
                try:
                    image = db.read_image_with_name(part[0])
                    camera_id = int(image.camera_id) if image is not None else -1
                finally:
                    db.close()
            if progress:
                progress(len(part))


def keypoint_counts(database: Path) -> Dict[str, int]:
    import pycolmap

    db = pycolmap.Database.open(database)
    try:
        return {im.name: int(db.num_keypoints_for_image(im.image_id)) for im in db.read_all_images()}
    finally:
        db.close()


def make_pairs(names: Sequence[str], matcher: str, overlap: int = 10) -> List[Tuple[str, str]]:
    """Image pairs to match. ``exhaustive``: all. ``sequential`` (names sorted = time order): each
    image with the next ``overlap`` ones and with those 2, 4, 8, ... ahead (COLMAP's quadratic
    overlap), plus the first ``overlap`` images with the last ``overlap`` (closes an orbit)."""
    names = sorted(names)
    n = len(names)
    if matcher == "exhaustive":
        return [(names[i], names[j]) for i in range(n) for j in range(i + 1, n)]
    if matcher != "sequential":
        raise ValueError(f"unknown matcher {matcher!r}")
    pairs = set()
    for i in range(n):
        for j in range(i + 1, min(n, i + overlap + 1)):
            pairs.add((i, j))
        k = 1
        while i + k < n and k < (1 << overlap):
            pairs.add((i, i + k))
            k *= 2
    head = range(min(overlap, n))
    tail = range(max(0, n - overlap), n)
    for i in head:
        for j in tail:
            if i < j:
                pairs.add((i, j))
    return [(names[i], names[j]) for i, j in sorted(pairs)]


def match(database: Path, pairs: Sequence[Tuple[str, str]], work_dir: Path, options: SfmOptions,
          progress: Optional[Callable[[int], None]] = None) -> int:
    """Match and geometrically verify ``pairs`` (in chunks, for the progress bar); returns the
    number of verified pairs."""
    import pycolmap

    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = int(options.threads)
    # the geometric verification's RANSAC is seeded from the clock unless given a seed, and then the same
    # images give other inliers on every run (king_statue's 253 pairs matched twice: 56 of 187 verified
    # pairs changed their inlier count; with a seed, none did): seeded, the database is repeatable
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.random_seed = int(options.seed)
    chunk = 200
    for start in range(0, len(pairs), chunk):
        part = pairs[start:start + chunk]
        pair_file = work_dir / "pairs.txt"
        pair_file.write_text("".join(f"{a} {b}\n" for a, b in part), encoding="utf-8")
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = str(pair_file)
        pycolmap.match_image_pairs(database, matching_options=matching, pairing_options=pairing,
                                   verification_options=verification, device=pycolmap.Device.cpu)
        if progress:
            progress(len(part))
    db = pycolmap.Database.open(database)
    try:
        return int(db.num_verified_image_pairs())
    finally:
        db.close()


def map_images(database: Path, image_dir: Path, work_dir: Path, options: SfmOptions, n_images: int,
               progress: Optional[Callable[[int], None]] = None):
    """Mapping with ``options.mapper``; returns (largest reconstruction or None, sizes of all models)."""
    import pycolmap

    if options.mapper == "global":
        return _map_global(database, image_dir, work_dir, options, n_images, progress)
    if options.mapper != "incremental":
        raise ValueError(f"unknown mapper {options.mapper!r}")

    pipeline = pycolmap.IncrementalPipelineOptions()
    pipeline.num_threads = MAPPING_THREADS
    pipeline.random_seed = int(options.seed)
    pipeline.min_model_size = max(3, min(10, n_images // 2))
    pipeline.extract_colors = True
    pipeline.ba_global_frames_ratio = pipeline.ba_global_points_ratio = float(options.ba_global_ratio)
    pipeline.ba_global_max_num_iterations = int(options.ba_global_max_iterations)
    pipeline.ba_global_max_refinements = int(options.ba_global_max_refinements)
    out = work_dir / "models"
    out.mkdir(parents=True, exist_ok=True)
    count = {"n": 0}

    def initial_pair():
        count["n"] += 2
        if progress:
            progress(2)

    def next_image():
        count["n"] += 1
        if progress:
            progress(1)

    models = pycolmap.incremental_mapping(database, image_dir, out, options=pipeline,
                                          initial_image_pair_callback=initial_pair, next_image_callback=next_image)
    sizes = sorted((int(r.num_reg_images()) for r in models.values()), reverse=True)
    if not models:
        return None, sizes
    best = max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
    return best, sizes


def _largest(models):
    sizes = sorted((int(r.num_reg_images()) for r in models.values()), reverse=True)
    if not models:
        return None, sizes
    return max(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D())), sizes


def _map_global(database: Path, image_dir: Path, work_dir: Path, options: SfmOptions, n_images: int,
                progress: Optional[Callable[[int], None]] = None):
    """COLMAP's global mapper (GLOMAP). It first writes each verified pair's relative pose (decomposed
    from its E/F/H) into ``database``; it has no per-image callback, so the progress bar moves once."""
    import pycolmap

    pipeline = pycolmap.GlobalPipelineOptions()
    pipeline.num_threads = MAPPING_THREADS  # passed on to the mapper's stages by COLMAP; one, as map_images
    pipeline.random_seed = int(options.seed)
    pipeline.min_model_size = max(3, min(10, n_images // 2))
    out = work_dir / "models_global"
    out.mkdir(parents=True, exist_ok=True)
    models = pycolmap.global_mapping(database, image_dir, out, options=pipeline)
    if progress:
        progress(n_images)
    return _largest(models)
