"""The tiny video backbone: protocol, preconditioning limits, condition handling, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.errors import InputError, MissingWeightsError
from vdm3d.protocols import Backbone, Conditioning
from vdm3d.models.tiny import DenoiserConfig, TinyVAE, TinyVideoBackbone, VAEConfig, VideoDenoiser
from vdm3d.models.tiny.backbone import REFERENCE_SIGMA, prepend_reference, reference_rays, relative_plucker
from vdm3d.models.tiny.blocks import SpatialAttention
from vdm3d.models.tiny.checkpoint import load_model, save_model


def tiny_backbone(views: bool = False) -> TinyVideoBackbone:
    """A small random backbone; ``views``: 3D attention and the prepended reference frame."""
    torch.manual_seed(0)
    vae = TinyVAE(VAEConfig(channels=(8, 8)))
    net = VideoDenoiser(DenoiserConfig(channels=(16, 16), map_features=4, emb_dim=16, max_frames=4,
                                       attention="views" if views else "frame", reference_frame=views))
    for p in net.conv_out.parameters():  # non-zero output so that conditions matter
        torch.nn.init.normal_(p, std=0.1)
    return TinyVideoBackbone(vae, net, resolution=(32, 32), frames=2)


def orbit_cams(b: int, f: int, size: int = 32) -> tuple[Cameras, torch.Tensor]:
    ang = torch.linspace(0, 3, b * (f + 1)).reshape(b, f + 1)
    eye = torch.stack([3 * ang.cos(), 3 * ang.sin(), torch.full_like(ang, 0.5)], -1)
    c2w = look_at(eye, torch.zeros_like(eye), torch.tensor([0.0, 0, 1]).expand_as(eye))
    cams = Cameras.from_fov(40.0, size, size, c2w)
    return cams[:, 1:], c2w[:, 0]


def test_is_a_backbone_with_declared_layout():
    bb = tiny_backbone()
    assert isinstance(bb, Backbone)
    assert bb.slots == {"reference", "cameras", "maps", "keyframes"}
    x = torch.rand(1, 2, 32, 32, 3)
    z = bb.encode(x)
    assert z.shape == (1, 2, bb.latent_channels, 32 // bb.spatial_factor, 32 // bb.spatial_factor)
    assert bb.decode(z).shape == x.shape


@pytest.mark.parametrize("views", [False, True])
@pytest.mark.parametrize("sigma_shape", ["batch", "frame", "element"])
def test_denoiser_is_identity_at_zero_noise_and_accepts_per_element_sigma(sigma_shape, views):
    bb = tiny_backbone(views)
    cams, ref_c2w = orbit_cams(2, 2)
    cond = bb.condition(Conditioning(reference=torch.rand(2, 32, 32, 3), cameras=cams,
                                     extras={"reference_c2w": ref_c2w}))
    x = torch.randn(2, 2, 4, 8, 8)
    shape = {"batch": (2,), "frame": (2, 2), "element": (2, 2, 1, 8, 8)}[sigma_shape]
    tiny = torch.full(shape, 1e-6)
    # EDM v-scaling: c_skip -> 1 and c_out -> 0 as sigma -> 0, so D(x, 0) = x exactly in the limit.
    torch.testing.assert_close(bb.denoise(x, tiny, cond), x, atol=1e-5, rtol=0)
    # at a huge sigma, D no longer depends on x (c_skip -> 0): the x-dependence vanishes
    big = torch.full(shape, 1e4)
    d1, d2 = bb.denoise(x, big, cond), bb.denoise(x + 1.0, big, cond)
    assert (d1 - d2).abs().max() < 1e-3


@pytest.mark.parametrize("views", [False, True])
def test_per_frame_sigma_changes_only_via_noise_level(views):
    bb = tiny_backbone(views)
    cams, ref_c2w = orbit_cams(1, 2)
    cond = bb.condition(Conditioning(cameras=cams, extras={"reference_c2w": ref_c2w}))
    x = torch.randn(1, 2, 4, 8, 8)
    a = bb.denoise(x, torch.tensor([[0.5, 0.5]]), cond)
    b = bb.denoise(x, torch.tensor([0.5]), cond)
    c = bb.denoise(x, torch.full((1, 2, 1, 8, 8), 0.5), cond)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)
    d = bb.denoise(x, torch.tensor([[0.5, 2.0]]), cond)
    assert (d - a).abs().max() > 1e-4


@pytest.mark.parametrize("views", [False, True])
def test_conditions_reach_the_output_and_null_drops_them(views):
    bb = tiny_backbone(views)
    cams, ref_c2w = orbit_cams(1, 2)
    ref = torch.rand(1, 32, 32, 3)
    maps = torch.rand(1, 2, 32, 32, 5)
    full = Conditioning(reference=ref, cameras=cams, maps=maps, keyframes={0: ref},
                        extras={"reference_c2w": ref_c2w})
    x, s = torch.randn(1, 2, 4, 8, 8), torch.tensor([1.0])
    out_full = bb.denoise(x, s, bb.condition(full))
    out_null = bb.denoise(x, s, bb.condition(full, null=True))
    out_cams = bb.denoise(x, s, bb.condition(Conditioning(cameras=cams, extras={"reference_c2w": ref_c2w})))
    assert (out_full - out_null).abs().max() > 1e-4
    # the null branch keeps the cameras only, which is exactly a cameras-only condition
    torch.testing.assert_close(out_null, out_cams)


def test_relative_plucker_is_invariant_to_a_world_transform():
    cams, ref_c2w = orbit_cams(1, 3)
    p1 = relative_plucker(cams, ref_c2w, (8, 8))
    T = look_at(torch.tensor([1.0, -2.0, 0.3]), torch.tensor([0.2, 0.1, 0.0]), torch.tensor([0.0, 0, 1]))
    moved = Cameras(cams.Ks, T @ cams.c2w, cams.width, cams.height)
    p2 = relative_plucker(moved, T @ ref_c2w, (8, 8))
    torch.testing.assert_close(p1, p2, atol=1e-4, rtol=0)
    assert p1.shape == (1, 3, 6, 8, 8)


def test_reference_rays_are_the_rays_of_a_target_at_the_reference_pose():
    cams, ref_c2w = orbit_cams(2, 3)
    at_ref = Cameras(cams.Ks, torch.cat([ref_c2w[:, None], cams.c2w[:, 1:]], 1), cams.width, cams.height)
    rays = reference_rays(at_ref, (8, 8))
    torch.testing.assert_close(rays, relative_plucker(at_ref, ref_c2w, (8, 8))[:, 0], atol=1e-5, rtol=0)
    # directions through the principal point look down +z (OpenCV), and moments vanish (origin 0)
    assert rays.shape == (2, 6, 8, 8) and rays[:, 3:].abs().max() < 1e-6
    centre = rays[:, :3, 3:5, 3:5].mean(dim=(2, 3))
    torch.testing.assert_close(centre, torch.tensor([[0.0, 0, 1]] * 2), atol=2e-2, rtol=0)


def test_prepended_reference_frame_is_the_clean_reference_with_its_own_rays():
    bb = tiny_backbone(views=True)
    cams, ref_c2w = orbit_cams(1, 2)
    ref = torch.rand(1, 32, 32, 3)
    cond = bb.condition(Conditioning(reference=ref, cameras=cams, maps=torch.rand(1, 2, 32, 32, 5),
                                     keyframes={1: ref}, extras={"reference_c2w": ref_c2w}))
    x, sigma = torch.randn(1, 2, 4, 8, 8), torch.full((1, 2, 1, 8, 8), 3.0)
    x_all, s_all, static = prepend_reference(x, sigma, cond.static, 4, cond.reference_rays)
    torch.testing.assert_close(x_all[:, 0], bb.vae.encode(ref))
    assert torch.equal(x_all[:, 1:], x) and s_all[:, 0].eq(REFERENCE_SIGMA).all() and s_all[:, 1:].eq(3.0).all()
    torch.testing.assert_close(static[:, 0, 5:11], cond.reference_rays[0][None])
    assert static[:, 0, 12:].abs().max() == 0  # no map latent, no keyframe on the reference frame
    assert torch.equal(static[:, 1:], cond.static)


def test_video_wide_attention_mixes_frames_and_is_per_frame_attention_for_one_frame():
    torch.manual_seed(0)
    attn = SpatialAttention(8, 2)
    torch.nn.init.normal_(attn.attn.out.weight, std=0.3)
    x = torch.randn(6, 8, 4, 4)  # 2 videos x 3 frames
    # frames=1 is attention over each frame's own pixels, computed independently per frame
    torch.testing.assert_close(attn(x, 1), torch.cat([attn(x[i:i + 1]) for i in range(6)]))
    y = x.clone()
    y[0] += torch.randn_like(y[0])  # change frame 0 of video 0
    d = (attn(y, 3) - attn(x, 3)).abs().amax(dim=(1, 2, 3))
    assert d[1] > 1e-3 and d[2] > 1e-3  # the other frames of that video see it
    assert d[3:].max() == 0  # the other video does not
    assert ((attn(y, 1) - attn(x, 1)).abs().amax(dim=(1, 2, 3))[1:] == 0).all()


def test_bad_inputs_raise_one_sentence_errors():
    bb = tiny_backbone()
    cams, _ = orbit_cams(1, 2)
    with pytest.raises(InputError, match="maps must have 5 channels"):
        bb.condition(Conditioning(cameras=cams, maps=torch.rand(1, 2, 32, 32, 3)))
    with pytest.raises(InputError, match="keyframe index 5"):
        bb.condition(Conditioning(cameras=cams, keyframes={5: torch.rand(1, 32, 32, 3)}))
    with pytest.raises(InputError, match="no condition"):
        bb.condition(Conditioning())


def test_checkpoint_round_trip_is_exact(tmp_path):
    bb = tiny_backbone()
    save_model(tmp_path, "vae", "vae", bb.vae, {"steps": 0})
    save_model(tmp_path, "video", "video", bb.denoiser, {"steps": 0}, extra={"vae": "vae", "frames": 2,
                                                                          "resolution": [32, 32]})
    from vdm3d.models.tiny import available, load_tiny

    loaded = load_tiny("video", weights_dir=tmp_path)
    assert isinstance(loaded, TinyVideoBackbone) and loaded.resolution == (32, 32)
    for (k, a), (_, b) in zip(bb.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    assert set(available(tmp_path)) == {"vae", "video"}
    meta = json.loads((tmp_path / "video.json").read_text())
    meta["config"]["bogus"] = 1
    (tmp_path / "video.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="unknown config fields"):
        load_model(tmp_path / "video.json")
    (tmp_path / "vae.safetensors").unlink()
    with pytest.raises(MissingWeightsError):
        load_model(tmp_path / "vae.json")
    with pytest.raises(InputError, match="no tiny model named"):
        load_tiny("nope", weights_dir=tmp_path)


def test_cfg_branches_in_one_call_match_two_calls():
    """The conditional branch has warped maps, the null branch none: joined on the batch (zero maps
    for the null branch) the single call reproduces both branches of the two-call loop."""
    from vdm3d.diffusion.guiders import CFG
    from vdm3d.diffusion.samplers import sample
    from vdm3d.diffusion.schedules import EdmSchedule

    bb = tiny_backbone(views=True)
    cams, ref_c2w = orbit_cams(1, 2)
    g = torch.Generator().manual_seed(3)
    cond = Conditioning(reference=torch.rand(1, 32, 32, 3, generator=g), cameras=cams,
                        maps=torch.rand(1, 2, 32, 32, 5, generator=g), extras={"reference_c2w": ref_c2w})
    enc, null = bb.condition(cond), bb.condition(cond, null=True)
    joined = bb.concat_conditions([enc, null], 1)
    x, sigma = torch.randn(1, 2, 4, 8, 8, generator=g), torch.tensor([1.5])
    with torch.no_grad():
        both = bb.denoise(torch.cat([x, x]), torch.cat([sigma, sigma]), joined)
        torch.testing.assert_close(both[:1], bb.denoise(x, sigma, enc), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(both[1:], bb.denoise(x, sigma, null), rtol=1e-5, atol=1e-5)
        runs = [sample(bb, EdmSchedule(3, sigma_max=80.0).sigmas(), cond=cond, shape=(1, 2, 4, 8, 8),
                       guider=CFG(scale=2.5), generator=torch.Generator().manual_seed(0), batch_guidance=b)
                for b in (True, False)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)
