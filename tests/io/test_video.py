"""MP4 writing and reading: frame count, fps, size padding, pixel fidelity, atomicity."""

import numpy as np
import pytest
import torch

from vdm3d.errors import InputError
from vdm3d.io.video import read_video, write_video


def smooth_frames(f: int, h: int, w: int) -> torch.Tensor:
    y, x = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    frames = [torch.stack([x, y, torch.full_like(x, t / max(f - 1, 1))], -1) for t in range(f)]
    return torch.stack(frames) * 0.8 + 0.1


def test_round_trip_smooth_video(tmp_path):
    frames = smooth_frames(5, 32, 48)
    write_video(tmp_path / "v.mp4", frames, fps=12)
    back, fps = read_video(tmp_path / "v.mp4")
    assert back.shape == frames.shape and fps == pytest.approx(12)
    psnr = -10 * torch.log10(((back - frames) ** 2).mean())
    assert psnr > 35, psnr


def test_odd_size_is_padded_not_rescaled(tmp_path):
    frames = smooth_frames(3, 17, 21)
    write_video(tmp_path / "v.mp4", frames, fps=8)
    back, _ = read_video(tmp_path / "v.mp4")
    assert back.shape == (3, 18, 22, 3)
    assert (back[:, :17, :21] - frames).abs().mean() < 0.02  # pixels stay where they were


def test_uint8_input_and_bad_inputs(tmp_path):
    write_video(tmp_path / "u.mp4", np.full((2, 8, 8, 3), 128, np.uint8), fps=4)
    back, _ = read_video(tmp_path / "u.mp4")
    assert abs(float(back.mean()) - 128 / 255) < 0.01
    with pytest.raises(InputError, match=r"\[F, H, W, 3\]"):
        write_video(tmp_path / "b.mp4", torch.zeros(8, 8, 3), fps=4)
    with pytest.raises(InputError, match="NaN"):
        write_video(tmp_path / "b.mp4", torch.full((1, 8, 8, 3), float("nan")), fps=4)
    with pytest.raises(InputError, match="fps"):
        write_video(tmp_path / "b.mp4", torch.zeros(1, 8, 8, 3), fps=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u.mp4"]


def test_read_missing_or_corrupt(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_video(tmp_path / "none.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"garbage" * 10)
    with pytest.raises(InputError, match="not a readable video"):
        read_video(tmp_path / "bad.mp4")


FULL_DISK_FFMPEG = """#!/bin/sh
# ffmpeg on a full disk: it reads the frames, writes part of the file, says why on stderr and fails
for last; do :; done
cat > /dev/null
printf 'part' > "$last"
echo '[out#0/mp4 @ 0x55] Error writing trailer: No space left on device' >&2
exit 228
"""


@pytest.mark.skipif(__import__("os").name != "posix", reason="a shell script stands in for ffmpeg")
def test_a_full_disk_is_raised_as_enospc_and_leaves_no_cut_short_video(tmp_path, monkeypatch, capfd):
    """imageio-ffmpeg's write_frames does not check how ffmpeg ended: on a full disk write_video returned a video
    cut short at the free space as if it were whole (a run kept it), and ffmpeg's lines went to the terminal."""
    import errno

    import imageio_ffmpeg
    import imageio_ffmpeg._io

    fake = tmp_path / "ffmpeg"
    fake.write_text(FULL_DISK_FFMPEG)
    fake.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(fake))
    monkeypatch.setattr(imageio_ffmpeg._io, "get_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out"
    with pytest.raises(OSError) as raised:
        write_video(out / "v.mp4", smooth_frames(4, 16, 16), fps=8)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out / "v.mp4")
    assert list(out.iterdir()) == []  # neither the video nor its temporary file
    assert capfd.readouterr().err == ""
