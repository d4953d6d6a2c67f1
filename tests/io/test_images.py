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


def test_a_large_image_is_read_shrunk_by_a_whole_factor_with_block_means(tmp_path):
    """QA: a 4000x3000 photo cost seconds of float conversion before a 64 px job started. ``at_least`` shrinks
    it first by the largest whole factor that keeps the shorter side at least that long: here 4 (240 x 180 ->
    60 x 45), each pixel the exact mean of its 4x4 block (8 bit: within rounding). A cut-out's colour is
    averaged premultiplied by alpha: a block half opaque red, half transparent black is red at alpha 0.5, not
    dark red. An image under twice ``at_least`` comes back as it is, and so does a JPEG's size."""
    from PIL import Image

    from vdm3d.io.images import shrink, shrink_factor

    rng = np.random.default_rng(1)
    stored = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    Image.fromarray(stored).save(tmp_path / "big.png")
    assert shrink_factor(240, 180, 45) == 4 and shrink_factor(240, 180, 46) == 3 and shrink_factor(240, 180, None) == 1
    small = read_image(tmp_path / "big.png", at_least=45).numpy()
    blocks = stored.reshape(45, 4, 60, 4, 3).astype(np.float64).mean((1, 3)) / 255
    assert small.shape == (45, 60, 3) and np.abs(small - blocks).max() <= 0.5 / 255 + 1e-6
    whole = read_image(tmp_path / "big.png", at_least=91).numpy()  # 180 < 2 x 91: not shrunk
    np.testing.assert_array_equal(whole, stored / np.float32(255))
    square = read_image(tmp_path / "big.png", at_least=45, square=True).numpy()  # columns 30..209, then / 4
    ref = stored[:, 30:210].reshape(45, 4, 45, 4, 3).astype(np.float64).mean((1, 3)) / 255
    assert square.shape == (45, 45, 3) and np.abs(square - ref).max() <= 0.5 / 255 + 1e-6
    cutout = np.zeros((2, 2, 4), np.uint8)
    cutout[0, :] = (200, 0, 0, 255)  # top row opaque red, bottom row transparent black
    assert shrink(cutout, 2).tolist() == [[[200, 0, 0, 128]]]
    Image.fromarray(stored).save(tmp_path / "big.jpg", quality=95)
    jpeg = read_image(tmp_path / "big.jpg", at_least=45).numpy()  # decoded at 1/4 by libjpeg
    assert jpeg.shape == (45, 60, 3) and np.abs(jpeg - blocks).mean() < 0.03


def test_the_exif_orientation_of_a_png_is_read_without_decoding_its_pixels(tmp_path, monkeypatch):
    """PIL decodes a whole PNG to look for an eXIf chunk (it may come after the pixels): for a 12-megapixel
    photo, a second decode just to learn its orientation. The chunks' headers are read instead; an eXIf
    chunk after the image data is still found."""
    from PIL import Image, PngImagePlugin

    from vdm3d.io.images import exif_orientation

    im = Image.fromarray(np.random.default_rng(2).integers(0, 256, (5, 8, 3), dtype=np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "p.png", exif=exif)
    data = (tmp_path / "p.png").read_bytes()
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append(data[at:at + 12 + length])
        at += 12 + length
    names = [c[4:8] for c in chunks]
    exif_chunk = chunks.pop(names.index(b"eXIf"))
    chunks.insert(len(chunks) - 1, exif_chunk)  # just before IEND: after IDAT
    (tmp_path / "late.png").write_bytes(data[:8] + b"".join(chunks))
    with Image.open(tmp_path / "late.png") as f:
        assert "exif" not in f.info  # PIL has to read past the pixels to see it
    loads = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: loads.append(1) or real_load(self))
    assert exif_orientation(tmp_path / "late.png") == 6 and exif_orientation(tmp_path / "p.png") == 6
    assert loads == []
    monkeypatch.undo()
    assert read_image(tmp_path / "late.png", upright=True).shape == (8, 5, 3)


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_an_animated_image_gives_its_first_frame_and_says_so(tmp_path, suffix):
    """QA: an animated GIF / WebP was read as its first frame without a word. Both readers say it once
    ("X has N frames; using the first"); a still image and a phone's MPO-style JPEG say nothing."""
    from PIL import Image

    from vdm3d.io.foreground import read_rgba

    red, green, blue = (np.zeros((16, 16, 3), np.uint8) for _ in range(3))
    red[..., 0], green[..., 1], blue[..., 2] = 255, 255, 255
    path = tmp_path / f"anim{suffix}"
    extra = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(red).save(path, save_all=True, append_images=[Image.fromarray(green), Image.fromarray(blue)],
                              duration=100, loop=0, **extra)
    said = []
    first = read_image(path, say=said.append).numpy()
    rgba, _ = read_rgba(path, say=said.append)
    assert said == [f"{path} has 3 frames; using the first"] * 2
    assert np.allclose(first, red / 255, atol=0.02) and np.allclose(rgba[..., :3], red / 255, atol=0.02)
    with pytest.warns(UserWarning, match=r"has 3 frames; using the first$"):
        read_image(path)
    Image.fromarray(red).save(tmp_path / "still.png")
    Image.fromarray(red).save(tmp_path / "phone.jpg", format="MPO", save_all=True,
                              append_images=[Image.fromarray(blue)])
    with Image.open(tmp_path / "phone.jpg") as f:
        assert f.format == "MPO" and f.n_frames == 2
    quiet = []
    for still in ("still.png", "phone.jpg"):
        read_image(tmp_path / still, say=quiet.append)
        read_rgba(tmp_path / still, say=quiet.append)
    assert quiet == []


@pytest.mark.parametrize("suffix", [".hdr", ".pfm"])
def test_the_pixel_cap_holds_for_formats_pil_does_not_read(tmp_path, monkeypatch, suffix):
    """PIL does not know Radiance HDR or PFM, so the header check let them through to OpenCV, whose own limit is
    2**30 pixels: a run-length coded HDR of 60 MB held 30000 x 30000 pixels (10.8 GB as floats). Their headers
    are read too; under the cap they read as before, at their own width and height."""
    import cv2

    from vdm3d.io.images import check_image_file, read_image

    path = tmp_path / f"wide{suffix}"
    cv2.imwrite(str(path), np.full((48, 64, 3), 0.5, np.float32))
    assert check_image_file(path) == (64, 48)
    assert tuple(read_image(path).shape) == (48, 64, 3)
    monkeypatch.setenv("VDM3D_MAX_IMAGE_PIXELS", "3000")
    with pytest.raises(InputError) as e:
        read_image(path)
    assert str(e.value) == (f"{path}: claims 64x48 pixels in its header, more than the 3,000 vdm3d decodes; resize "
                            "the image (or raise VDM3D_MAX_IMAGE_PIXELS).")
    monkeypatch.delenv("VDM3D_MAX_IMAGE_PIXELS")
    bomb = tmp_path / "bomb.hdr"  # the header alone: no pixel is ever decoded
    bomb.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 30000 +X 30000\n")
    with pytest.raises(InputError, match=r"bomb.hdr: claims 30000x30000 pixels in its header, more than the "
                                         r"134,217,728 vdm3d decodes"):
        read_image(bomb)


def test_opencv_keeps_its_own_warnings_to_itself(tmp_path, capfd):
    """A file OpenCV cannot open makes it print "[ WARN:0@...] ... can't open/read file" to fd 2 at its
    default level; importing vdm3d.io.images turns that off on the OpenCV installed, whatever its version."""
    import cv2

    import vdm3d.io.images  # noqa: F401  (sets the level on import)

    assert cv2.imread(str(tmp_path / "missing.png")) is None
    assert capfd.readouterr().err == ""


def test_opencv_log_level_is_set_through_either_spelling():
    """OpenCV 4.9 to 4.12 (pyproject allows 4.11) have no ``cv2.utils.logging`` and take the level as a
    number through ``cv2.setLogLevel``; 4.13 and later have only the former. Both reach 'errors only'."""
    from types import SimpleNamespace

    from vdm3d.io.images import quiet_opencv

    calls = []
    old = SimpleNamespace(utils=SimpleNamespace(), setLogLevel=calls.append)
    quiet_opencv(old)
    new = SimpleNamespace(utils=SimpleNamespace(logging=SimpleNamespace(LOG_LEVEL_ERROR=2, setLogLevel=calls.append)))
    quiet_opencv(new)
    assert calls == [2, 2]
