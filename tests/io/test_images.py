"""Images and depth maps: exact round trips, bit depths, and one-sentence errors on bad files."""

import numpy as np
import pytest
import torch

from vdm3d.errors import InputError
from vdm3d.io.images import read_depth, read_image, write_depth, write_image


def test_png_8bit_round_trip_is_exact_on_the_grid(tmp_path):
    img = torch.randint(0, 256, (7, 5, 3)).float() / 255
    write_image(tmp_path / "a.png", img)
    back = read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.shape == (7, 5, 3)
    torch.testing.assert_close(back, img, atol=1e-7, rtol=0)


def test_png_16bit_keeps_precision(tmp_path):
    img = torch.rand(6, 9, 3)
    write_image(tmp_path / "a.png", img, bits=16)
    err = (read_image(tmp_path / "a.png") - img).abs().max()
    assert err <= 0.5 / 65535 + 1e-7  # quantization only
    write_image(tmp_path / "b.png", img, bits=8)
    assert (read_image(tmp_path / "b.png") - img).abs().max() > 100 * err  # 8 bit really is coarser


def test_channel_order_is_rgb_and_alpha_kept(tmp_path):
    img = torch.zeros(2, 2, 4)
    img[..., 0], img[..., 3] = 1.0, 0.5  # pure red, half transparent
    write_image(tmp_path / "r.png", img)
    rgba = read_image(tmp_path / "r.png", alpha=True)
    assert rgba[0, 0].tolist() == pytest.approx([1.0, 0.0, 0.0, 128 / 255])
    assert read_image(tmp_path / "r.png").shape == (2, 2, 3)


def test_grey_image_becomes_rgb_and_opaque_alpha_added(tmp_path):
    write_image(tmp_path / "g.png", torch.full((3, 4), 0.2))
    rgb = read_image(tmp_path / "g.png", alpha=True)
    assert rgb.shape == (3, 4, 4)
    torch.testing.assert_close(rgb[..., :3], torch.full((3, 4, 3), 51 / 255))
    assert (rgb[..., 3] == 1).all()


def test_real_photo(shared_data):
    img = read_image(shared_data / "photos" / "chelsea.png")
    assert img.shape == (300, 451, 3) and 0.2 < float(img.mean()) < 0.8


@pytest.mark.parametrize("content, expect", [(None, "does not exist"), (b"", "empty"),
                                             (b"not an image at all", "not a readable image")])
def test_bad_image_files_give_one_sentence(tmp_path, content, expect):
    p = tmp_path / "x.png"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=expect) as e:
        read_image(p)
    assert str(p) in str(e.value) and str(e.value).count("\n") == 0


def test_write_rejects_nan_and_bad_shape(tmp_path):
    with pytest.raises(InputError, match="NaN"):
        write_image(tmp_path / "a.png", torch.full((2, 2, 3), float("nan")))
    with pytest.raises(InputError, match="shape"):
        write_image(tmp_path / "a.png", torch.zeros(2, 2, 5))
    assert not any(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("suffix", [".npy", ".png"])
def test_depth_round_trip(tmp_path, suffix):
    d = torch.rand(5, 6) * 10 + 0.1
    d[0, 0] = 0.0  # no depth
    write_depth(tmp_path / f"d{suffix}", d)
    back = read_depth(tmp_path / f"d{suffix}")
    tol = 0 if suffix == ".npy" else 0.5 / 1000 + 1e-6
    assert (back - d).abs().max() <= tol
    assert back[0, 0] == 0


def test_depth_png_out_of_range_refused(tmp_path):
    with pytest.raises(InputError, match="16-bit PNG range"):
        write_depth(tmp_path / "d.png", torch.full((2, 2), 100.0))
    assert not (tmp_path / "d.png").exists()


def test_depth_png_rejects_8bit_image(tmp_path):
    write_image(tmp_path / "c.png", np.zeros((2, 2, 3)))
    with pytest.raises(InputError, match="16-bit single-channel"):
        read_depth(tmp_path / "c.png")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_turns_pixels_like_pil_and_default_keeps_them_as_stored(tmp_path, orientation):
    """A phone stores a portrait photo sideways with an EXIF orientation tag; ``upright=True`` turns it the
    way PIL's ``ImageOps.exif_transpose`` (the reference) does, for every tag; the default keeps the stored
    pixels, as the cameras of posed photos describe them."""
    from PIL import Image, ImageOps

    stored = np.random.default_rng(orientation).integers(0, 256, (5, 8, 3), dtype=np.uint8)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(tmp_path / "p.png", exif=exif)  # PNG: lossless, so the comparison is exact
    with Image.open(tmp_path / "p.png") as f:
        shown = np.asarray(ImageOps.exif_transpose(f).convert("RGB"))
    assert (shown.shape[:2] == (8, 5)) == (orientation >= 5)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png", upright=True).mul(255).round().byte().numpy(), shown)
    np.testing.assert_array_equal(read_image(tmp_path / "p.png").mul(255).round().byte().numpy(), stored)


def test_a_phones_heic_photo_reads(tmp_path):
    """HEIC, the format phones save photos in, reads through pillow-heif wherever an image is read: the
    pixels of a smooth picture come back within HEVC's compression error."""
    import pillow_heif

    from vdm3d.io.foreground import read_rgba

    yy, xx = np.mgrid[0:48, 0:64]
    picture = np.stack([xx / 63, yy / 47, 0.5 + 0 * xx], -1)
    pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=(picture * 255).round().astype(np.uint8).tobytes()
                           ).save(tmp_path / "photo.heic", quality=95)
    back = read_image(tmp_path / "photo.heic", upright=True).numpy()
    assert back.shape == (48, 64, 3) and np.abs(back - picture).mean() < 0.02
    rgba, has_alpha = read_rgba(tmp_path / "photo.heic")
    assert rgba.shape == (48, 64, 4) and not has_alpha and np.abs(rgba[..., :3] - picture).mean() < 0.02


def test_a_file_cut_short_is_called_that(tmp_path):
    """Half a JPEG (a download cut short) is not "not a readable image, pass a PNG or JPEG": it is a JPEG that
    ends early, and the fix is to copy it again."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "whole.jpg", quality=95)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"half.jpg: is cut short \(the image data ends early\); copy or export"):
        read_image(tmp_path / "half.jpg")
