"""Splat PLYs always carry the INRIA 3DGS layout (62 vertex properties) whatever the SH degree."""

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from vdm3d.splat import Gaussians, load_ply, save_ply
from vdm3d.splat.ply import ply_property_names


def scene(n=10, degree=0):
    return Gaussians(torch.randn(n, 3), torch.randn(n, 4), torch.randn(n, 3) - 2, torch.randn(n),
                     torch.randn(n, (degree + 1) ** 2, 3))


@pytest.mark.parametrize("degree", [0, 1, 2])
def test_low_degrees_are_written_as_degree_3_with_zeros_and_reload_at_their_degree(tmp_path, degree):
    g = scene(degree=degree)
    ply = PlyData.read(str(save_ply(tmp_path / "g.ply", g)))
    names = [p.name for p in ply["vertex"].properties]
    assert len(names) == 62 and names == ply_property_names(3)
    k = (degree + 1) ** 2
    v = ply["vertex"]
    for c in range(3):  # channel-major: f_rest_{15 c + j - 1} holds band coefficient j of channel c
        for j in range(1, 16):
            expected = g.sh[:, j, c].numpy() if j < k else np.zeros(len(g), np.float32)
            assert np.array_equal(v[f"f_rest_{15 * c + j - 1}"], expected)
    assert f"vdm3d sh_degree {degree}" in ply.comments
    h = load_ply(tmp_path / "g.ply")
    assert h.sh_degree == degree and torch.equal(h.sh, g.sh)


def test_a_foreign_file_without_the_comment_loads_at_the_degree_of_its_layout(tmp_path):
    names = ply_property_names(3)
    data = np.zeros(2, dtype=[(nm, "<f4") for nm in names])
    data["rot_0"] = 1.0
    data["f_rest_3"] = 0.25
    PlyData([PlyElement.describe(data, "vertex")]).write(str(tmp_path / "inria.ply"))
    g = load_ply(tmp_path / "inria.ply")
    assert g.sh_degree == 3 and g.sh[0, 4, 0] == 0.25
