"""3DGS PLY: the exact layout viewers expect, bit-identical round trips, clear errors."""

import dataclasses

import numpy as np
import pytest
import torch

from vdm3d.cameras import Cameras, look_at
from vdm3d.errors import InputError, Vdm3dError
from vdm3d.splat import Gaussians, load_ply, render, save_ply
from vdm3d.splat.ply import ply_property_names


def scene(n=40, degree=3):
    k = (degree + 1) ** 2
    return Gaussians(torch.randn(n, 3) * 0.3, torch.randn(n, 4), torch.randn(n, 3) * 0.3 - 2.5,
                     torch.randn(n), torch.randn(n, k, 3) * 0.5)


def test_header_has_the_3dgs_property_order(tmp_path):
    path = save_ply(tmp_path / "g.ply", scene())
    header = path.read_bytes().split(b"end_header")[0].decode()
    assert "format binary_little_endian 1.0" in header and "element vertex 40" in header
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert all(line.split()[1] == "float" for line in header.splitlines() if line.startswith("property"))
    expected = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
                + [f"f_rest_{i}" for i in range(45)]
                + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    assert props == expected == ply_property_names(3)


def test_f_rest_is_channel_major(tmp_path):
    from plyfile import PlyData

    g = scene(n=3)
    v = PlyData.read(str(save_ply(tmp_path / "g.ply", g)))["vertex"]
    # f_rest_{c * 15 + k - 1} holds sh[:, k, c]
    assert np.array_equal(v["f_rest_0"], g.sh[:, 1, 0].numpy())
    assert np.array_equal(v["f_rest_1"], g.sh[:, 2, 0].numpy())
    assert np.array_equal(v["f_rest_15"], g.sh[:, 1, 1].numpy())
    assert np.array_equal(v["f_rest_44"], g.sh[:, 15, 2].numpy())
    assert np.array_equal(v["rot_0"], g.quats[:, 0].numpy()) and np.array_equal(v["opacity"], g.opacity_logits.numpy())


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_round_trip_is_bit_identical_and_renders_identically(tmp_path, degree):
    g = scene(degree=degree)
    h = load_ply(save_ply(tmp_path / "g.ply", g))
    for name in ("means", "quats", "log_scales", "opacity_logits", "sh"):
        assert torch.equal(getattr(g, name), getattr(h, name)), name
    cams = Cameras.from_fov(50.0, 24, 16, look_at(torch.tensor([0.0, -0.5, -2.0]), torch.zeros(3),
                                                  torch.tensor([0.0, -1.0, 0.0])))
    a, b = render(g, cams), render(h, cams)
    assert torch.equal(a.rgb, b.rgb) and torch.equal(a.depth, b.depth) and a.alpha.max() > 0.5


def test_bad_files_raise_one_clear_sentence(tmp_path):
    bad = tmp_path / "notes.ply"
    bad.write_text("hello")
    with pytest.raises(InputError, match="notes.ply"):
        load_ply(bad)
    with pytest.raises(Vdm3dError, match="does not exist"):
        load_ply(tmp_path / "missing.ply")
    from plyfile import PlyData, PlyElement

    data = np.zeros(3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "points.ply"))
    with pytest.raises(InputError, match="property 'f_dc_0' is missing"):
        load_ply(tmp_path / "points.ply")
    g = scene(n=4)
    path = save_ply(tmp_path / "nan.ply", Gaussians(g.means, g.quats, g.log_scales,
                                                    torch.tensor([0.0, float("nan"), 0, 0]), g.sh))
    with pytest.raises(InputError, match="opacity has a non-finite value at vertex 1"):
        load_ply(path)


def test_a_ply_cut_short_by_a_full_disk_leaves_the_old_file_or_none(tmp_path, monkeypatch):
    """save_ply wrote in place: a full disk left a cut-short splats.ply / baseline.ply, and `vdm3d complete
    --resume` takes an existing baseline.ply as its finished baseline."""
    import contextlib
    import errno

    import plyfile

    g = Gaussians.from_points(torch.rand(500, 3), torch.rand(500, 3), scales=torch.full((500,), 0.1), opacity=0.5,
                              sh_degree=0)
    old = tmp_path / "old.ply"
    save_ply(old, g)
    whole = old.read_bytes()

    real = plyfile.PlyData.write

    def cut_short(self, stream):  # the disk fills up after the first 4 KiB (a path or a stream, as plyfile takes)
        with (open(stream, "wb") if isinstance(stream, str) else contextlib.nullcontext(stream)) as f:
            f.write(whole[:4096])
            f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plyfile.PlyData, "write", cut_short)
    with pytest.raises(OSError, match="No space left"):
        save_ply(tmp_path / "new.ply", g)
    with pytest.raises(OSError, match="No space left"):
        save_ply(old, g)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.ply"] and old.read_bytes() == whole
    monkeypatch.setattr(plyfile.PlyData, "write", real)
    assert save_ply(tmp_path / "new.ply", g).read_bytes() == whole


def test_non_finite_points_are_left_out_with_a_count_or_refused_when_all(tmp_path, capsys):
    """load_points dropped vertices without finite x, y, z and said nothing, so a cloud that was mostly NaN
    started a fit from its few good points unannounced. Now the points left out are counted in one warning
    line naming the file; a cloud with no finite point at all is one sentence; a 3DGS file's NaN position is
    refused by the Gaussians' own check, with no warning about points before it."""
    from plyfile import PlyData, PlyElement

    from vdm3d.splat.ply import load_points, load_start

    def cloud(path, xyz):
        data = np.empty(len(xyz), dtype=[(c, "<f4") for c in "xyz"] + [(c, "u1") for c in ("red", "green", "blue")])
        for i, c in enumerate("xyz"):
            data[c] = np.asarray(xyz, np.float32)[:, i]
        data["red"] = np.arange(len(xyz))
        PlyData([PlyElement.describe(data, "vertex")]).write(str(path))
        return path

    xyz = np.arange(30, dtype=np.float32).reshape(10, 3)
    xyz[[1, 4]] = np.nan
    xyz[7, 2] = np.inf
    path = cloud(tmp_path / "cloud.ply", xyz)
    points, rgb = load_points(path)
    assert points.shape == (7, 3) and (rgb[:, 0] * 255).round().tolist() == [0, 2, 3, 5, 6, 8, 9]
    assert capsys.readouterr().err == (f"warning: {path}: 3 of 10 points have a non-finite x, y or z (NaN or inf) "
                                       "and are left out\n")
    said = []
    assert len(load_points(path, say=said.append)[0]) == 7 and len(said) == 1 and capsys.readouterr().err == ""
    load_points(cloud(tmp_path / "clean.ply", np.ones((4, 3))))
    assert capsys.readouterr().err == ""

    path = cloud(tmp_path / "nan.ply", np.full((5, 3), np.nan))
    with pytest.raises(InputError) as raised:
        load_points(path)
    assert str(raised.value) == (f"{path}: element 'vertex' has no point with finite x, y and z (all 5 are NaN or "
                                 "inf); export the point cloud again or pass another .ply.")

    g = Gaussians.from_points(torch.rand(4, 3), torch.rand(4, 3), scales=torch.full((4,), 0.1), opacity=0.5,
                              sh_degree=0)
    path = save_ply(tmp_path / "splats.ply", dataclasses.replace(g, means=g.means.index_fill(0, torch.tensor([2]),
                                                                                             float("nan"))))
    with pytest.raises(InputError, match="x/y/z has a non-finite value at vertex 2"):
        load_start(path)
    assert capsys.readouterr().err == ""
