"""`--splats` on the command line (issue 27): bad input is one line, exit 2, before any run is opened, and
no output file appears."""
import pytest

from nerf_app.cli import main
from nerf_app.splats.ply import splats_to_bytes
from test_splat_ply import make


def run_folder(tmp_path, mode):
    run = tmp_path / f"{mode}_run"
    run.mkdir()
    (run / "config.yaml").write_text(f"mode: {mode}\ninput: /nonexistent\n")
    return run


def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("mode", ["image", "sdf"])
def test_export_splats_refuses_other_modes(tmp_path, capsys, mode):
    run = run_folder(tmp_path, mode)
    out = tmp_path / "s.ply"
    line = one_line_error(capsys, ["export", str(run), "--splats", str(out)])
    assert "--splats" in line and f"{mode} run" in line and "radiance field" in line
    assert not out.exists()


def test_eval_and_render_refuse_a_mesh_ply(tmp_path, capsys):
    run = run_folder(tmp_path, "nerf")
    mesh = tmp_path / "mesh.ply"
    mesh.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                     b"property float z\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
    for verb in ("eval", "render"):
        line = one_line_error(capsys, [verb, str(run), "--splats", str(mesh)])
        assert str(mesh) in line and "lacks f_dc_0" in line and "rot_3" in line


def test_eval_refuses_a_splat_file_for_an_image_run(tmp_path, capsys):
    run = run_folder(tmp_path, "image")
    ply = tmp_path / "s.ply"
    ply.write_bytes(splats_to_bytes(make(3)))
    line = one_line_error(capsys, ["eval", str(run), "--splats", str(ply)])
    assert "image run" in line
    line = one_line_error(capsys, ["eval", str(run), "--splats", str(tmp_path / "missing.ply")])
    assert "no such file" in line


def test_export_then_eval_splats_sheet_leads_with_the_worst_view(tmp_path, nerf_run, capsys):
    """`export --splats` (bake only) then `eval --splats` on a tiny demo run: the metrics carry every view's
    splat and NeRF scores, and the contact sheet's first row is the lowest-PSNR view (it used to show the
    first four views, whatever their scores)."""
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(nerf_run[0], run)
    ply = tmp_path / "s.ply"
    assert main(["export", str(run), "--splats", str(ply), "--refine-time", "0", "--max-splats", "3000"]) == 0
    assert main(["eval", str(run), "--splats", str(ply), "--limit", "3", "--out", str(tmp_path / "m.json")]) == 0
    capsys.readouterr()
    m = json.loads((tmp_path / "m.json").read_text())
    psnrs = [r["psnr"] for r in m["per_image"]]
    assert m["n_images"] == len(psnrs) == 3 and all(r["nerf_psnr"] > 0 for r in m["per_image"])
    assert m["contact_sheet_views"][0]["psnr"] == min(psnrs)
    assert m["contact_sheet_views"][0]["label"].startswith("worst 1/")
    assert (run / m["contact_sheet"]).is_file()
