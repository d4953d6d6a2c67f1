"""A camera path recovered from a video: structure from motion with COLMAP (pycolmap).

Users of camera-controlled video models often want the camera motion of a clip they already have
(GEN3C and WorldWarp take one). Frames are sampled evenly from the video (or a folder of frames),
COLMAP's incremental mapper recovers the poses of the frames it can place (SIFT, sequential
matching: a video's frames overlap most with their neighbours), and the poses become a vdm3d
:class:`~vdm3d.cameras.trajectory.Trajectory` in the project's world:

* **up**: the world is turned so that the cameras' mean up direction (``-y`` of an OpenCV camera)
  is ``+z``, with the first camera's centre at the origin;
* **scale**: a video fixes no scale, so the path is scaled so that the median depth of the scene
  points COLMAP triangulated, seen from the first camera, is ``depth_median`` (2, the scale `vdm3d
  explore` gives its start image by default), and the path fits the scene `explore` builds;
* **gaps**: frames COLMAP could not place between placed ones are interpolated
  (:func:`~vdm3d.cameras.trajectory.interpolate_keyframes`); unplaced frames at the ends are cut;
* **intrinsics**: one pinhole camera for the whole video, its focal length estimated by COLMAP unless
  the field of view is given (then held fixed).

COLMAP itself is used through pycolmap rather than re-implemented: SfM is its job. The frames go to a
temporary folder, which is removed afterwards.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.trajectory import Trajectory, interpolate_keyframes
from vdm3d.errors import ConfigError, InputError
from vdm3d.io.images import check_image_file, max_image_pixels

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class VideoFrames:
    """Frames sampled from a video: RGB ``uint8 [N, H, W, 3]``, the source frame of each, the video's
    frame rate and its frame count."""

    frames: np.ndarray
    indices: list[int]
    fps: float
    total: int


@dataclasses.dataclass(frozen=True)
class SfmResult:
    """COLMAP's reconstruction of sampled frames: camera-to-world ``4x4`` poses of the placed frames (by
    sample index) in COLMAP's world, the shared intrinsics ``K [3, 3]`` at the frames' size, and the
    triangulated points ``[P, 3]``."""

    poses: dict[int, np.ndarray]
    K: np.ndarray
    points: np.ndarray
    size: tuple[int, int]  # (width, height)


def pycolmap_module():
    """pycolmap, or a one-sentence error naming the install command."""
    try:
        import pycolmap
    except ImportError:  # pragma: no cover - a dependency, but one with platform wheels only
        raise ConfigError("pycolmap is not installed; `pip install pycolmap` to run COLMAP.") from None
    return pycolmap


def read_video(path: str | Path, max_frames: int, fps: float | None = None) -> VideoFrames:
    """At most ``max_frames`` frames evenly spaced over a video file (anything OpenCV's FFmpeg reads) or a
    folder of images (in name order, at ``fps``, default 24)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path=path, problem="does not exist", fix="pass a video file or a folder of frames")
    if max_frames < 3:
        raise ConfigError(f"--frames {max_frames}: structure from motion needs at least 3 frames.")
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        keep = _evenly(len(files), max_frames)
        for i in keep:  # the pixel cap, before OpenCV decodes (its own limit is 2**30 pixels a frame)
            check_image_file(files[i], "a frame")
        frames = [cv2.imread(str(files[i]), cv2.IMREAD_COLOR) for i in keep]
        bad = [files[i].name for i, f in zip(keep, frames) if f is None]
        if bad:
            raise InputError(path=path / bad[0], problem="is not a readable image", fix="remove it from the folder")
        out = VideoFrames(_stack(frames, path), keep, float(fps or 24.0), len(files))
    else:
        cap = cv2.VideoCapture(str(path))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > max_image_pixels():  # every frame is decoded below, to count them
            cap.release()
            raise InputError(path=path, problem=f"has frames of {width}x{height} pixels, more than the "
                             f"{max_image_pixels():,} vdm3d decodes",
                             fix="resize the video (or raise VDM3D_MAX_IMAGE_PIXELS)")
        total = 0
        if cap.isOpened():
            while cap.grab():  # the container's frame count is often wrong: count by decoding
                total += 1
        if total == 0:
            cap.release()
            raise InputError(path=path, problem="is not a video OpenCV can read",
                             fix="give an MP4, MOV, AVI, MKV or WebM file, or a folder of frames")
        rate = float(fps or cap.get(cv2.CAP_PROP_FPS) or 24.0)
        cap.release()
        keep = _evenly(total, max_frames)
        wanted, frames = set(keep), []
        cap = cv2.VideoCapture(str(path))
        for i in range(total):
            if not cap.grab():
                break
            if i in wanted:
                frames.append(cap.retrieve()[1])
        cap.release()
        out = VideoFrames(_stack(frames, path), keep[:len(frames)], rate, total)
    if len(out.indices) < 3:
        raise InputError(path=path, problem=f"has {len(out.indices)} frames",
                         fix="give a video (or folder) of at least 3 frames")
    return out


def _evenly(total: int, count: int) -> list[int]:
    if total <= count:
        return list(range(total))
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, count)})


def _stack(frames: list[np.ndarray], path: Path) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise InputError(path=path, problem=f"has frames of different sizes {sorted(shapes)[:2]}",
                         fix="give frames of one size")
    return np.stack([f[..., ::-1] for f in frames]) if frames else np.zeros((0, 1, 1, 3), np.uint8)


def solve_poses(frames: np.ndarray, fov_deg: float | None = None, max_side: int = 640, overlap: int = 10,
                seed: int = 0) -> SfmResult:
    """COLMAP's incremental mapper on ``frames`` (RGB ``uint8 [N, H, W, 3]``), resized so the longer side is
    ``max_side`` (SIFT wants a few hundred pixels; intrinsics are returned at the frames' own size). One
    pinhole camera: its focal length fixed from ``fov_deg`` (horizontal), else estimated. The largest
    model is kept."""
    pycolmap = pycolmap_module()
    pycolmap.logging.minloglevel = 2  # errors only
    n, h, w = frames.shape[:3]
    s = max_side / max(h, w)
    sw, sh = max(1, round(w * s)), max(1, round(h * s))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        img_dir = root / "images"
        img_dir.mkdir()
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
        for i, f in enumerate(frames):
            cv2.imwrite(str(img_dir / f"{i:05d}.png"), cv2.resize(f, (sw, sh), interpolation=interp)[..., ::-1])
        reader = pycolmap.ImageReaderOptions()
        if fov_deg is not None:
            focal = 0.5 * sw / math.tan(math.radians(fov_deg) / 2)
            reader.camera_model = "PINHOLE"
            reader.camera_params = f"{focal:.6f},{focal:.6f},{sw / 2:.6f},{sh / 2:.6f}"
        else:
            reader.camera_model = "SIMPLE_PINHOLE"
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = 1
        db_path = root / "database.db"
        pycolmap.extract_features(db_path, img_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                                  extraction_options=extraction, device=pycolmap.Device.cpu)
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = 1
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = overlap
        pairing.loop_detection = False
        pairing.num_threads = 1
        pycolmap.match_sequential(db_path, matching_options=matching, pairing_options=pairing,
                                  device=pycolmap.Device.cpu)
        opts = pycolmap.IncrementalPipelineOptions()
        opts.num_threads = 1
        opts.random_seed = seed
        opts.multiple_models = False
        opts.ba_refine_focal_length = fov_deg is None
        opts.ba_refine_principal_point = False
        opts.ba_refine_extra_params = False
        (root / "sparse").mkdir()
        models = pycolmap.incremental_mapping(db_path, img_dir, root / "sparse", options=opts)
    if not models:
        return SfmResult({}, np.eye(3), np.zeros((0, 3)), (w, h))
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    cam = next(iter(rec.cameras.values()))
    K = np.asarray(cam.calibration_matrix(), dtype=np.float64)
    K[:2] /= s  # back to the frames' own pixels
    poses = {}
    for img in rec.images.values():
        if img.has_pose:
            w2c = np.eye(4)
            w2c[:3] = img.cam_from_world().matrix()
            poses[int(Path(img.name).stem)] = np.linalg.inv(w2c)
    points = np.asarray([p.xyz for p in rec.points3D.values()], dtype=np.float64).reshape(-1, 3)
    return SfmResult(poses, K, points, (w, h))


def to_trajectory(sfm: SfmResult, count: int, fps: float, depth_median: float = 2.0,
                  source: str = "") -> Trajectory:
    """The placed poses of ``count`` sampled frames as a trajectory in the project's world (see the module
    docstring): z up, the first placed camera at the origin, scaled to ``depth_median``, gaps filled."""
    ids = sorted(sfm.poses)
    if len(ids) < 3 or len(ids) < count / 2:
        raise InputError(path=source or "the video", problem=f"gave COLMAP only {len(ids)} of {count} frames it "
                         "could place", fix="give a video with more texture and camera motion (a turn in "
                         "place has no parallax), more frames (--frames), or its field of view (--fov-deg)")
    c2w = np.stack([sfm.poses[i] for i in ids])
    up = upright(c2w)
    turn = Rotation.align_vectors([[0.0, 0.0, 1.0]], [up])[0].as_matrix()  # the smallest turn taking up to +z
    origin = c2w[0, :3, 3].copy()
    depth = _first_camera_depths(sfm.points, c2w[0])
    by_points = len(depth) >= 10  # else the path keeps COLMAP's arbitrary scale
    scale = depth_median / float(np.median(depth)) if by_points else 1.0
    moved = c2w.copy()
    moved[:, :3, :3] = turn @ c2w[:, :3, :3]
    moved[:, :3, 3] = scale * (c2w[:, :3, 3] - origin) @ turn.T
    w, h = sfm.size
    K = torch.tensor(sfm.K, dtype=torch.float64).expand(len(ids), 3, 3)
    placed = Cameras(K, torch.tensor(moved), w, h)
    span = ids[-1] - ids[0] + 1
    if span > len(ids):  # fill the frames COLMAP missed between placed ones
        cams = interpolate_keyframes(placed, span, times=[i - ids[0] for i in ids], constant_speed=False,
                                     fps=fps).cameras
    else:
        cams = placed
    provenance = {"generator": "from-video", "video": source, "frames_sampled": count,
                  "frames_placed": len(ids), "frames_interpolated": span - len(ids),
                  "frames_cut_at_ends": count - span,
                  "fov_deg": float(placed.fov_x_deg[0]), "fov_deg_square_crop": float(placed.square_fov_deg[0]),
                  "depth_median": depth_median, "scaled_by_points": by_points}
    return Trajectory(cams.to(torch.float64), fps, provenance)


def upright(c2w: np.ndarray) -> np.ndarray:
    """The world's up direction seen by cameras ``c2w [N, 4, 4]`` held level (no roll): a level camera's x
    axis is horizontal, so up is the direction normal to every x axis when the camera pans; when it does
    not, the cameras' mean up (``-y``, OpenCV) made normal to their shared x axis. The mean up alone
    would lean towards where a pitched camera looks. Rolling cameras fall back to the mean up."""
    mean_up = -c2w[:, :3, 1].mean(0)
    mean_up /= np.linalg.norm(mean_up)
    x = c2w[:, :3, 0]
    vals, vecs = np.linalg.eigh(x.T @ x / len(x))  # ascending
    if vals[0] > 0.02:  # no direction normal to every x axis: the cameras roll
        return mean_up
    if vals[0] < 0.1 * vals[1]:  # the x axes turn (the camera pans): one normal direction
        up = vecs[:, 0]
    else:  # one x axis for all: up is somewhere in the plane normal to it
        up = vecs[:, :2] @ (vecs[:, :2].T @ mean_up)
    norm = np.linalg.norm(up)
    return up / norm * np.sign(up @ mean_up) if norm > 1e-6 else mean_up


def _first_camera_depths(points: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    z = (points - c2w[:3, 3]) @ c2w[:3, 2]
    return z[z > 0]


def trajectory_from_video(path: str | Path, max_frames: int = 48, fov_deg: float | None = None,
                          depth_median: float = 2.0, max_side: int = 640, overlap: int = 10, seed: int = 0,
                          fps: float | None = None) -> tuple[Trajectory, np.ndarray]:
    """The camera path of a video (see the module docstring; its fps is the video's over the sampling
    step), and the frame its first camera saw (RGB ``uint8 [H, W, 3]``: the image to start `explore` from)."""
    video = read_video(path, max_frames, fps)
    sfm = solve_poses(video.frames, fov_deg, max_side, overlap, seed)
    step = (video.indices[-1] - video.indices[0]) / max(len(video.indices) - 1, 1) or 1.0
    traj = to_trajectory(sfm, len(video.indices), video.fps / step, depth_median, str(path))
    first = min(sfm.poses)
    traj.provenance["first_video_frame"] = video.indices[first]
    return traj, video.frames[first]


__all__ = ["SfmResult", "VideoFrames", "pycolmap_module", "read_video", "solve_poses", "to_trajectory",
           "trajectory_from_video", "upright"]
