"""A long video is posed with cheaper settings (issue 29): ``sfm.LONG_VIDEO`` from ``sfm.LONG_VIDEO_FRAMES`` frames.

Shorter videos, photos and issue 24's walk-around keep COLMAP's defaults; the settings reach pycolmap's
extraction and incremental-mapping options (checked on the options pycolmap is handed, not by running it).
"""
from __future__ import annotations

from pathlib import Path

import pytest

pycolmap = pytest.importorskip("pycolmap")

from nerf_app.process import sfm  # noqa: E402
from nerf_app.process.sfm import LONG_VIDEO, LONG_VIDEO_FRAMES, SfmOptions, long_video_options  # noqa: E402


def test_short_videos_keep_colmaps_defaults():
    opts = SfmOptions()
    assert long_video_options(opts, LONG_VIDEO_FRAMES - 1) == {}
    assert opts == SfmOptions()
    extraction = pycolmap.FeatureExtractionOptions()
    pipeline = pycolmap.IncrementalPipelineOptions()
    assert opts.first_octave == extraction.sift.first_octave
    assert opts.ba_global_ratio == pipeline.ba_global_frames_ratio == pipeline.ba_global_points_ratio
    assert opts.ba_global_max_iterations == pipeline.ba_global_max_num_iterations
    assert opts.ba_global_max_refinements == pipeline.ba_global_max_refinements


def test_long_video_settings_reach_pycolmap(tmp_path, monkeypatch):
    opts = SfmOptions(matcher="sequential")
    assert long_video_options(opts, LONG_VIDEO_FRAMES) == LONG_VIDEO
    assert all(getattr(opts, k) == v for k, v in LONG_VIDEO.items())
    seen = {}

    def fake_mapping(database, image_dir, out, options, **kw):
        seen["pipeline"] = options
        return {}

    def fake_extract(database, image_dir, image_names, camera_mode, reader_options, extraction_options, device):
        seen["extraction"] = extraction_options

    monkeypatch.setattr(pycolmap, "incremental_mapping", fake_mapping)
    monkeypatch.setattr(pycolmap, "import_images", lambda *a, **k: None)
    monkeypatch.setattr(pycolmap, "extract_features", fake_extract)
    rec, sizes = sfm.map_images(tmp_path / "db", tmp_path, tmp_path, opts, LONG_VIDEO_FRAMES)
    assert rec is None and sizes == []
    p = seen["pipeline"]
    assert p.ba_global_frames_ratio == p.ba_global_points_ratio == pytest.approx(LONG_VIDEO["ba_global_ratio"])
    assert p.ba_global_max_num_iterations == LONG_VIDEO["ba_global_max_iterations"]
    assert p.ba_global_max_refinements == LONG_VIDEO["ba_global_max_refinements"]
    assert p.num_threads == sfm.MAPPING_THREADS
    sfm.extract(tmp_path / "database.db", tmp_path, [], opts)  # no groups: only the database is created
    sfm.extract(Path(tmp_path / "database.db"), tmp_path, [["a.jpg"]], opts)
    assert seen["extraction"].sift.first_octave == LONG_VIDEO["first_octave"]
