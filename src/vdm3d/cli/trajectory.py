"""``vdm3d trajectory``: make, convert, validate, preview and inspect camera paths.

Examples: :data:`EXAMPLES` and :data:`MAKE_EXAMPLES`, printed at the end of ``--help``.

Every flag comes from the config dataclasses below (tyro); a field's docstring is its help.
Single-file outputs are written atomically and COLMAP folders through a run folder, so a failure
leaves nothing behind. Bad input exits with status 2 and one sentence; ``validate`` exits with 1
when the path has problems against the scene.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional, Sequence

import tyro

from vdm3d.cameras.extend import ExtendMode
from vdm3d.cameras.formats import CameraFormat
from vdm3d.cameras.presets import PRESETS
from vdm3d.errors import ConfigError, InputError
from vdm3d.options import SEED, Range

HELP = ("make, convert, validate, preview and inspect camera paths (orbits, presets, a video's own path, COLMAP, "
        "RE10K, ...)")

#: one example per kind, in an order that runs from an empty folder (keyframes, spiral and extend read
#: the files the lines above them write); `vdm3d trajectory make KIND --help` ends with its own line
MAKE_EXAMPLES = {
    "orbit": "vdm3d trajectory make orbit --frames 36 --radius 2.5 --elevation-deg 20 --out orbit.json",
    "sv3d": "vdm3d trajectory make sv3d --dynamic --seed 3 --out sv3d.json      # SV3D_p's 21 views, wobbling",
    "v3d": "vdm3d trajectory make v3d --out v3d.json                           # V3D's 18 views",
    "move": "vdm3d trajectory make move --presets dolly-in pan-left --frames 81 --out walk.json",
    "keyframes": "vdm3d trajectory make keyframes --keyframes sv3d.json --frames 120 --closed --out smooth.json",
    "spiral": "vdm3d trajectory make spiral --cameras walk.json --focus-depth 3 --frames 60 --out spiral.json",
    "extend": "vdm3d trajectory make extend --input walk.json --extra-frames 24 --mode slowdown --out walk_long.json",
    "from-video": "vdm3d trajectory make from-video --video drone.mp4 --frames 49 --out drone.json --first-frame drone.png",
}
#: the kinds whose example reads the file another kind's example writes: their page shows that line first
MAKE_NEEDS = {"keyframes": ("sv3d",), "spiral": ("move",), "extend": ("move",)}
#: what the examples read that no example writes
MAKE_INPUTS = ("inputs: drone.mp4 is a video of yours (or a folder of its frames); from-video needs COLMAP "
               "(`colmap` on the PATH).")
#: the examples of `vdm3d trajectory --help`, runnable in this order from an empty folder; the page of a
#: subcommand shows the lines that make its input and its own
EXAMPLES = {
    "make": MAKE_EXAMPLES["orbit"],
    "info": "vdm3d trajectory info orbit.json                                   # frames, fps, fov, path length",
    "data": "vdm3d data make objects --count 1 --out objects                    # a mesh to check the path against",
    "validate": "vdm3d trajectory validate orbit.json --scene objects/case_000000/mesh.glb  # cameras vs geometry",
    "preview": "vdm3d trajectory preview orbit.json --out orbit.png --scene objects/case_000000/mesh.glb",
    "convert": "vdm3d trajectory convert orbit.json --out transforms.json         # nerfstudio; .txt: RE10K, a folder: COLMAP",
}
#: the lines of EXAMPLES each subcommand's page shows
SUB_PAGES = {"convert": ("make", "convert"), "validate": ("make", "data", "validate"),
             "preview": ("make", "data", "preview"), "info": ("make", "info")}
SCENE_NOTE = "--scene takes any mesh (GLB/OBJ) or point cloud (PLY) of the scene."


def _examples(lines, note: str = "") -> str:
    return (f"{note}\n\n" if note else "") + "examples:\n" + "\n".join(f"  {line}" for line in lines)


PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Out:
    out: Path
    """Output file: .json (vdm3d trajectory; a name containing "transforms" writes nerfstudio transforms.json), .txt (RealEstate10K), or a folder (COLMAP)."""
    overwrite: bool = False
    """Replace --out if it already exists."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Orbit(_Out):
    """A circle around a target (world z up), evenly spaced cameras looking at it."""

    frames: Annotated[int, Range(1)] = 36
    """Number of cameras."""
    radius: Annotated[float, Range(0, open_min=True)] = 2.5
    """Distance from the center, scene units."""
    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 20.0
    """Height angle above the horizontal plane, degrees."""
    fov_deg: Annotated[float, Range(0, 180, open_min=True, open_max=True)] = 50.0
    """Horizontal field of view, degrees."""
    width: Annotated[int, Range(1)] = 512
    """Image width, pixels."""
    height: Annotated[int, Range(1)] = 512
    """Image height, pixels."""
    turns: Annotated[float, Range()] = 1.0
    """Number of full turns."""
    start_azimuth_deg: Annotated[float, Range()] = 0.0
    """Azimuth of the first camera (0 = on the +x axis, counter-clockwise seen from above)."""
    target: Annotated[tuple[float, float, float], Range()] = (0.0, 0.0, 0.0)
    """Point the cameras circle and look at (x y z)."""
    fps: Annotated[float, Range(0, open_min=True)] = 24.0
    """Frames per second of the path."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sv3d(_Out):
    """SV3D's 21-view orbit (input view last): static (constant elevation) or --dynamic (seeded wobble)."""

    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 10.0
    """Elevation of the orbit (static) or its mean level (dynamic), degrees."""
    dynamic: bool = False
    """Use SV3D's dynamic orbit: random smooth elevation and uneven azimuth steps."""
    seed: Annotated[int, SEED] = 0
    """Seed of the dynamic orbit."""
    frames: Annotated[int, Range(1)] = 21
    """Number of views (SV3D: 21)."""
    radius: Annotated[float, Range(0, open_min=True)] = 2.0
    """Camera distance for reconstruction, scene units."""
    fov_deg: Annotated[float, Range(0, 180, open_min=True, open_max=True)] = 33.8
    """Field of view for reconstruction, degrees."""
    width: Annotated[int, Range(1)] = 576
    """Image width, pixels."""
    height: Annotated[int, Range(1)] = 576
    """Image height, pixels."""
    fps: Annotated[float, Range(0, open_min=True)] = 7.0
    """Frames per second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class V3d(_Out):
    """V3D's reconstruction cameras: 18 views in 20-degree steps, radius 2, fov 60, 512x512."""

    frames: Annotated[int, Range(1)] = 18
    """Number of views."""
    radius: Annotated[float, Range(0, open_min=True)] = 2.0
    """Camera distance, scene units."""
    elevation_deg: Annotated[float, Range(-90, 90, open_min=True, open_max=True)] = 0.0
    """Elevation, degrees."""
    fov_deg: Annotated[float, Range(0, 180, open_min=True, open_max=True)] = 60.0
    """Field of view, degrees."""
    size: Annotated[int, Range(1)] = 512
    """Image width and height, pixels."""
    fps: Annotated[float, Range(0, open_min=True)] = 3.0
    """Frames per second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spiral(_Out):
    """LLFF's spiral around the average of forward-facing cameras (needs near/far bounds or --focus-depth)."""

    cameras: Path
    """Input cameras (poses_bounds.npy gives bounds; any camera file with --focus-depth)."""
    frames: Annotated[int, Range(1)] = 120
    """Number of cameras on the spiral."""
    rotations: Annotated[float, Range()] = 2.0
    """Turns of the spiral."""
    zrate: Annotated[float, Range()] = 0.5
    """Forward/backward oscillation rate relative to the turns."""
    focus_depth: Annotated[Optional[float], Range(0, open_min=True)] = None
    """Distance ahead that every camera looks at (default: from LLFF bounds)."""
    width: Annotated[Optional[int], Range(1)] = None
    """Image width, pixels (LLFF: rescales focal length)."""
    height: Annotated[Optional[int], Range(1)] = None
    """Image height, pixels."""
    fps: Annotated[float, Range(0, open_min=True)] = 30.0
    """Frames per second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Keyframes(_Out):
    """A smooth path through keyframe cameras: slerp rotations, C2 spline positions, interpolated fov."""

    keyframes: Path
    """Camera file with the keyframes, in order."""
    frames: Annotated[int, Range(2)] = 120
    """Number of output cameras."""
    constant_speed: bool = True
    """Space cameras at equal distances along the path (else equally in keyframe time)."""
    closed: bool = False
    """Return to the first keyframe (periodic spline)."""
    fps: Annotated[float, Range(0, open_min=True)] = 24.0
    """Frames per second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Move(_Out):
    """Camera-rig movements (dolly, pan, tilt, orbit, truck, pedestal, zoom) from a start camera, composable."""

    presets: tuple[PresetName, ...] = ("dolly-in",)
    """Movements to combine, applied every frame."""
    speed: Annotated[float, Range(0, open_min=True)] = 1.0
    """Multiplier on the presets' per-frame speeds."""
    frames: Annotated[int, Range(1)] = 49
    """Number of cameras, the start included."""
    start: Optional[Path] = None
    """Camera file whose --start-index camera starts the path (default: at the origin looking along +z)."""
    start_index: int = -1
    """Which camera of --start to start from (-1: the last)."""
    fov_deg: Annotated[float, Range(0, 180, open_min=True, open_max=True)] = 60.0
    """Field of view without --start, degrees."""
    width: Annotated[int, Range(1)] = 512
    """Image width without --start, pixels."""
    height: Annotated[int, Range(1)] = 512
    """Image height without --start, pixels."""
    fps: Annotated[float, Range(0, open_min=True)] = 24.0
    """Frames per second."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Extend(_Out):
    """Add frames after the end of a path: extrapolate, loop, pingpong or slowdown."""

    input: Path
    """Camera file to extend."""
    extra_frames: Annotated[int, Range(1)] = 24
    """Number of frames to add."""
    mode: ExtendMode = "extrapolate"
    """How to continue the motion."""
    decay: Annotated[float, Range(0, 1)] = 0.95
    """slowdown: step multiplier per frame."""
    floor: Annotated[float, Range(0, 1)] = 0.1
    """slowdown: smallest step, relative to the first."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class FromVideo(_Out):
    """The camera path of a video you have (structure from motion with COLMAP): z up, the first camera at the origin, scaled so the scene's median depth from it is --depth-median (as `vdm3d explore` scales its image)."""

    video: Path
    """Video file (MP4, MOV, AVI, MKV, WebM: what OpenCV's FFmpeg reads) or a folder of frames."""
    frames: Annotated[int, Range(3)] = 48
    """Most frames to sample, evenly over the video (each becomes a camera)."""
    fov_deg: Annotated[Optional[float], Range(0, 180, open_min=True, open_max=True)] = None
    """The video's horizontal field of view, if known (held fixed); default: estimated by COLMAP."""
    depth_median: Annotated[float, Range(0, open_min=True)] = 2.0
    """Median depth of the scene from the first camera, in path units (explore's --depth-median)."""
    max_side: Annotated[int, Range(64)] = 640
    """Frames are resized to this longer side for COLMAP (intrinsics are written at the video's size)."""
    overlap: Annotated[int, Range(1)] = 10
    """Each frame is matched with this many following frames."""
    fps: Annotated[Optional[float], Range(0, open_min=True)] = None
    """Frame rate of a folder of frames (a video's own rate is read from the file)."""
    first_frame: Optional[Path] = None
    """Also write the video frame the path's first camera saw (PNG/JPEG): the image to start `vdm3d explore` from."""
    seed: Annotated[int, SEED] = 0
    """COLMAP's random seed."""


MAKE = {"orbit": Orbit, "sv3d": Sv3d, "v3d": V3d, "spiral": Spiral, "keyframes": Keyframes, "move": Move,
        "extend": Extend, "from-video": FromVideo}


@dataclasses.dataclass(frozen=True)
class Convert:
    """Convert cameras between vdm3d, transforms.json, COLMAP, RealEstate10K and LLFF (read-only)."""

    input: tyro.conf.Positional[Path]
    """Camera file or COLMAP folder to read."""
    out: Path
    """Where to write (format from the name unless --to)."""
    from_format: CameraFormat = "auto"
    """Input format (auto: from the suffix and content)."""
    to: CameraFormat = "auto"
    """Output format (auto: .json vdm3d, *transforms*.json nerfstudio, .txt RE10K, folder COLMAP)."""
    width: Optional[int] = None
    """Image width for formats without one (RE10K: the one with square pixels, 640 for 16:9) or to rescale LLFF."""
    height: Optional[int] = None
    """Image height for formats without one (RE10K: 360, or the one with square pixels at --width) or to rescale LLFF."""
    distortion: Literal["refuse", "drop"] = "refuse"
    """Input with lens distortion (a COLMAP model's, transforms.json k1..p2, or the COLMAP lens in sparse/0 beside
    LLFF poses): refuse to write it to a format without it (a transforms.json keeps it, OPENCV), or drop it and
    write the pinhole cameras (images already undistorted), the path every job then accepts."""
    colmap_text: bool = False
    """Write COLMAP as text instead of binary."""
    overwrite: bool = False
    """Replace --out if it already exists."""


@dataclasses.dataclass(frozen=True)
class Validate:
    """Check a camera file (finite, orthonormal, positive focal lengths) and, with --scene, each frame against the geometry."""

    input: tyro.conf.Positional[Path]
    """Camera file to check."""
    from_format: CameraFormat = "auto"
    """Input format."""
    scene: Optional[Path] = None
    """Scene geometry: points (.npz/.npy/COLMAP), splat or point PLY, or mesh (.obj/.glb/.ply)."""
    scene_up: Literal["auto", "y", "z"] = "auto"
    """Up axis of a --scene mesh (auto: y for .glb/.gltf/.obj, turned to vdm3d's z-up; z otherwise)."""
    min_distance: Optional[float] = None
    """Closest allowed distance to geometry (default: 2% of the scene size)."""
    min_coverage: Annotated[float, Range(0, 1)] = 0.05
    """Smallest allowed fraction of the image that sees known content."""
    ignore_inside: bool = False
    """Do not flag cameras inside geometry (for point clouds of rooms; a mesh room whose walls face the cameras is
    not flagged anyway: the winding number is signed)."""
    report: Optional[Path] = None
    """Also write the per-frame report as JSON here."""
    overwrite: bool = False
    """Replace --report if it already exists."""


@dataclasses.dataclass(frozen=True)
class Preview:
    """Draw the camera frusta over the scene (top and side views) into a PNG."""

    input: tyro.conf.Positional[Path]
    """Camera file to draw."""
    out: Path
    """PNG to write."""
    scene: Optional[Path] = None
    """Scene geometry drawn underneath (points, PLY, mesh, COLMAP)."""
    scene_up: Literal["auto", "y", "z"] = "auto"
    """Up axis of a --scene mesh (auto: y for .glb/.gltf/.obj, turned to vdm3d's z-up; z otherwise)."""
    from_format: CameraFormat = "auto"
    """Input format."""
    title: str = ""
    """Figure title (default: file name and frame count)."""
    overwrite: bool = False
    """Replace --out if it already exists."""


@dataclasses.dataclass(frozen=True)
class Info:
    """Print a summary of a camera file: frames, fps, image size, field of view, path length, extent."""

    input: tyro.conf.Positional[Path]
    """Camera file to describe."""
    from_format: CameraFormat = "auto"
    """Input format."""
    json: bool = False
    """Print JSON instead of text."""


def make() -> None:
    """Make a trajectory: orbit, sv3d, v3d, spiral, keyframes, move, extend, from-video (see `vdm3d trajectory make --help`)."""


COMMANDS = {"make": make, "convert": Convert, "validate": Validate, "preview": Preview, "info": Info}


def _check_out(out: Path, overwrite: bool, option: str = "--out") -> None:
    from vdm3d.io.runs import check_new_output, check_run_place

    check_run_place(out)  # '--out .' said "already exists; pass --overwrite", which then failed on its own
    check_new_output(out, overwrite, option)


def _make(cfg) -> int:
    import torch

    from vdm3d.cameras import trajectory as T
    from vdm3d.cameras.camera import Cameras
    from vdm3d.cameras.extend import extend_trajectory
    from vdm3d.cameras.formats import CameraFile, read_camera_file
    from vdm3d.cameras.presets import apply_movements, preset_movements
    from vdm3d.io.runs import to_jsonable

    _check_out(cfg.out, cfg.overwrite)
    names = None
    if isinstance(cfg, Orbit):
        traj = T.orbit(cfg.frames, cfg.radius, cfg.elevation_deg, cfg.fov_deg, cfg.width, cfg.height,
                       cfg.start_azimuth_deg, cfg.turns, cfg.target, fps=cfg.fps, dtype=torch.float64)
    elif isinstance(cfg, Sv3d):
        fn = T.sv3d_dynamic_orbit if cfg.dynamic else T.sv3d_static_orbit
        kw = dict(seed=cfg.seed) if cfg.dynamic else {}
        traj = fn(cfg.elevation_deg, cfg.frames, radius=cfg.radius, fov_deg=cfg.fov_deg, width=cfg.width,
                  height=cfg.height, fps=cfg.fps, **kw)
    elif isinstance(cfg, V3d):
        traj = T.v3d_orbit(cfg.frames, cfg.radius, cfg.elevation_deg, cfg.fov_deg, cfg.size, cfg.size, cfg.fps)
    elif isinstance(cfg, Spiral):
        src = _poses_of(cfg.cameras, read_camera_file(cfg.cameras, width=cfg.width, height=cfg.height,
                                                      distortion="keep"))
        bounds = src.trajectory.provenance.get("bounds")
        if bounds is None and cfg.focus_depth is None:
            raise ConfigError(f"{cfg.cameras}: has no near/far bounds (only LLFF poses_bounds.npy does), so the "
                              "spiral's focus is unknown; pass --focus-depth D (the distance the cameras look at).")
        traj = T.llff_spiral(src.trajectory.cameras, None if bounds is None else torch.tensor(bounds), cfg.frames,
                             cfg.rotations, cfg.zrate, focus_depth=cfg.focus_depth, fps=cfg.fps)
    elif isinstance(cfg, Keyframes):
        src = _poses_of(cfg.keyframes, read_camera_file(cfg.keyframes, distortion="keep"))
        if len(src.trajectory) < 2:
            raise InputError(f"--keyframes {cfg.keyframes} has 1 camera; a path through keyframes needs at least 2, "
                             "so add another keyframe to the file.", path=cfg.keyframes)
        traj = T.interpolate_keyframes(src.trajectory.cameras, cfg.frames, constant_speed=cfg.constant_speed,
                                       closed=cfg.closed, fps=cfg.fps)
    elif isinstance(cfg, Move):
        if cfg.start is not None:
            cams = _poses_of(cfg.start, read_camera_file(cfg.start, distortion="keep")).trajectory.cameras
            if not -len(cams) <= cfg.start_index < len(cams):
                raise InputError(path=cfg.start, field="--start-index",
                                 problem=f"{cfg.start_index} is out of range for {len(cams)} cameras", fix="pick another")
            start = cams[cfg.start_index]
        else:
            start = Cameras.from_fov(cfg.fov_deg, cfg.width, cfg.height, torch.eye(4, dtype=torch.float64))
        moves = preset_movements(cfg.presets, cfg.speed)
        traj = T.Trajectory(apply_movements(start, moves, cfg.frames), cfg.fps,
                            {"generator": "move", "presets": list(cfg.presets), "speed": cfg.speed,
                             "movements": to_jsonable(moves)})
    elif isinstance(cfg, FromVideo):
        from vdm3d.cameras.sfm import trajectory_from_video
        from vdm3d.io.images import write_image

        if cfg.first_frame is not None:
            _check_out(cfg.first_frame, cfg.overwrite, "--first-frame")
            if cfg.first_frame.suffix.lower() not in (".png", ".jpg", ".jpeg"):
                raise InputError(path=cfg.first_frame, field="--first-frame", problem="is not a .png or .jpg name",
                                 fix="name a PNG or JPEG file")
        traj, first = trajectory_from_video(cfg.video, cfg.frames, cfg.fov_deg, cfg.depth_median, cfg.max_side,
                                            cfg.overlap, cfg.seed, cfg.fps)
        p = traj.provenance
        print(f"COLMAP placed {p['frames_placed']} of {p['frames_sampled']} frames ({p['frames_interpolated']} "
              f"interpolated, {p['frames_cut_at_ends']} cut at the ends); field of view {p['fov_deg']:.1f} deg")
        if cfg.first_frame is not None:
            write_image(cfg.first_frame, first)
            explore = f"vdm3d explore --image {cfg.first_frame} --path {cfg.out}"
            print(f"wrote {cfg.first_frame}: video frame {p['first_video_frame']}, the path's first camera "
                  f"({explore}: explore crops the image to its centre square, which sees "
                  f"{p['fov_deg_square_crop']:.1f} deg across, and reads that from the path)")
    elif isinstance(cfg, Extend):
        src = read_camera_file(cfg.input)  # its frames are written on, so a lens is refused (never dropped)
        if len(src.trajectory) < 2 and cfg.mode != "pingpong":
            raise InputError(f"--input {cfg.input} has 1 camera, but --mode {cfg.mode} needs the motion between at "
                             "least 2; pass a longer path, or --mode pingpong to hold this camera.", path=cfg.input)
        kw = dict(decay=cfg.decay, floor=cfg.floor) if cfg.mode == "slowdown" else {}
        traj = extend_trajectory(src.trajectory, cfg.extra_frames, cfg.mode, **kw)
        names = src.names + [f"extended_{i:05d}" for i in range(cfg.extra_frames)]
    else:  # pragma: no cover
        raise TypeError(type(cfg))
    traj.cameras.validate("generated trajectory")
    names = names or [f"frame_{i:05d}.png" for i in range(len(traj))]
    _write(cfg.out, CameraFile(traj, names), "auto", overwrite=cfg.overwrite)
    print(f"wrote {cfg.out}: {len(traj)} cameras at {traj.fps:g} fps, {traj.cameras.width}x{traj.cameras.height}")
    return 0


def _write(out: Path, cf, fmt: str, overwrite: bool, colmap_binary: bool = True, config=None) -> None:
    from vdm3d.cameras.formats import detect_format, write_camera_file
    from vdm3d.io.runs import RunFolder

    fmt = detect_format(out, for_writing=True) if fmt == "auto" else fmt
    if fmt == "colmap":  # a folder: build it in a run folder so a failure leaves nothing
        with RunFolder(out, config=config, overwrite=overwrite) as run:
            write_camera_file(run.path, cf, "colmap", colmap_binary=colmap_binary)
    else:
        write_camera_file(out, cf, fmt)


def _lens_text(lens) -> str:
    from vdm3d.cameras.distortion import has_lens, lens_text

    first = next(d for d in lens if has_lens(d)) if isinstance(lens, list) else lens
    return lens_text(first)


def _poses_of(path: Path, cf):
    """``cf`` (read with ``distortion="keep"``) for a command that makes new pinhole cameras from its poses and
    focal lengths (spiral, keyframes, move): its lens describes photos the new path does not reproduce, so it
    is left behind, and said so."""
    from vdm3d.cameras.distortion import has_lens

    lens = (cf.extras or {}).get("distortion")
    if has_lens(lens):
        print(f"note: {path} has lens distortion ({_lens_text(lens)}); the new path's cameras are pinhole, made "
              "from its poses and focal lengths only", file=sys.stderr)
    return cf


def _convert(cfg: Convert) -> int:
    from vdm3d.cameras.formats import images_folder, read_camera_file

    _check_out(cfg.out, cfg.overwrite)
    from vdm3d.cameras.formats import detect_format

    cf = read_camera_file(cfg.input, cfg.from_format, cfg.width, cfg.height,
                          "keep" if cfg.distortion == "refuse" else cfg.distortion)  # refused below unless stored
    from vdm3d.cameras.distortion import has_lens

    lens = (cf.extras or {}).get("distortion")
    target = detect_format(cfg.out, for_writing=True) if cfg.to == "auto" else cfg.to
    if has_lens(lens) and target != "transforms" and cfg.distortion == "refuse":  # never drop it silently
        raise InputError(path=cfg.input, field="distortion", problem=f"({_lens_text(lens)}) cannot be stored in a "
                         f"{target} file", fix="convert to a transforms.json, or pass --distortion drop to write the "
                         "pinhole part only")
    _write(cfg.out, cf, cfg.to, cfg.overwrite, not cfg.colmap_text, config=cfg)
    print(f"wrote {cfg.out}: {len(cf.trajectory)} cameras")
    folder = images_folder(cf)
    if folder is not None and target == "colmap":  # a COLMAP model's image names start at an image folder
        print(f"the images are in {folder} (the image folder for COLMAP, e.g. its --image_path)")
    elif folder is None and target in ("transforms", "colmap", "vdm3d"):
        print(f"note: {cfg.input}'s image names ({cf.names[0]}, ...) name no image files beside it, so they are "
              f"written as they are; a reader of {cfg.out} will not find images under them", file=sys.stderr)
    if target == "re10k":  # its intrinsics are fractions of an image size it does not store
        cams = cf.trajectory.cameras
        print(f"note: RealEstate10K files store no image size, and readers take the size with square pixels, 360 "
              f"high (640x360 for 16:9); convert it back with `vdm3d trajectory convert {cfg.out} --width "
              f"{cams.width} --height {cams.height} --out ...`", file=sys.stderr)
    return 0


def read_scene(path: Path, up: str):
    """The scene's geometry, z-up; a large file announced on stderr before it is read (up to a minute)."""
    from vdm3d.cameras.scene import load_scene
    from vdm3d.io.progress import read_announced

    return read_announced(path, lambda: load_scene(path, up=up), lambda line: print(line, file=sys.stderr, flush=True),
                          "scene", _scene_size)


def _scene_size(scene) -> str:
    if scene.is_mesh:
        return f"{len(scene.faces):,} faces read"
    return f"{len(scene.points):,} points read"


def _validate(cfg: Validate) -> int:
    from vdm3d.cameras.check import DelayedProgress, check_trajectory
    from vdm3d.cameras.formats import read_camera_file
    from vdm3d.io.runs import atomic_write_json, check_new_output, check_writable

    if cfg.report is not None:  # before the check, which can take minutes on a large scene
        check_writable(cfg.report, "--report")
        check_new_output(cfg.report, cfg.overwrite, "--report", file=True)
    cf = read_camera_file(cfg.input, cfg.from_format)  # validates finiteness, rotations, focal lengths; refuses a lens
    n = len(cf.trajectory)
    if cfg.scene is None:
        print(f"ok: {cfg.input} has {n} valid cameras")
        return 0
    scene = read_scene(cfg.scene, cfg.scene_up)
    report = check_trajectory(cf.trajectory.cameras, scene, cfg.min_distance, cfg.min_coverage,
                              progress=DelayedProgress("validate"))
    if cfg.report is not None:
        atomic_write_json(cfg.report, report.to_dict())
    problems = report.problems(ignore_inside=cfg.ignore_inside)
    cov = [f.coverage for f in report.frames]
    print(f"{cfg.input}: {n} cameras against {cfg.scene}: coverage {min(cov):.2f}..{max(cov):.2f}, "
          f"nearest geometry {min(f.nearest for f in report.frames):.3g} (limit {report.min_distance:.3g})")
    for line in problems:
        print(f"  {line}")
    print(f"{len(problems)} of {n} frames have problems" if problems else "ok: no problems")
    return 1 if problems else 0


def _preview(cfg: Preview) -> int:
    from vdm3d.cameras.formats import read_camera_file
    from vdm3d.io.runs import atomic_write_bytes

    from vdm3d.cameras.preview import preview_png

    _check_out(cfg.out, cfg.overwrite)
    if cfg.out.suffix.lower() != ".png":
        raise InputError(path=cfg.out, problem="is not a .png file name", fix="end --out with .png")
    cf = read_camera_file(cfg.input, cfg.from_format, distortion="keep")  # frusta only: a lens changes none
    scene = read_scene(cfg.scene, cfg.scene_up) if cfg.scene is not None else None  # z-up, as the cameras
    title = cfg.title or f"{cfg.input.name}: {len(cf.trajectory)} cameras"
    atomic_write_bytes(cfg.out, preview_png(cf.trajectory.cameras, scene, title=title))
    print(f"wrote {cfg.out}")
    return 0


def _info(cfg: Info) -> int:
    import torch

    from vdm3d.cameras.formats import camera_file_in, read_camera_file

    from vdm3d.cameras.distortion import has_lens

    cf = read_camera_file(cfg.input, cfg.from_format, distortion="keep")  # a lens is described, not refused
    t = cf.trajectory
    cams = t.cameras.to(torch.float64)
    lo, hi = cams.centers.min(0).values, cams.centers.max(0).values
    span = lambda v: [round(float(v.min()), 3), round(float(v.max()), 3)]  # noqa: E731
    source = camera_file_in(cfg.input) if cfg.from_format == "auto" and Path(cfg.input).is_dir() else cfg.input
    info = {"file": str(source), "frames": len(t), "fps": t.fps, "duration_s": round(t.duration_s, 4),
            "width": cams.width, "height": cams.height,
            "fov_x_deg": span(cams.fov_x_deg), "fov_y_deg": span(cams.fov_y_deg)}
    centre = {"cx": cams.width / 2, "cy": cams.height / 2}
    if any(float((getattr(cams, k) - c).abs().max()) > 1e-6 for k, c in centre.items()):  # off centre: say where
        info.update(cx=span(cams.cx), cy=span(cams.cy))
    lens = (cf.extras or {}).get("distortion")
    if has_lens(lens):
        first = next(i for i, d in enumerate(lens) if has_lens(d)) if isinstance(lens, list) else None
        info["distortion"] = _lens_text(lens) + ("" if first is None else
                                                 f" at frame {first} (lenses differ between frames)")
    info.update({"path_length": round(t.path_length(), 6), "centers_min": [round(v, 6) for v in lo.tolist()],
                 "centers_max": [round(v, 6) for v in hi.tolist()], "provenance": t.provenance})
    if cfg.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        for k, v in info.items():
            if k != "provenance":
                note = f" (image centre {centre[k]:g})" if k in centre else ""
                print(f"{k:>12}: {v}{note}")
        gen = t.provenance.get("generator") or t.provenance.get("source_format")
        if gen:
            print(f"{'made by':>12}: {gen}")
    return 0


def main(argv: Sequence[str], prog: str) -> int:
    from vdm3d.cli.main import dispatch

    argv = list(argv)
    if argv and argv[0] == "make":
        pages = {"": _examples(MAKE_EXAMPLES.values(), MAKE_INPUTS),
                 **{kind: _examples([MAKE_EXAMPLES[k] for k in (*MAKE_NEEDS.get(kind, ()), kind)],
                                    MAKE_INPUTS if kind == "from-video" else "") for kind in MAKE_EXAMPLES}}
        cfg = dispatch(MAKE, argv[1:], f"{prog} make", description="Make a camera trajectory.", examples=pages)
        return _make(cfg)
    pages = {"": _examples(EXAMPLES.values(), SCENE_NOTE),
             **{sub: _examples([EXAMPLES[k] for k in keys], SCENE_NOTE if "data" in keys else "")
                for sub, keys in SUB_PAGES.items()}}
    cfg = dispatch(COMMANDS, argv, prog, description=HELP, examples=pages)
    runners = {Convert: _convert, Validate: _validate, Preview: _preview, Info: _info}
    return runners[type(cfg)](cfg) if type(cfg) in runners else 0
