"""`nerf-app inspect`: report, reprojection error, PNG, and one-line errors."""
import json
from pathlib import Path


from nerf_app.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # never skipped: CI has it


def test_inspect_json_reports_reprojection_and_writes_png(tmp_path, capsys):
    png = tmp_path / "out" / "king.png"
    assert main(["inspect", str(DATA / "king_statue" / "dense" / "0"), "--json", "--png", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "colmap-binary" and report["images"] == 23
    assert report["camera_models"] == ["PINHOLE"] and report["splits"] == {"train": 20, "test": 3}
    assert report["reprojection_error_px"]["mean"] <= 0.4
    assert 1 <= report["n_cascades"] <= 8 and len(report["aabb"]) == 2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in png.parent.iterdir()] == ["king.png"]  # no temporary file left behind


def test_inspect_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "transforms.json").write_text("{not json")
    assert main(["inspect", str(tmp_path), "--png", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "transforms.json" in err and "invalid JSON" in err
    assert "Traceback" not in err
