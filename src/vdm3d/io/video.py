"""MP4 video in and out through the ffmpeg binary that imageio-ffmpeg bundles (works offline).

:func:`write_video` encodes ``[F, H, W, 3]`` frames (floats in [0, 1] or uint8) with libx264 in
``yuv420p``, the pixel format every player and browser accepts. yuv420p needs even sides, so odd
sizes are padded by one row/column that repeats the border (never rescaled: pixels stay where the
cameras say they are); the padding is reported by :func:`video_padding`. The file is written to a
hidden temporary name beside the target and renamed at the end, so a failure leaves nothing.

:func:`read_video` decodes any video ffmpeg reads into ``([F, H, W, 3] float32 in [0, 1], fps)``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.errors import InputError, OutputError
from vdm3d.io.runs import _umask


def _frames_uint8(frames) -> np.ndarray:
    arr = frames.detach().cpu().numpy() if torch.is_tensor(frames) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise InputError(f"write_video: frames must be [F, H, W, 3] with F >= 1, got shape {tuple(arr.shape)}.")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("write_video: frames contain NaN or inf values; clean them before encoding.")
        arr = np.round(np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise InputError(f"write_video: unsupported dtype {arr.dtype}; pass floats in [0, 1] or uint8.")
    return arr


def video_padding(height: int, width: int) -> tuple[int, int]:
    """Rows and columns added at the bottom/right so that yuv420p accepts the size."""
    return height % 2, width % 2


def write_video(path: str | Path, frames, fps: float | int, crf: int = 18) -> Path:
    """Encode frames ``[F, H, W, 3]`` to an MP4 (H.264, yuv420p) at ``fps`` frames per second.

    ``crf`` is x264's constant-rate factor (0 lossless-ish luma, 18 visually lossless, 23 default).
    """

    path = Path(path)
    if path.suffix.lower() not in (".mp4", ".mov", ".mkv"):
        raise InputError(path=path, problem=f"has an unsupported video suffix {path.suffix!r}", fix="use .mp4")
    if not (fps > 0 and np.isfinite(fps)):
        raise InputError(path=path, field="fps", problem=f"must be a positive number, got {fps}", fix="pass e.g. 24")
    arr = _frames_uint8(frames)
    ph, pw = video_padding(arr.shape[1], arr.shape[2])
    if ph or pw:  # repeat the last row/column: yuv420p subsamples chroma 2x2
        arr = np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    h, w = arr.shape[1:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        _encode(arr, tmp, path, w, h, fps, crf)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _encode(arr: np.ndarray, tmp: str, path: Path, w: int, h: int, fps: float | int, crf: int) -> None:
    """Pipe ``arr`` through imageio-ffmpeg's ffmpeg into ``tmp`` (the command imageio_ffmpeg.write_frames builds
    for these settings), and check how ffmpeg ended: write_frames neither does nor catches its messages, so on
    a full disk it returned a cut-short video as if it were whole, and ffmpeg's own lines ("Error writing
    trailer: No space left on device") went to the terminal. A full disk is raised as ENOSPC (naming ``path``) for
    the run folder to say; any other failure is one sentence with ffmpeg's last line."""
    import subprocess
    from fractions import Fraction

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{w:d}x{h:d}",
           "-pix_fmt", "rgb24", "-r", str(Fraction(float(fps)).limit_denominator()), "-i", "-", "-an",
           "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-v", "error", "-crf", str(int(crf)),
           "-movflags", "+faststart", tmp]
    spawn = {"start_new_session": True} if os.name == "posix" else {}  # Ctrl-C reaches vdm3d, which stops ffmpeg
    with tempfile.TemporaryFile() as said:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=said, **spawn)
        try:
            try:
                for frame in arr:
                    proc.stdin.write(np.ascontiguousarray(frame).tobytes())
                proc.stdin.close()
            except BrokenPipeError:  # ffmpeg stopped reading: its status and message say why
                pass
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        said.seek(0)
        text = said.read().decode(errors="replace")
    if code == 0:
        return
    if any(t in text for t in ("No space left on device", "Disk quota exceeded")):
        quota = "Disk quota exceeded" in text
        raise OSError(errno.EDQUOT if quota else errno.ENOSPC,
                      "Disk quota exceeded" if quota else "No space left on device", str(path))
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), f"exit status {code}")
    raise OutputError(f"{path}: ffmpeg could not write the video ({last}); check that the folder can be written.")


def read_video(path: str | Path) -> tuple[Float[Tensor, "F H W 3"], float]:
    """Decode a video into float32 frames ``[F, H, W, 3]`` in [0, 1] and its frame rate."""
    import imageio_ffmpeg

    path = Path(path)
    if not path.is_file():
        raise InputError(path=path, problem="does not exist", fix="check the path")
    try:
        gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(b, dtype=np.uint8).reshape(h, w, 3) for b in gen]
    except (RuntimeError, OSError, StopIteration, KeyError, ValueError) as e:
        raise InputError(path=path, problem=f"is not a readable video ({type(e).__name__})",
                         fix="pass an MP4 file") from None
    if not frames:
        raise InputError(path=path, problem="has no frames", fix="pass a non-empty video")
    arr = np.stack(frames).astype(np.float32) / 255.0
    return torch.from_numpy(arr), float(meta.get("fps", 0.0))
