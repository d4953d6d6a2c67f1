"""The versioned trajectory file: exact round trip, and each kind of bad content named precisely."""

import json

import pytest
import torch

from vdm3d.cameras import Cameras
from vdm3d.cameras.trajectory import Trajectory, sv3d_dynamic_orbit
from vdm3d.cameras.trajectory_file import FORMAT, load_trajectory, save_trajectory, trajectory_to_dict
from vdm3d.errors import CameraError, InputError


def test_round_trip_is_exact(tmp_path):
    t = sv3d_dynamic_orbit(12.0, seed=5)
    t = Trajectory(t.cameras.to(torch.float64), 7.0, t.provenance)
    save_trajectory(tmp_path / "t.json", t)
    back = load_trajectory(tmp_path / "t.json", dtype=torch.float64)
    assert torch.equal(back.cameras.c2w, t.cameras.c2w) and torch.equal(back.cameras.Ks, t.cameras.Ks)
    assert back.fps == 7.0 and back.provenance["seed"] == 5
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["format"] == FORMAT and data["version"] == 1 and data["convention"] == "opencv_c2w"


def write(tmp_path, edit):
    cams = Cameras.from_fov(50.0, 32, 24, torch.eye(4, dtype=torch.float64).repeat(3, 1, 1))
    data = trajectory_to_dict(Trajectory(cams, 24.0))
    edit(data)
    p = tmp_path / "t.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize("edit, err, match", [
    (lambda d: d.update(version=2), InputError, "version is 2, newer"),
    (lambda d: d.update(fps=-1), InputError, "fps must be a positive"),
    (lambda d: d.update(width=0), InputError, "width/height must be positive"),
    (lambda d: d.pop("height"), InputError, "height is missing"),
    (lambda d: d.update(frames=[]), InputError, "frames is empty"),
    (lambda d: d["frames"][2].pop("K"), InputError, "frame 2 field K is missing"),
    (lambda d: d["frames"][1]["c2w"].pop(), InputError, "frame 1 field c2w must be a 4x4"),
    (lambda d: d["frames"][1]["c2w"][0].__setitem__(1, "x"), InputError, "frame 1 field c2w holds a non-number"),
    (lambda d: d["frames"][0]["c2w"][1].__setitem__(1, 1.01), CameraError, "frame 0 field rotation"),
    (lambda d: d["frames"][2]["c2w"][3].__setitem__(0, 1.0), CameraError, "frame 2 field c2w has a last row"),
    (lambda d: d["frames"][1]["K"][0].__setitem__(1, 3.0), CameraError, "frame 1 field K is not"),
    (lambda d: d["frames"][2]["K"][1].__setitem__(1, 0.0), CameraError, "frame 2 field focal length"),
])
def test_bad_content_named(tmp_path, edit, err, match):
    p = write(tmp_path, edit)
    with pytest.raises(err, match=match) as e:
        load_trajectory(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_mirror_rotation_rejected(tmp_path):
    p = write(tmp_path, lambda d: d["frames"][1]["c2w"][0].__setitem__(0, -1.0))  # det -1
    with pytest.raises(CameraError, match="frame 1 field rotation is not orthonormal with det \\+1"):
        load_trajectory(p)


def test_small_drift_within_tolerance_is_accepted(tmp_path):
    p = write(tmp_path, lambda d: d["frames"][0]["c2w"][0].__setitem__(0, 1.0002))
    assert len(load_trajectory(p)) == 3


def test_a_scaled_rotation_shows_why_it_was_refused(tmp_path):
    """QA F14: rotations scaled by 1.001 were refused with "det = 1", which reads as if the determinant were
    fine; the sentence now shows det to four decimals, the tolerance crossed, and how to re-orthonormalize."""
    def scale(d):
        d["frames"][0]["c2w"] = [[v * 1.001 if j < 3 and i < 3 else v for j, v in enumerate(r)]
                                 for i, r in enumerate(d["frames"][0]["c2w"])]

    p = write(tmp_path, scale)
    with pytest.raises(CameraError) as e:
        load_trajectory(p)
    assert str(e.value) == (f"{p}: frame 0 field rotation is not orthonormal with det +1 (max |R R^T - I| = 0.002 > "
                            "0.001, det = 1.0030); re-orthonormalize it (the nearest rotation to R = U S V^T is U V^T) "
                            "or check the matrix layout.")
    p = write(tmp_path, lambda d: d["frames"][1]["c2w"][0].__setitem__(0, -1.0))  # a mirror: orthogonal, det -1
    with pytest.raises(CameraError, match=r"\(max \|R R\^T - I\| = 0, det = -1.0000\); re-orthonormalize"):
        load_trajectory(p)
