"""Cameras in one convention (OpenCV, camera-to-world), converters at the edge, trajectories."""

from vdm3d.cameras.camera import Cameras, fov_to_focal, intrinsics, look_at, rigid_inverse

__all__ = ["Cameras", "fov_to_focal", "intrinsics", "look_at", "rigid_inverse"]
