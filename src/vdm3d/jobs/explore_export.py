"""The explore job's run folder.

``video.mp4``; ``frames/NNNN.png``; ``depth/NNNN.png`` (16-bit z-depth, :func:`vdm3d.io.images.write_depth`:
``depth = value / scale`` in the path's units, 0 = none; ``scale`` is 1000 (millimetres for a path in metres)
unless the video's farthest depth needs a coarser one, and ``depth/scale.json`` records it); ``cameras/transforms.json`` (nerfstudio, OpenGL), ``cameras/re10k.txt``
(RealEstate10K) and ``cameras/trajectory.json`` (vdm3d trajectory, which ``--path-from-run`` reads);
``splats.ply`` (the final cache, 3DGS PLY); the manifest is written by the run folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from vdm3d.views import Views


def export(folder: Path, config, video: Views, cache) -> dict[str, str]:
    from vdm3d.cameras.io import write_re10k, write_transforms_json
    from vdm3d.cameras.trajectory import Trajectory
    from vdm3d.cameras.trajectory_file import save_trajectory
    from vdm3d.io.images import write_depth, write_image
    from vdm3d.io.runs import atomic_write_json
    from vdm3d.io.video import write_video
    from vdm3d.splat.ply import save_ply

    for sub in ("frames", "depth", "cameras"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    names = [f"frames/{i:04d}.png" for i in range(len(video))]
    scale = depth_png_scale(float(video.depths.nan_to_num(0.0, 0.0, 0.0).max()))
    atomic_write_json(folder / "depth" / "scale.json", {"scale": scale, "depth": "png value / scale, in the camera "
                                                       "path's units; 0 = no depth"})
    for i, name in enumerate(names):
        write_image(folder / name, video.images[i])
        write_depth(folder / "depth" / f"{i:04d}.png", video.depths[i], scale=scale)
    fps = video.fps or 12.0
    write_video(folder / "video.mp4", video.images, fps=fps)
    write_transforms_json(folder / "cameras" / "transforms.json", video.cameras, [f"../{n}" for n in names],
                          extras={"top": {"fps": fps}})  # the video's frame rate, as the trajectory JSON records it
    write_re10k(folder / "cameras" / "re10k.txt", video.cameras,
                timestamps=[round(i * 1e6 / fps) for i in range(len(video))])
    provenance = {"generator": "vdm3d explore", "names": [f"../{n}" for n in names]}  # from cameras/, as above
    save_trajectory(folder / "cameras" / "trajectory.json", Trajectory(video.cameras, fps, provenance))
    files = ["video.mp4", "frames/", "depth/", "cameras/transforms.json", "cameras/re10k.txt",
             "cameras/trajectory.json"]
    if cache is not None:
        save_ply(folder / "splats.ply", cache)
        files.append("splats.ply")
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # the run is complete: nothing to resume
    return {f: f for f in files}


def depth_png_scale(farthest: float) -> float:
    """The 16-bit depth PNGs' scale: 1000 (millimetres for a path in metres) when the farthest depth fits in
    65,535 steps, else the largest of 100, 10, 1, 0.1, ... that fits; an outdoor scene 73 units deep used to
    fail the whole run at its last step."""
    scale = 1000.0
    while farthest * scale > 65535 and scale > 1e-6:
        scale /= 10
    return scale
