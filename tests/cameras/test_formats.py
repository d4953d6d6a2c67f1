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


def _lens_file(tmp_path, name: str, top: dict, per_frame: dict[int, dict]):
    """``sample()`` as a transforms.json with the lens keys ``top`` at the top level and ``per_frame[i]`` in frame i."""
    import json

    p = tmp_path / name
    write_camera_file(p, sample())
    data = json.loads(p.read_text())
    data.update(camera_model="OPENCV", **top)
    for i, keys in per_frame.items():
        data["frames"][i].update(keys)
    p.write_text(json.dumps(data))
    return p


def _advice(p) -> str:
    return (f"undistort the images first (e.g. colmap image_undistorter or cv2.undistort), or, if they already are, "
            f"write a pinhole copy with `vdm3d trajectory convert {p} --distortion drop --out path.json` "
            "(in Python: distortion='drop').")


def test_a_transforms_json_lens_is_refused_dropped_or_kept(tmp_path):
    """QA F8: a transforms.json's k1 (top level, or on one frame) was kept in extras but the path ran as pinhole
    cameras in explore and stylize, and `trajectory validate` said ok, while COLMAP's was refused. Now it is
    refused the same way by default, dropped with distortion="drop", kept with "keep"."""
    from vdm3d.errors import CameraError

    top = _lens_file(tmp_path, "top_transforms.json", {"k1": 0.05}, {})
    with pytest.raises(CameraError) as e:
        read_camera_file(top)
    assert str(e.value) == (f"{top}: every frame has lens distortion (k1=0.05), which vdm3d's pinhole cameras would "
                            f"drop; {_advice(top)}")
    one = _lens_file(tmp_path, "one_transforms.json", {}, {1: {"k1": 0.05, "p2": -0.002}})
    with pytest.raises(CameraError) as e:
        read_camera_file(one)
    assert str(e.value) == (f"{one}: frame 1 (img_1.png) has lens distortion (k1=0.05, p2=-0.002), which vdm3d's "
                            f"pinhole cameras would drop; {_advice(one)}")

    dropped = read_camera_file(one, distortion="drop")
    torch.testing.assert_close(dropped.trajectory.cameras.c2w, sample().trajectory.cameras.c2w, atol=1e-12, rtol=0)
    assert dropped.extras["distortion"] is None and dropped.extras["camera_model"] == "PINHOLE"
    kept = read_camera_file(one, distortion="keep").extras
    assert kept["distortion"][1] == {"k1": 0.05, "p2": -0.002} and kept["camera_model"] == "OPENCV"


def test_a_lens_with_zero_coefficients_is_no_lens(tmp_path):
    """nerfstudio writes camera_model OPENCV with k1 = k2 = p1 = p2 = 0 for pinhole captures: that loads."""
    p = _lens_file(tmp_path, "zero_transforms.json", {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}, {2: {"k3": 0}})
    cf = read_camera_file(p)
    torch.testing.assert_close(cf.trajectory.cameras.Ks, sample().trajectory.cameras.Ks, atol=1e-10, rtol=0)


def test_a_colmap_lens_refusal_names_the_model_as_given_and_the_cli_way(tmp_path):
    """QA F9: the refusal said "pass distortion='drop'", a Python keyword no command takes, and named sparse/0
    where the user passed its parent; now it names what was passed and the `trajectory convert` line."""
    import numpy as np

    from vdm3d.cameras.io import cameras_from_colmap, colmap_from_cameras, write_colmap
    from vdm3d.errors import CameraError

    cf = sample()
    model = colmap_from_cameras(cf.trajectory.cameras, cf.names)
    cam = model.cameras[1]
    f, cx, cy = cam.params[0], cam.params[2], cam.params[3]
    model.cameras[1] = type(cam)(1, "SIMPLE_RADIAL", 80, 60, np.array([f, cx, cy, 0.1]))
    write_colmap(model, tmp_path / "scene" / "sparse" / "0", binary=False)
    given = tmp_path / "scene"
    with pytest.raises(CameraError) as e:
        read_camera_file(given)
    tail = ("has lens distortion (k1=0.1), which vdm3d's pinhole cameras would drop; undistort the images first "
            "(colmap image_undistorter), or, if they already are, write a pinhole copy with `vdm3d trajectory convert ")
    assert str(e.value) == (f"{given}: camera 1 (SIMPLE_RADIAL) {tail}{given} --distortion drop --out path.json` "
                            "(in Python: distortion='drop').")
    from vdm3d.cameras.io import read_colmap

    sparse = read_colmap(given)
    with pytest.raises(CameraError) as e:  # the library function names the model folder it read
        cameras_from_colmap(sparse)
    assert str(e.value).startswith(f"{sparse.path}: camera 1 (SIMPLE_RADIAL) {tail}{sparse.path} --distortion drop")
    assert len(read_camera_file(given, distortion="drop").trajectory) == 5


def test_llff_poses_refuse_the_lens_of_their_colmap_model(shared_data):
    """fern's poses_bounds.npy: the SIMPLE_RADIAL lens in sparse/0 beside it was kept in extras and dropped by
    every job; now it is refused like the model's own (and kept on request, as `trajectory convert` asks)."""
    from vdm3d.cameras.io import read_colmap
    from vdm3d.errors import CameraError

    poses = shared_data / "llff_fern" / "poses_bounds.npy"
    k1 = float(read_colmap(poses.parent / "sparse" / "0").cameras[1].params[3])
    with pytest.raises(CameraError) as e:
        read_camera_file(poses)
    assert str(e.value).startswith(f"{poses}: its COLMAP model sparse/0 (SIMPLE_RADIAL) has lens distortion "
                                   f"(k1={k1:g}), which vdm3d's pinhole cameras would drop; undistort the images "
                                   "first (colmap image_undistorter), or")
    assert read_camera_file(poses, distortion="keep").extras["distortion"]["k1"] == k1
    assert read_camera_file(poses, distortion="drop").extras["distortion"] is None


def test_explore_refuses_a_path_with_a_lens(tmp_path):
    """The job's own path reader (explore's plan_path) refuses a transforms.json lens instead of running it pinhole."""
    from vdm3d.errors import CameraError
    from vdm3d.jobs.explore import ExploreConfig, plan_path

    p = _lens_file(tmp_path, "k_transforms.json", {"k1": 0.05}, {})
    with pytest.raises(CameraError, match=r"every frame has lens distortion \(k1=0.05\)"):
        plan_path(ExploreConfig(image=tmp_path / "x.png", path=p))


def test_the_refusals_command_quotes_a_path_with_spaces(tmp_path):
    """The `trajectory convert` line in the refusal is pasted into a shell: a path with a space is quoted."""
    import shlex

    from vdm3d.errors import CameraError

    (tmp_path / "my paths").mkdir()
    p = _lens_file(tmp_path / "my paths", "k_transforms.json", {"k2": -0.01}, {})
    with pytest.raises(CameraError) as e:
        read_camera_file(p)
    argv = shlex.split(str(e.value).split("`")[1])
    assert argv == ["vdm3d", "trajectory", "convert", str(p), "--distortion", "drop", "--out", "path.json"]
    assert f"convert '{p}' --distortion" in str(e.value)


def test_a_run_folder_reads_as_its_camera_file(tmp_path):
    """A vdm3d run folder, a data case or a scene folder passed where a camera file is asked for reads as
    its camera file (the run's trajectory JSON before its transforms.json); a folder with none, such as a
    dataset's root, is refused naming the files looked for and the case folder inside that has one."""
    cf = sample()
    run = tmp_path / "run"
    write_camera_file(run / "cameras" / "trajectory.json", cf)
    slow = CameraFile(Trajectory(cf.trajectory.cameras, 24.0, {}), cf.names)
    write_camera_file(run / "cameras" / "transforms.json", slow)
    back = read_camera_file(run)
    assert back.trajectory.fps == 12.0  # the trajectory JSON, not the transforms.json
    torch.testing.assert_close(back.trajectory.cameras.c2w, cf.trajectory.cameras.c2w, atol=0, rtol=0)
    case = tmp_path / "data" / "case_000003"
    write_camera_file(case / "transforms.json", cf)
    assert len(read_camera_file(case).trajectory) == 5
    with pytest.raises(InputError, match=r"holds no camera file.*case_000003 inside it has one: pass that"):
        read_camera_file(tmp_path / "data")
    with pytest.raises(InputError, match="holds no camera file"):
        read_camera_file((case / "images").mkdir() or case / "images")


def test_an_llff_scene_with_a_cameras_only_colmap_model_reads_its_poses_bounds(shared_data):
    """fern (poses_bounds.npy beside a COLMAP sparse/0 of cameras.bin and points3D.bin, no images.bin) read as
    a COLMAP model where a camera file is asked for (`vdm3d trajectory info ../shared/data/llff_fern`):
    'sparse/0: no registered images'. The scene reader takes its LLFF poses; so does camera_file_in now."""
    import numpy as np

    from vdm3d.cameras.formats import camera_file_in

    fern = shared_data / "llff_fern"
    assert camera_file_in(fern) == fern / "poses_bounds.npy"
    back = read_camera_file(fern, distortion="keep")  # its sparse/0 lens (SIMPLE_RADIAL) is refused by default
    assert len(back.trajectory) == len(np.load(fern / "poses_bounds.npy")) == 20


def test_a_run_folder_still_being_written_is_named_as_such(tmp_path):
    """`vdm3d trajectory info runs/obj` while `vdm3d object --out runs/obj` is running (only runs/.obj.partial
    exists) said 'does not exist; check the path', as if the path were mistyped."""
    cf = sample()
    write_camera_file(tmp_path / ".obj.partial" / "cameras" / "trajectory.json", cf)
    with pytest.raises(InputError, match=r"obj: does not exist yet: a run is still writing it \(in .*\.obj\.partial\); "
                                         r"wait for that run to finish, or resume it with --resume if it was stopped"):
        read_camera_file(tmp_path / "obj")
    with pytest.raises(InputError, match=r"other: does not exist; check the path"):
        read_camera_file(tmp_path / "other")
    from vdm3d.cameras.scene import load_scene  # trajectory validate --scene runs/obj

    with pytest.raises(InputError, match=r"obj: does not exist yet: a run is still writing it"):
        load_scene(tmp_path / "obj")
    with pytest.raises(InputError, match=r"obj/cameras/trajectory.json: does not exist yet: a run is still writing "
                                         r"it \(in .*\.obj\.partial\)"):
        read_camera_file(tmp_path / "obj" / "cameras" / "trajectory.json")
    from vdm3d.geometry.mesh_scene import load_mesh_scene  # stylize --mesh runs/obj/mesh.glb

    with pytest.raises(InputError, match=r"obj/mesh.glb: does not exist yet: a run is still writing it"):
        load_mesh_scene(tmp_path / "obj" / "mesh.glb")
