"""The splat PLY (issue 27): INRIA layout read back by an independent reader (plyfile) by property name,
round trip, gsplat's loader layout, bad files as one line naming what is missing, atomic writes."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from nerf_app.errors import DatasetError
from nerf_app.splats.model import SH_C0, Splats, rotmat_to_quat
from nerf_app.splats.ply import property_names, read_splat_ply, splats_to_bytes, write_splat_ply


def make(n=5, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Splats(torch.randn(n, 3, generator=g), torch.randn(n, 3, generator=g) - 3, torch.randn(n, 4, generator=g),
                  torch.randn(n, generator=g), torch.randn(n, k, 3, generator=g))


@pytest.mark.parametrize("k", [1, 4, 9, 16])
def test_plyfile_reads_properties_by_name(tmp_path, k):
    plyfile = pytest.importorskip("plyfile")
    s = make(7, k)
    path = tmp_path / "s.ply"
    size = write_splat_ply(path, s)
    assert path.stat().st_size == size
    v = plyfile.PlyData.read(str(path))["vertex"]
    assert v.count == 7
    names = [p.name for p in v.properties]
    assert names == property_names(k)
    assert all(p.val_dtype in ("f4", "float32", "<f4") for p in v.properties)
    np.testing.assert_allclose(v["x"], s.means[:, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(v["opacity"], s.opacity_logits.numpy(), rtol=1e-6)
    np.testing.assert_allclose(v["scale_2"], s.log_scales[:, 2].numpy(), rtol=1e-6)
    q = s.quats / s.quats.norm(dim=1, keepdim=True)
    np.testing.assert_allclose(v["rot_0"], q[:, 0].numpy(), rtol=1e-5, atol=1e-7)   # w first
    np.testing.assert_allclose(v["f_dc_1"], s.sh[:, 0, 1].numpy(), rtol=1e-6)
    if k > 1:
        # channel-major f_rest: red's k-1 higher coefficients, then green's, then blue's
        np.testing.assert_allclose(v[f"f_rest_{k - 1}"], s.sh[:, 1, 1].numpy(), rtol=1e-6)
        np.testing.assert_allclose(v[f"f_rest_{3 * (k - 1) - 1}"], s.sh[:, k - 1, 2].numpy(), rtol=1e-6)
    # gsplat's / 3DGS's loader layout: features_rest = f_rest reshaped [N, 3, K-1] then transposed to [N, K-1, 3]
    if k > 1:
        rest = np.stack([v[f"f_rest_{i}"] for i in range(3 * (k - 1))], 1).reshape(7, 3, k - 1).transpose(0, 2, 1)
        np.testing.assert_allclose(rest, s.sh[:, 1:].numpy(), rtol=1e-6)
    back = read_splat_ply(path)
    for a, b in zip(back.tensors(), [s.means, s.log_scales, q, s.opacity_logits, s.sh]):
        torch.testing.assert_close(a, b.float(), rtol=1e-5, atol=1e-6)


def test_dc_is_3dgs_colour():
    # 3DGS: rgb = SH_C0 * f_dc + 0.5 at any view direction for degree 0
    assert SH_C0 == pytest.approx(0.28209479177387814)


def test_rotmat_to_quat_round_trip():
    from nerf_app.ops.splat import quat_to_rotmat
    q = torch.randn(200, 4, dtype=torch.float64)
    R = quat_to_rotmat(q).numpy()
    back = torch.from_numpy(rotmat_to_quat(R))
    torch.testing.assert_close(quat_to_rotmat(back), torch.from_numpy(R))


@pytest.mark.parametrize("text,needle", [
    (b"hello", "not a PLY file"),
    (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n", "binary_little_endian"),
    (b"ply\nformat binary_little_endian 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n",
     "no 'vertex' element"),
    (b"ply\nformat binary_little_endian 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
     b"property float z\nproperty uchar red\nend_header\n", "lacks f_dc_0, f_dc_1, f_dc_2, opacity, scale_0"),
])
def test_bad_files_one_line(tmp_path, text, needle):
    path = tmp_path / "bad.ply"
    path.write_bytes(text)
    with pytest.raises(DatasetError) as e:
        read_splat_ply(path)
    assert needle in str(e.value) and "\n" not in str(e.value) and str(path) in str(e.value)


def test_missing_property_named(tmp_path):
    data = splats_to_bytes(make(3, 4)).replace(b"property float rot_3\n", b"")
    (tmp_path / "m.ply").write_bytes(data)
    with pytest.raises(DatasetError, match="lacks rot_3$"):
        read_splat_ply(tmp_path / "m.ply")


def test_truncated(tmp_path):
    data = splats_to_bytes(make(3, 4))
    (tmp_path / "t.ply").write_bytes(data[:-10])
    with pytest.raises(DatasetError, match="truncated"):
        read_splat_ply(tmp_path / "t.ply")


def test_write_is_atomic(tmp_path, monkeypatch):
    """An error (or Ctrl-C) while the file is written leaves nothing behind and an old file as it was."""
    import nerf_app.results as results
    path = tmp_path / "out.ply"
    path.write_bytes(b"old")
    real = results.os.fsync

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(results.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_splat_ply(path, make(4))
    monkeypatch.setattr(results.os, "fsync", real)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ply"]
