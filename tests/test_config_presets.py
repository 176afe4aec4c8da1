"""`--config NAME` takes a preset by name (from any folder, as an installed package would), a file still wins,
and a name that is neither is one ConfigError listing the presets."""
from __future__ import annotations

import pytest

from nerf_app.errors import ConfigError
from nerf_app.nerf.config import NerfConfig
from nerf_app.train.config import load_config, preset_names, resolve_config


def test_a_preset_by_name_from_a_folder_without_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = load_config(NerfConfig, "nerf")
    real = load_config(NerfConfig, "nerf", "nerf_real")
    assert real.rays.cone_angle == pytest.approx(0.00390625) and plain.rays.cone_angle != real.rays.cone_angle
    assert load_config(NerfConfig, "nerf", "nerf_real.yaml").rays.cone_angle == real.rays.cone_angle
    assert {"nerf", "nerf_real", "nerf_synthetic", "sdf"} <= set(preset_names())


def test_a_file_of_that_name_wins_and_unknown_names_are_one_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nerf_real").write_text("rays:\n  cone_angle: 0.5\n")
    assert load_config(NerfConfig, "nerf", "nerf_real").rays.cone_angle == 0.5
    with pytest.raises(ConfigError, match=r"--config nerf_reel: no such file, and not a preset name \(presets: .*nerf_real"):
        resolve_config("nerf_reel")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_config(str(tmp_path / "missing" / "nerf_real.yaml"))  # a path is never taken for a name


def test_a_number_beyond_the_float_range_is_one_config_error(tmp_path, monkeypatch):
    """Found by the fuzz suite's config family: `1` and 400 zeros in a float field raised OverflowError."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "big.yaml").write_text("optim:\n  lr: 1" + "0" * 400 + "\n")
    with pytest.raises(ConfigError, match=r"optim.lr.*expected a finite number, got 1000.*\.\.\.$"):
        load_config(NerfConfig, "nerf", str(tmp_path / "big.yaml"))
