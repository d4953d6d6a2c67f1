"""Points that COLMAP recovers from a set of posed frames (V3D's scene-level geometry measure).

V3D judges generated scene videos by running COLMAP on the frames and comparing the recovered points
with those from the real frames. Here the camera poses are known (the path the frames were
generated along), so pycolmap only extracts SIFT features, matches every pair, and triangulates with
the given poses (COLMAP's point triangulator): the points of generated and of ground-truth frames
land in the same world frame and compare directly by Chamfer distance
(:func:`vdm3d.metrics.geometry.chamfer`-style, nearest neighbours both ways).

Small frames (64 px) give SIFT too few keypoints, so frames are upscaled (bicubic, ``upscale``)
before extraction, with the intrinsics scaled to match. COLMAP's pixel convention is ours (the
first pixel's centre at 0.5, 0.5), so ``Ks`` carry over unchanged apart from the scale.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
from jaxtyping import Float
from scipy.spatial import cKDTree
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.sfm import pycolmap_module




def extract_features(images: Float[Tensor, "N H W 3"], cameras: Cameras, upscale: int, root: Path) -> tuple[Path, Path]:
    """Write ``images`` upscaled (bicubic) to ``root/images`` as ``NNNN.png`` and extract their SIFT features into
    a fresh ``root/database.db`` with the first camera's pinhole intrinsics, scaled to match, shared by all
    frames. Returns the image folder and the database."""
    pycolmap = pycolmap_module()
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape[:3]
    for i in range(n):
        arr = (images[i].clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        arr = cv2.resize(arr, (w * upscale, h * upscale), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(img_dir / f"{i:04d}.png"), arr[..., ::-1])
    K = cameras.Ks[0].double() * upscale
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    reader.camera_params = ",".join(f"{float(x):.6f}" for x in (K[0, 0], K[1, 1], K[0, 2], K[1, 2]))
    db_path = root / "database.db"
    if db_path.exists():
        db_path.unlink()
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = 1
    pycolmap.extract_features(db_path, img_dir, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)
    return img_dir, db_path


def triangulate_known_poses(images: Float[Tensor, "N H W 3"], cameras: Cameras, upscale: int = 4,
                            work: Path | None = None) -> np.ndarray:
    """World points ``[P, 3]`` that COLMAP triangulates from ``images`` at their known ``cameras [N]``
    (one shared pinhole intrinsics, the first camera's)."""
    pycolmap = pycolmap_module()
    pycolmap.logging.minloglevel = 2  # errors only: COLMAP logs every image and pair otherwise
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(work or tmp)
        img_dir, db_path = extract_features(images, cameras, upscale, root)
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = 1
        pycolmap.match_exhaustive(db_path, matching_options=matching, device=pycolmap.Device.cpu)
        db = pycolmap.Database.open(db_path)
        rec = pycolmap.Reconstruction()
        for cam in db.read_all_cameras():
            rec.add_camera_with_trivial_rig(cam)
        w2c = cameras.w2c.double().numpy()
        for img in db.read_all_images():
            i = int(Path(img.name).stem)
            pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[i, :3, :3]), w2c[i, :3, 3])
            rec.add_image_with_trivial_frame(pycolmap.Image(name=img.name, camera_id=img.camera_id,
                                                            image_id=img.image_id), pose)
        db.close()
        (root / "sparse").mkdir(exist_ok=True)
        out = pycolmap.triangulate_points(rec, db_path, img_dir, root / "sparse")
        pts = [p.xyz for p in out.points3D.values()]
    return np.asarray(pts, dtype=np.float64).reshape(-1, 3)


def chamfer_points(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Chamfer distance (mean nearest-neighbour distance each way, averaged); nan if either is empty."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    da, _ = cKDTree(b).query(a)
    db, _ = cKDTree(a).query(b)
    return float(0.5 * (da.mean() + db.mean()))


def colmap_chamfer(generated: Float[Tensor, "N H W 3"], truth: Float[Tensor, "N H W 3"], cameras: Cameras,
                   upscale: int = 4) -> dict[str, float]:
    """V3D's measure: points COLMAP recovers from the generated frames and from the true frames at the same
    cameras, their Chamfer distance and how many points each gives."""
    p_gen = triangulate_known_poses(generated, cameras, upscale)
    p_true = triangulate_known_poses(truth, cameras, upscale)
    return {"chamfer": chamfer_points(p_gen, p_true), "points_generated": int(len(p_gen)),
            "points_truth": int(len(p_true))}


__all__ = ["chamfer_points", "colmap_chamfer", "triangulate_known_poses"]
