"""`vdm3d object --preset sv3d | sv3d-u | v3d` end to end on tiny random hub weights built in a temp folder.

The weights are the real diffusers/transformers classes at a few thousand parameters each
(:func:`vdm3d.models.hub.svd.tiny_components`, :func:`vdm3d.models.hub.sv3d.tiny_components`), saved in
the layout the registry looks for (``$VDM3D_MODELS/<name>/unet, vae, image_encoder, scheduler``). The
presets keep their published orbit, frame count and guidance; only the sizes shrink (32 px, 2 steps).
"""

from __future__ import annotations

import json

import pytest
import torch

from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.cli.main import main as cli
from vdm3d.errors import ConfigError
from vdm3d.jobs.object_orbit import BackboneOrbit, check_orbit_backbone, orbit_plan

SIZE = 32
FAST = ["--resolution", str(SIZE), "--steps", "2", "--fit-steps", "3", "--carve-resolution", "16",
        "--num-points", "64", "--max-gaussians", "200", "--mesh-resolution", "16", "--mesh-views", "4",
        "--turntable-frames", "2", "--texture", "vertex", "--refine-steps", "1", "--perceptual", "ms-ssim"]


def tiny_hub(name: str):
    from vdm3d.models.hub import sv3d, svd

    if name == "v3d":
        return svd.SVDBackbone(svd.tiny_components(0), svd.V3D_SETTINGS, name="v3d")
    settings = sv3d.SV3DSettings(trained_orbit="sv3d-static" if name == "sv3d-u" else None)
    return sv3d.SV3DBackbone(sv3d.tiny_components(0, cameras=name == "sv3d-p"), settings, name=name)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in ("v3d", "sv3d-p", "sv3d-u"):
        tiny_hub(name).save_pretrained(root / name)
    return root


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from vdm3d.data.procedural import make_object
    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.io.images import write_image

    cam = cameras_from_sv3d(10.0, 0.0, 3.2, 40.0, 48, 48).reshape(1)
    buf = render_buffers(make_object(1_500_003), cam, background=(1.0, 1.0, 1.0))
    path = tmp_path_factory.mktemp("img") / "object.png"
    write_image(path, torch.cat([buf.rgb[0], buf.alpha[0, ..., None]], -1))
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("preset", "frames", "input_index"), [("sv3d", 21, 20), ("sv3d-u", 21, 20), ("v3d", 18, 0)])
def test_hub_presets_run_end_to_end_on_their_trained_clip(preset, frames, input_index, models, image, tmp_path,
                                                         monkeypatch, capsys):
    monkeypatch.setenv("VDM3D_MODELS", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    assert cli(["object", "--image", str(image), "--out", str(out), "--preset", preset, *FAST]) == 0, \
        capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input_index"] == input_index and len(list((out / "orbit").glob("*.png"))) == frames
    # one clip: the whole orbit, the input view in its trained place, with that clip's CFG weights
    (clip,) = manifest["orbit_sampling"]
    assert clip["frames"] == list(range(frames))
    weights = clip["cfg_weights"]
    if preset == "v3d":
        assert weights == [4.5] * 18
    else:
        assert len(weights) == 21 and weights[0] == 1.0 and weights[10] == 2.5 and weights[20] == 1.0
        assert weights == [round(1.0 + 0.15 * min(f, 20 - f), 6) for f in range(21)]
    assert "CFG weights" in capsys.readouterr().out
    for name in ("splats.ply", "mesh.glb", "orbit.mp4", "cameras/transforms.json"):
        assert (out / name).is_file(), name


def test_a_backbone_without_cameras_is_held_to_its_trained_orbit():
    u = tiny_hub("sv3d-u")
    assert u.slots == {"reference"} and u.trained_orbit == "sv3d-static"
    check_orbit_backbone(u, "sv3d-u", "sv3d-static", None)
    check_orbit_backbone(u, "sv3d-u", "sv3d-static", 21)
    with pytest.raises(ConfigError, match="--orbit sv3d-static"):
        check_orbit_backbone(u, "sv3d-u", "v3d", None)
    with pytest.raises(ConfigError, match="21 views"):
        check_orbit_backbone(u, "sv3d-u", "sv3d-static", 12)
    svd_plain = tiny_hub("v3d")
    object.__setattr__(svd_plain, "trained_orbit", None)  # plain SVD: no orbit of its own
    with pytest.raises(ConfigError, match="no cameras conditioning"):
        check_orbit_backbone(svd_plain, "svd", "v3d", None)
    check_orbit_backbone(tiny_hub("sv3d-p"), "sv3d-p", "v3d", 12)  # cameras: any orbit


def test_sv3d_p_clip_is_referenced_to_the_input_view_last():
    """Sampled as one 21-frame clip, SV3D_p's azimuths are measured from the input view (frame 20), so
    frame 10 is the back view at 188.6 degrees, as sgm builds them; each frame's camera reaches the UNet."""
    bb = tiny_hub("sv3d-p")
    plan = orbit_plan("sv3d-static", 10.0, 2.0, 33.8, SIZE)
    seen = []
    denoise = bb.denoise
    bb.denoise = lambda x, s, c: (seen.append(c.added_time_ids.clone()), denoise(x, s, c))[1]
    source = BackboneOrbit(bb, steps=1, guidance="triangular", guidance_scale=2.5)
    with torch.no_grad():
        source.generate(torch.rand(SIZE, SIZE, 3), plan, torch.Generator().manual_seed(0))
    ids = seen[0][0]  # [F, 3] = cond_aug, polar, azimuth
    assert ids.shape == (21, 3)
    polar, az = bb.default_angles(21)  # sgm's default orbit at elevation 10
    torch.testing.assert_close(ids[:, 1].double(), polar, rtol=0, atol=1e-5)
    torch.testing.assert_close(ids[:, 2].double(), az, rtol=0, atol=1e-4)


@pytest.mark.slow
def test_v3d_on_another_orbit_is_refused_in_one_sentence(models, image, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VDM3D_MODELS", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    code = cli(["object", "--image", str(image), "--out", str(out), "--preset", "v3d", "--orbit", "sv3d-static",
                *FAST])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--orbit v3d" in err and err.count("\n") == 0, err
    assert not out.exists() and not (tmp_path / ".run.partial").exists()


def test_device_is_where_the_hub_backbone_ran_and_the_manifest_says_so(models, image, tmp_path, monkeypatch, capsys):
    """`--device auto` is the CPU on a machine without CUDA (the run is the CPU run: the protocol's calls
    cross no device there), and the manifest names where the backbone ran and in what precision; a device
    this process has not is refused before any work."""
    monkeypatch.setenv("VDM3D_MODELS", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if torch.cuda.is_available():
        pytest.skip("checks the CPU fallback of --device auto")
    out = tmp_path / "run"
    assert cli(["object", "--image", str(image), "--out", str(out), "--preset", "v3d", "--device", "auto",
                *FAST]) == 0, capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backends"]["backbone_device"] == ["cpu float32"]
    capsys.readouterr()
    assert cli(["object", "--image", str(image), "--out", str(tmp_path / "gpu"), "--preset", "v3d", "--device",
                "cuda", *FAST]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda: this process sees no CUDA device")
    assert not (tmp_path / "gpu").exists()
