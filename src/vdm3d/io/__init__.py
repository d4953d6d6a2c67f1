"""Files in and out: run folders with manifests, atomic writes, images and video."""

from vdm3d.io.runs import RunFolder, atomic_write_bytes, atomic_write_json, file_sha256

__all__ = ["RunFolder", "atomic_write_bytes", "atomic_write_json", "file_sha256"]
