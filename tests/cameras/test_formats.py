"""Any-format camera files: every writable format round-trips cameras, names, timestamps and fps."""

import pytest
import torch

from vdm3d.cameras.formats import CameraFile, detect_format, read_camera_file, write_camera_file
from vdm3d.cameras.rotations import orthonormalize
from vdm3d.cameras.trajectory import Trajectory, orbit
from vdm3d.errors import InputError


def sample() -> CameraFile:
    t = orbit(frames=5, radius=2.0, elevation_deg=25, target=(0.3, -0.1, 0.2), width=80, height=60, fps=12)
    cams = t.cameras.to(torch.float64)
    cams.c2w[:, :3, :3] = orthonormalize(cams.c2w[:, :3, :3])  # exact rotations, so tolerances can be tight
    t = Trajectory(cams, 12.0, t.provenance)
    return CameraFile(t, [f"img_{i}.png" for i in range(5)], [i * 83333 for i in range(5)], "https://x/y")


@pytest.mark.parametrize("name, fmt, tol", [("t.json", "vdm3d", 0), ("transforms.json", "transforms", 1e-12),
                                            ("sparse", "colmap", 1e-12), ("cams.txt", "re10k", 1e-9)])
def test_round_trip(tmp_path, name, fmt, tol):
    cf = sample()
    assert detect_format(tmp_path / name, for_writing=True) == fmt
    write_camera_file(tmp_path / name, cf)
    back = read_camera_file(tmp_path / name, width=80, height=60)
    torch.testing.assert_close(back.trajectory.cameras.c2w, cf.trajectory.cameras.c2w, atol=tol, rtol=0)
    torch.testing.assert_close(back.trajectory.cameras.Ks, cf.trajectory.cameras.Ks, atol=tol * 100, rtol=0)
    if fmt in ("vdm3d", "transforms"):
        assert back.names == cf.names and back.timestamps_us == cf.timestamps_us and back.url == cf.url
        assert back.trajectory.fps == 12.0
    if fmt == "re10k":
        assert back.timestamps_us == cf.timestamps_us and back.trajectory.fps == pytest.approx(12.0, rel=1e-4)
    if fmt == "colmap":
        assert back.names == sorted(cf.names)


def test_llff_is_read_only_and_unknown_suffix(tmp_path):
    with pytest.raises(InputError, match="LLFF is read-only"):
        write_camera_file(tmp_path / "poses_bounds.npy", sample())
    (tmp_path / "x.yaml").write_text("a: 1")
    with pytest.raises(InputError, match="names no camera format"):
        read_camera_file(tmp_path / "x.yaml")


def test_image_names_follow_the_file(tmp_path):
    """Names that resolve to images are rebased when the file is written elsewhere: relative to the new
    file in a transforms.json or vdm3d trajectory, relative to the images' folder in a COLMAP model."""
    run = tmp_path / "run"
    (run / "frames").mkdir(parents=True)
    (run / "cameras").mkdir()
    for i in range(5):
        (run / "frames" / f"img_{i}.png").write_bytes(b"png")
    cf = sample()
    cf = CameraFile(cf.trajectory, [f"../frames/img_{i}.png" for i in range(5)], cf.timestamps_us, cf.url)
    write_camera_file(run / "cameras" / "transforms.json", cf)
    src = read_camera_file(run / "cameras" / "transforms.json")
    assert src.images() == [run / "frames" / f"img_{i}.png" for i in range(5)]

    for out in (tmp_path / "elsewhere" / "deeper" / "transforms.json", tmp_path / "t.json"):
        out.parent.mkdir(parents=True, exist_ok=True)
        write_camera_file(out, src)
        back = read_camera_file(out)
        assert back.images() == src.images()  # the same files, from the new place
    assert read_camera_file(tmp_path / "t.json").names[0] == "run/frames/img_0.png"

    write_camera_file(tmp_path / "sparse", src)
    model = read_camera_file(tmp_path / "sparse")
    assert model.names == [f"img_{i}.png" for i in range(5)]  # relative to run/frames, COLMAP's image path
    assert model.images() is None  # COLMAP stores no image folder

    # names that are not images beside the file are written as they are
    placeholders = CameraFile(cf.trajectory, [f"frame_{i:05d}" for i in range(5)], root=tmp_path)
    (tmp_path / "p").mkdir()
    write_camera_file(tmp_path / "p" / "transforms.json", placeholders)
    assert read_camera_file(tmp_path / "p" / "transforms.json").names == placeholders.names
