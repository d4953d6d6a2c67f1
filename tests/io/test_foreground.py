"""Foreground masks from alpha or a plain background, recentring, and the errors for bad inputs."""

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from vdm3d.errors import InputError
from vdm3d.io.foreground import edge_fraction, grabcut_mask, load_object_image, mask_from_background, recenter


def disk_image(size=80, center=(30, 50), radius=12, bg=(0.2, 0.6, 0.3), fg=(0.9, 0.1, 0.1)):
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    inside = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 < radius ** 2
    img = np.where(inside[..., None], np.array(fg), np.array(bg)).astype(np.float32)
    return img, inside


def save(path, arr):
    Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


def test_plain_background_gives_the_exact_mask(tmp_path):
    img, inside = disk_image()
    fg = load_object_image(save(tmp_path / "a.png", img), size=80, recentre=False)
    assert fg.mask_source == "background"
    np.testing.assert_allclose(fg.background, (0.2, 0.6, 0.3), atol=1 / 255)
    assert ((fg.alpha.numpy() > 0.5) == inside).all()
    # composited on white: background pixels are white, the object keeps its colour
    assert np.allclose(fg.image.numpy()[~inside], 1.0)
    assert np.allclose(fg.image.numpy()[inside], (0.9, 0.1, 0.1), atol=1 / 255)


def test_rgba_alpha_is_used_and_recentred(tmp_path):
    img, inside = disk_image()
    rgba = np.concatenate([img, inside[..., None].astype(np.float32)], -1)
    fg = load_object_image(save(tmp_path / "a.png", rgba), size=64, border_ratio=0.25)
    assert fg.mask_source == "alpha"
    a = fg.alpha.numpy()
    ys, xs = np.nonzero(a > 0.5)
    # the disk (24 px across) fills 1 - border_ratio = 75% of the 64-px side, centred
    assert abs((xs.max() - xs.min() + 1) - 48) <= 1 and abs((ys.max() - ys.min() + 1) - 48) <= 1
    assert abs(xs.mean() + 0.5 - 32) < 0.5 and abs(ys.mean() + 0.5 - 32) < 0.5
    assert np.allclose(fg.image.numpy()[a < 1e-3], 1.0)


def test_holes_of_background_colour_inside_the_object_are_filled():
    img, inside = disk_image(fg=(0.9, 0.1, 0.1))
    img[28:32, 48:52] = (0.2, 0.6, 0.3)  # a patch of background colour inside the disk
    alpha = mask_from_background(img)
    assert ((alpha > 0.5) == inside).all()


def test_noise_has_no_object_and_the_sentence_names_mask(tmp_path):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="no foreground object .*GrabCut.*--mask MASK.png"):
        load_object_image(save(tmp_path / "noise.png", rng.random((64, 64, 3))), size=32)


def busy_photo(size=120, seed=0):
    """An orange blob on diagonal stripes of five colours with noise (a busy border, no plain colour)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    palette = np.array([(0.1, 0.5, 0.9), (0.2, 0.8, 0.3), (0.9, 0.9, 0.9), (0.3, 0.2, 0.5), (0.1, 0.7, 0.7)])
    img = palette[((xx + yy) // 7).astype(int) % 5] + rng.normal(0, 0.04, (size, size, 3))
    inside = ((yy - 62) / 34) ** 2 + ((xx - 58) / 26) ** 2 < 1
    img[inside] = (0.95, 0.35, 0.1) + rng.normal(0, 0.03, (int(inside.sum()), 3))
    return img.clip(0, 1).astype(np.float32), inside


def test_grabcut_finds_the_object_on_a_busy_background(tmp_path):
    img, inside = busy_photo()
    alpha = grabcut_mask(img)
    iou = ((alpha > 0.5) & inside).sum() / ((alpha > 0.5) | inside).sum()
    assert iou > 0.95
    fg = load_object_image(save(tmp_path / "photo.png", img), size=64)
    assert fg.mask_source == "grabcut" and fg.background is None
    assert np.allclose(fg.image.numpy()[fg.alpha.numpy() < 1e-3], 1.0)  # the clutter is gone


def test_a_mask_file_wins_and_is_checked(tmp_path):
    img, inside = busy_photo()
    photo = save(tmp_path / "photo.png", img)
    half = inside.copy()
    half[:, 58:] = False  # only the left half of the blob: the given mask is used, not GrabCut's
    fg = load_object_image(photo, size=64, recentre=False, mask=save(tmp_path / "m.png", half.astype(np.float32)))
    assert fg.mask_source == "mask"
    a = fg.alpha.numpy() > 0.5
    assert a[:, :28].any() and not a[:, 34:].any()
    with pytest.raises(InputError, match="m2.png: has no foreground object \\(the mask file is empty\\)"):
        load_object_image(photo, size=64, mask=save(tmp_path / "m2.png", np.zeros((120, 120))))
    frame = np.ones((120, 120))
    with pytest.raises(InputError, match="covers 100% of the image border"):
        load_object_image(photo, size=64, mask=save(tmp_path / "m3.png", frame))
    broken = tmp_path / "m4.png"
    broken.write_text("not an image")  # the sentence says a mask was expected, not an image of the object
    with pytest.raises(InputError, match="m4.png: is not a readable image .*; give a PNG, JPEG or WebP black-and-white "
                                         "mask of the object"):
        load_object_image(photo, size=64, mask=broken)


def test_a_mask_of_another_aspect_or_a_photo_is_refused_and_a_scaled_mask_is_resized(tmp_path):
    # QA: a 300x800 photo given as the mask of a 451x300 image was stretched onto it without a word.
    img, inside = busy_photo()  # 120 x 120
    photo = save(tmp_path / "photo.png", img)
    wide = np.zeros((120, 180), np.float32)
    wide[:, 30:150] = inside
    with pytest.raises(InputError, match=r"wide.png: is 180x120 pixels, which is not the shape of the 120x120 image "
                                         r".*; give a mask made for this image, 120x120 pixels or scaled evenly"):
        load_object_image(photo, size=64, mask=save(tmp_path / "wide.png", wide))
    levels = (np.clip(img, 0, 1) * 255).round().astype(np.uint8).mean(-1) / 255  # the photo's grey levels as saved
    grey = round(100 * float(((levels > 0.2) & (levels < 0.8)).mean()))
    assert grey > 50
    with pytest.raises(InputError, match=rf"m.png: is not a black-and-white mask: {grey}% of its pixels are grey"):
        load_object_image(photo, size=64, mask=save(tmp_path / "m.png", img))  # the photo itself
    # the same mask at twice the size, and at 61x61 (an uneven scale within a pixel): resized, same outline
    exact = load_object_image(photo, size=64, recentre=False, mask=save(tmp_path / "a.png", inside.astype(np.float32)))
    double = np.repeat(np.repeat(inside, 2, 0), 2, 1).astype(np.float32)
    twice = load_object_image(photo, size=64, recentre=False, mask=save(tmp_path / "b.png", double))
    assert np.abs(twice.alpha.numpy() - exact.alpha.numpy()).mean() < 0.01
    small = save(tmp_path / "c.png", np.asarray(Image.fromarray(inside.astype(np.float32)).resize((61, 61))))
    assert np.abs(load_object_image(photo, size=64, recentre=False, mask=small).alpha.numpy()
                  - exact.alpha.numpy()).mean() < 0.03
    soft = ndimage.gaussian_filter(inside.astype(np.float32), 1.5)  # a soft-edged matte is still a mask
    assert load_object_image(photo, size=64, mask=save(tmp_path / "d.png", soft)).mask_source == "mask"


def test_edge_fraction_of_box_and_border():
    a = np.zeros((100, 100), np.float32)
    a[10:90, 10:50] = 1  # reaches the box (margin 0.1) on its left, top and bottom sides
    assert edge_fraction(a) == 0.0
    assert abs(edge_fraction(a, 0.1) - (40 + 40 + 81) / (4 * 81)) < 0.02


def test_no_foreground_and_not_an_image(tmp_path):
    with pytest.raises(InputError, match="no foreground"):
        load_object_image(save(tmp_path / "blank.png", np.ones((64, 64, 3))), size=32)
    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_object_image(bad, size=32)
    with pytest.raises(InputError, match="does not exist"):
        load_object_image(tmp_path / "missing.png", size=32)


def test_recenter_keeps_colour_at_the_edges():
    img, inside = disk_image(fg=(0.0, 0.0, 0.0))
    out, alpha = recenter(img, inside.astype(np.float32), 16, 0.2)
    # premultiplied resize: a half-covered pixel is a mix of black and white, not of black and green
    edge = (alpha > 0.2) & (alpha < 0.8)
    assert edge.any()
    np.testing.assert_allclose(out[edge], np.repeat(1 - alpha[edge][:, None], 3, 1), atol=1e-5)


def test_object_photo_is_read_upright(tmp_path):
    """A portrait photo stored sideways with EXIF orientation 6 (shown turned 90 degrees clockwise) gives the
    same object image as the same photo saved upright: the disk lands where a viewer shows it."""
    img, _ = disk_image(size=80, center=(20, 60))
    upright = save(tmp_path / "upright.png", img)
    stored = Image.fromarray((np.rot90(img, 1) * 255).round().astype(np.uint8))  # turned back 90 deg left
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "phone.png", exif=exif)
    a = load_object_image(upright, 64, recentre=False)
    b = load_object_image(tmp_path / "phone.png", 64, recentre=False)
    np.testing.assert_array_equal(b.alpha.numpy(), a.alpha.numpy())
    np.testing.assert_array_equal(b.image.numpy(), a.image.numpy())


def test_a_16_bit_grey_photo_reads_as_its_8_bit_twin(tmp_path):
    """PIL opens 16-bit grey PNGs as mode I;16, whose convert("RGBA") clips every value above 255: the photo
    became pure white and "had no object". Now it reads as the same picture as its 8-bit copy."""
    from vdm3d.io.foreground import read_rgba

    img, _ = disk_image(fg=(0.9, 0.9, 0.9))  # a light disk on a darker plain background
    grey = img.mean(-1)
    Image.fromarray((grey * 65535).round().astype(np.uint16)).save(tmp_path / "g16.png")
    Image.fromarray((grey * 255).round().astype(np.uint8)).save(tmp_path / "g8.png")
    a16, _ = read_rgba(tmp_path / "g16.png")
    a8, _ = read_rgba(tmp_path / "g8.png")
    assert np.abs(a16 - a8).max() <= 0.5 / 255 + 1e-6
    fg16, fg8 = load_object_image(tmp_path / "g16.png", 64), load_object_image(tmp_path / "g8.png", 64)
    assert np.abs(fg16.alpha.numpy() - fg8.alpha.numpy()).mean() < 0.01


def test_a_large_object_photo_is_masked_and_recentred_at_a_fraction_of_its_size(tmp_path, monkeypatch):
    """QA: a 4000x3000 photo cost 15-27 s before a 64 px object run started (float conversion, mask, hole
    filling and recentring at full size). It is now read shrunk to no less than 8 x 64 = 512 px on its
    shorter side (1320 x 1080 by 2 -> 660 x 540), its mask file too, and the result stays within a grey level on
    average of the full-size processing (the reference: the same call with no shrinking), with the object's
    area and centre in place."""
    from vdm3d.io import foreground

    img, inside = disk_image(size=1320, center=(560, 700), radius=300)
    img = img[:1080]  # 1320 x 1080
    save(tmp_path / "big.png", img)
    save(tmp_path / "big_mask.png", inside[:1080].astype(np.float32))
    seen = []
    real = foreground.mask_from_background
    monkeypatch.setattr(foreground, "mask_from_background",
                        lambda rgb, *a, **k: seen.append(rgb.shape) or real(rgb, *a, **k))
    fast = load_object_image(tmp_path / "big.png", 64)
    with_mask = load_object_image(tmp_path / "big.png", 64, mask=tmp_path / "big_mask.png")
    assert seen == [(540, 660, 3)] and foreground.READ_MARGIN == 8
    monkeypatch.setattr(foreground, "READ_MARGIN", 10_000)  # the reference: every pixel
    full = load_object_image(tmp_path / "big.png", 64)
    full_mask = load_object_image(tmp_path / "big.png", 64, mask=tmp_path / "big_mask.png")
    assert seen[-1] == (1080, 1320, 3)
    for got, ref in ((fast, full), (with_mask, full_mask)):
        assert got.image.shape == (64, 64, 3) and got.mask_source == ref.mask_source
        # measured: mean differences 0.0025 / 0.0034 (colour / alpha); the edge pixels differ more (up to 0.22),
        # as the object's box is found to a pixel of the shrunk image, a sixth of an output pixel here
        assert float((got.image - ref.image).abs().mean()) < 3e-3 and float((got.alpha - ref.alpha).abs().mean()) < 4e-3
        yy, xx = np.mgrid[0:64, 0:64]
        for a, b in ((got.alpha.numpy(), ref.alpha.numpy()),):
            assert abs(a.sum() / b.sum() - 1) < 0.01  # the object's area
            for grid in (yy, xx):  # and its centre, to a fifth of a pixel
                assert abs((a * grid).sum() / a.sum() - (b * grid).sum() / b.sum()) < 0.2


def test_a_png_with_a_broken_chunk_is_refused_in_one_sentence(tmp_path):
    """PIL reports a damaged PNG chunk as SyntaxError ("broken PNG file") and a short one as EOFError; read_rgba
    let both through as tracebacks (found by the reader mutation test: one bit flipped in a chunk's length)."""
    from vdm3d.io.foreground import read_rgba

    good = save(tmp_path / "good.png", disk_image(size=16)[0])
    data = bytearray(good.read_bytes())
    data[36] ^= 1 << 3  # the IDAT chunk's length: PIL then takes bytes of the pixel data for the next chunk
    broken = tmp_path / "broken.png"
    broken.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"broken\.png: is not a readable image \((SyntaxError|EOFError)\)"):
        read_rgba(broken)
