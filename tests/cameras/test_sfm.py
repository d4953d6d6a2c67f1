"""`vdm3d trajectory make from-video`: the path of a rendered walk comes back from its MP4; gaps, up and bad input."""

import math

import cv2
import numpy as np
import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.cameras.formats import read_camera_file
from vdm3d.cameras.sfm import SfmResult, to_trajectory, upright
from vdm3d.cli.main import main as cli
from vdm3d.errors import InputError
from vdm3d.geometry.mesh_render import render_buffers
from vdm3d.geometry.mesh_scene import MeshScene, Part
from vdm3d.metrics.colmap_poses import align_similarity, pose_errors

UP = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)


def noise_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Multi-scale value noise: texture SIFT can match without ambiguity (checkerboards repeat)."""
    img = sum(cv2.resize(rng.random((size // c + 1, size // c + 1, 3)).astype(np.float32), (size, size),
                         interpolation=cv2.INTER_CUBIC) for c in (4, 8, 16, 32))
    img = (img - img.min()) / (img.max() - img.min())
    return (img * 255).astype(np.uint8)


def noise_room(lx: float = 4.0, ly: float = 4.0, hz: float = 2.5) -> MeshScene:
    """Floor and four walls of a box, wound towards the inside, each with its own noise texture."""
    rng = np.random.default_rng(0)
    x, y = lx / 2, ly / 2
    quads = [[(-x, -y, 0), (x, -y, 0), (x, y, 0), (-x, y, 0)], [(-x, y, 0), (x, y, 0), (x, y, hz), (-x, y, hz)],
             [(x, -y, 0), (-x, -y, 0), (-x, -y, hz), (x, -y, hz)], [(x, y, 0), (x, -y, 0), (x, -y, hz), (x, y, hz)],
             [(-x, -y, 0), (-x, y, 0), (-x, y, hz), (-x, -y, hz)]]
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    return MeshScene([Part.make(np.array(q, np.float32), np.array([[0, 1, 2], [0, 2, 3]]), uv=uv,
                                texture=noise_texture(rng), instance_id=k + 1) for k, q in enumerate(quads)])


def walk(n: int = 24, size: int = 256, fov: float = 70.0) -> Cameras:
    """A level walk at 1.4 m that pans and tilts: cameras without roll."""
    c2w = []
    for i in range(n):
        t = i / (n - 1)
        eye = torch.tensor([-0.8 + 1.2 * t, -1.2 + 0.6 * t, 1.4], dtype=torch.float64)
        target = torch.tensor([0.6 * math.sin(1.2 * t), 2.0, 1.0 + 0.3 * t], dtype=torch.float64)
        c2w.append(look_at(eye, target, UP))
    return Cameras.from_fov(fov, size, size, torch.stack(c2w))


def write_video(path, frames: torch.Tensor, fps: float = 24.0) -> None:
    h, w = frames.shape[1:3]
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        out.write((f.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., ::-1])
    out.release()


@pytest.mark.slow
def test_a_rendered_walk_comes_back_from_its_video(tmp_path, capsys):
    scene, cams = noise_room(), walk()
    rgb = render_buffers(scene, cams).rgb
    write_video(tmp_path / "walk.mp4", rgb)
    assert cli(["trajectory", "make", "from-video", "--video", str(tmp_path / "walk.mp4"), "--max-side", "384",
                "--out", str(tmp_path / "walk.json"), "--first-frame", str(tmp_path / "start.png")]) == 0
    assert "placed 24 of 24 frames" in capsys.readouterr().out
    start = torch.from_numpy(cv2.imread(str(tmp_path / "start.png"))[..., ::-1].copy()).float() / 255
    assert float(-10 * torch.log10(((start - rgb[0]) ** 2).mean())) > 25  # the first frame, through mp4v
    traj = read_camera_file(tmp_path / "walk.json").trajectory
    c2w = traj.cameras.c2w.double().numpy()
    assert traj.provenance["generator"] == "from-video"
    assert len(traj) == 24 and traj.fps == pytest.approx(24.0)
    # the poses, up to one similarity: COLMAP's accuracy on clean frames
    err = pose_errors({i: c2w[i] for i in range(24)}, cams)
    assert err["rotation_deg"] < 0.5 and err["translation_rel"] < 0.02
    assert float(traj.cameras.fov_x_deg[0]) == pytest.approx(70.0, abs=1.5)  # focal length estimated
    # the project's world: first camera at the origin, z up (a level walk stays at height 0), and scaled so
    # the scene's median depth from the first camera is 2 (the sparse points' median, within 10 % of the
    # rendered depth's)
    assert np.abs(c2w[0, :3, 3]).max() < 1e-9
    extent = np.linalg.norm(c2w[:, :3, 3], axis=-1).max()
    assert np.abs(c2w[:, 2, 3]).max() < 0.02 * extent
    d0 = render_buffers(scene, cams[[0]]).depth[0]
    scale, _, _ = align_similarity(cams.c2w.numpy(), c2w)
    assert scale == pytest.approx(2.0 / float(d0[d0 > 0].median()), rel=0.1)


def _poses(cams: Cameras) -> dict[int, np.ndarray]:
    return {i: cams.c2w[i].double().numpy() for i in range(len(cams))}


def test_frames_colmap_missed_are_interpolated_and_unplaced_ends_cut():
    cams = walk(12)
    poses = _poses(cams)
    for i in (0, 5, 6, 11):  # the ends and two in the middle are missing
        del poses[i]
    rng = np.random.default_rng(1)
    points = np.array([0.0, 3.0, 1.2]) + rng.normal(0, 0.3, (200, 3))
    sfm = SfmResult(poses, cams.Ks[0].double().numpy(), points, (256, 256))
    traj = to_trajectory(sfm, 12, 24.0, depth_median=2.0)
    assert len(traj) == 10 and traj.provenance["frames_interpolated"] == 2
    assert traj.provenance["frames_cut_at_ends"] == 2
    # frames 5 and 6 lie between their placed neighbours 4 and 7, in the same turned and scaled world
    c = traj.cameras.centers.double().numpy()  # indices 0..9 are frames 1..10
    step = np.linalg.norm(c[3] - c[6])
    assert np.linalg.norm(c[4] - c[3]) < step and np.linalg.norm(c[5] - c[6]) < step
    true = cams.centers.double().numpy()[1:11]
    scale = np.linalg.norm(c[-1] - c[0]) / np.linalg.norm(true[-1] - true[0])
    assert np.allclose(np.linalg.norm(c - c[0], axis=-1), scale * np.linalg.norm(true - true[0], axis=-1), atol=0.02)


def test_upright_ignores_where_pitched_cameras_look():
    """Level cameras looking down by 30 degrees: their mean -y leans forward; the x axes do not."""
    c2w = torch.stack([look_at(torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64),
                               torch.tensor([math.cos(a), math.sin(a), 2.0 - math.tan(math.radians(30))],
                                            dtype=torch.float64), UP) for a in np.linspace(0, 0.6, 8)])
    turn = torch.tensor([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64)  # a y-up world
    c2w[:, :3] = turn @ c2w[:, :3]
    up = upright(c2w.numpy())
    assert np.allclose(up, turn.numpy() @ np.array([0.0, 0.0, 1.0]), atol=1e-6)
    mean_up = -c2w[:, :3, 1].mean(0).numpy()
    assert math.degrees(math.acos(mean_up @ up / np.linalg.norm(mean_up))) > 20  # what the mean alone gives


def test_too_few_placed_frames_is_one_sentence():
    cams = walk(12)
    sfm = SfmResult({0: _poses(cams)[0], 1: _poses(cams)[1]}, np.eye(3), np.zeros((0, 3)), (256, 256))
    with pytest.raises(InputError, match="clip.mp4: gave COLMAP only 2 of 12 frames it could place; give a video"):
        to_trajectory(sfm, 12, 24.0, source="clip.mp4")


@pytest.mark.parametrize("content, expected", [("text", "is not a video OpenCV can read"), (None, "does not exist")])
def test_bad_video_exits_2_and_writes_nothing(tmp_path, capsys, content, expected):
    video = tmp_path / "clip.mp4"
    if content is not None:
        video.write_text(content)
    out = tmp_path / "path.json"
    assert cli(["trajectory", "make", "from-video", "--video", str(video), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_a_still_video_cannot_be_placed(tmp_path, capsys):
    """No camera motion, no parallax: COLMAP places nothing, and the user is told what to give."""
    frame = render_buffers(noise_room(), walk(2, size=96)[[0]]).rgb
    write_video(tmp_path / "still.mp4", frame.expand(8, -1, -1, -1))
    assert cli(["trajectory", "make", "from-video", "--video", str(tmp_path / "still.mp4"),
                "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert "frames it could place" in err and "camera motion" in err
    assert not (tmp_path / "p.json").exists()


def test_the_square_crop_field_of_view_is_printed_for_explore():
    """A 2:1 video: explore crops the centre square, whose horizontal fov is the video's vertical one."""
    cams = walk(6)
    wide = Cameras.from_fov(90.0, 512, 256, cams.c2w)
    sfm = SfmResult(_poses(wide), wide.Ks[0].double().numpy(), np.zeros((0, 3)), (512, 256))
    p = to_trajectory(sfm, 6, 24.0).provenance
    assert p["fov_deg"] == pytest.approx(90.0)
    assert p["fov_deg_square_crop"] == pytest.approx(math.degrees(2 * math.atan(0.5)))


def test_a_folder_of_frames_is_read_in_name_order_and_sampled_evenly(tmp_path):
    from vdm3d.cameras.sfm import read_video

    for i in range(10):
        cv2.imwrite(str(tmp_path / f"f{i:02d}.png"), np.full((8, 12, 3), (0, 0, 10 * i), np.uint8))  # BGR: red = 10 i
    (tmp_path / "notes.txt").write_text("not a frame")
    video = read_video(tmp_path, max_frames=4, fps=30.0)
    assert video.indices == [0, 3, 6, 9] and video.total == 10 and video.fps == 30.0
    assert video.frames.shape == (4, 8, 12, 3) and video.frames[:, 0, 0, 0].tolist() == [0, 30, 60, 90]  # RGB
    cv2.imwrite(str(tmp_path / "f99.png"), np.zeros((9, 12, 3), np.uint8))
    with pytest.raises(InputError, match="has frames of different sizes"):
        read_video(tmp_path, max_frames=20)


def test_frames_and_videos_past_the_pixel_cap_are_refused_before_decoding(tmp_path, monkeypatch, capsys):
    """`trajectory make from-video` decoded a folder's frames with cv2.imread and every frame of a video, under
    OpenCV's own limit of 2**30 pixels a frame, not vdm3d's cap: a folder of PNG bombs was decoded in full."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), np.full((40, 60, 3), 30 * i, np.uint8))
    write_video(tmp_path / "clip.mp4", torch.rand(4, 48, 64, 3))
    monkeypatch.setenv("VDM3D_MAX_IMAGE_PIXELS", "2000")
    for source, said in ((frames, f"{frames / 'f0.png'}: claims 60x40 pixels in its header, more than the 2,000 "
                                  "vdm3d decodes; resize the image (or raise VDM3D_MAX_IMAGE_PIXELS)."),
                         (tmp_path / "clip.mp4", f"{tmp_path / 'clip.mp4'}: has frames of 64x48 pixels, more than "
                                                 "the 2,000 vdm3d decodes; resize the video (or raise "
                                                 "VDM3D_MAX_IMAGE_PIXELS).")):
        assert cli(["trajectory", "make", "from-video", "--video", str(source), "--out", str(tmp_path / "p.json")]) == 2
        assert capsys.readouterr().err.strip() == f"error: {said}"
    assert not (tmp_path / "p.json").exists()


@pytest.mark.slow
def test_fern_photos_give_the_published_llff_poses(shared_data, tmp_path):
    """Real photos: the 20 fern images (a folder, in name order) against LLFF's own poses_bounds.npy."""
    fern = shared_data / "llff_fern"
    assert cli(["trajectory", "make", "from-video", "--video", str(fern / "images_8"), "--frames", "20",
                "--out", str(tmp_path / "fern.json")]) == 0
    got = read_camera_file(tmp_path / "fern.json").trajectory.cameras
    ref = read_camera_file(fern / "poses_bounds.npy", width=504, height=378,  # poses compared, not the lens
                           distortion="keep").trajectory.cameras
    c2w = got.c2w.double().numpy()
    err = pose_errors({i: c2w[i] for i in range(len(c2w))}, ref)
    assert err["registered"] == 1.0 and err["rotation_deg"] < 0.5 and err["translation_rel"] < 0.01
    assert float(got.fov_x_deg[0]) == pytest.approx(float(ref.fov_x_deg[0]), abs=0.5)
