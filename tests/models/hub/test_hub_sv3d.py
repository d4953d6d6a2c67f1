"""SV3D: per-frame camera embeddings, the SV3D angle conventions, and the UNet against diffusers'."""

from __future__ import annotations

import math

import torch

from hub_helpers import SIZE, reference_image
from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.models.hub.sv3d import polar_azimuth_from_cameras, tiny_components
from vdm3d.protocols import Conditioning


def sgm_timestep_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """sgm's sinusoid: [cos(v f_i), sin(v f_i)] with f_i = 10000^(-i / (dim/2)), written independently."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def test_without_cameras_equals_the_diffusers_unet():
    """SV3D_u layout (no camera widths): SV3DUNet.forward must reproduce UNetSpatioTemporalConditionModel."""
    from diffusers import UNetSpatioTemporalConditionModel

    ours = tiny_components(0, cameras=False)["unet"]
    theirs = UNetSpatioTemporalConditionModel.from_config(ours.config)
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(2)
    x, ctx, ids = (
        torch.randn(2, 3, 8, 16, 16, generator=g),
        torch.randn(2, 1, 16, generator=g),
        torch.rand(2, 1, generator=g),
    )
    with torch.no_grad():
        a = ours(x, torch.tensor([0.3, -1.0]), ctx, ids).sample
        b = theirs(x, torch.tensor([0.3, -1.0]), ctx, ids).sample
    assert a.abs().max() > 0.1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_added_ids_embedded_per_frame_with_sgm_widths():
    unet = tiny_components(0)["unet"]
    assert unet.camera_embed_dim == 12
    ids = torch.tensor([[[1e-5, 1.2, 0.3], [1e-5, 1.4, 2.0], [1e-5, 1.5707, 0.0]]])  # [B=1, F=3, 3]
    vector = torch.cat(
        [
            sgm_timestep_embedding(ids[0, :, 0], 8),
            sgm_timestep_embedding(ids[0, :, 1], 12),
            sgm_timestep_embedding(ids[0, :, 2], 12),
        ],
        dim=-1,
    )
    with torch.no_grad():
        torch.testing.assert_close(
            unet.embed_added_ids(ids), unet.add_embedding(vector), rtol=1e-5, atol=1e-6
        )


def test_angles_from_cameras_invert_cameras_from_sv3d():
    elev = torch.tensor([10.0, -5.0, 30.0, 10.0], dtype=torch.float64)
    az = torch.tensor([30.0, 120.0, 250.0, 75.0], dtype=torch.float64)
    cams = cameras_from_sv3d(elev, az, 2.0, 40.0, SIZE, SIZE, dtype=torch.float64)
    polar, azimuth = polar_azimuth_from_cameras(cams)
    torch.testing.assert_close(polar, torch.deg2rad(90.0 - elev).double(), rtol=0, atol=1e-9)
    # azimuth is re-referenced to the last frame (the input view in SV3D)
    torch.testing.assert_close(azimuth, torch.deg2rad((az - az[-1]) % 360).double(), rtol=0, atol=1e-9)


def test_default_orbit_matches_sv3d(tiny_sv3d):
    polar, az = tiny_sv3d.default_angles(21)
    assert float(az[-1]) == 0.0 and abs(math.degrees(float(az[10])) - 188.5714) < 1e-3
    torch.testing.assert_close(polar, torch.full((21,), math.radians(80.0), dtype=torch.float64))


def test_cameras_slot_drives_per_frame_ids(tiny_sv3d):
    cams = cameras_from_sv3d(torch.tensor([20.0, 20.0]), torch.tensor([90.0, 0.0]), 2.0, 40.0, SIZE, SIZE)
    cond = tiny_sv3d.condition(Conditioning(reference=reference_image(), cameras=cams))
    ids = cond.added_time_ids  # [1, 2, 3]
    torch.testing.assert_close(ids[0, :, 1], torch.full((2,), math.radians(70.0)), rtol=0, atol=1e-6)
    torch.testing.assert_close(ids[0, :, 2], torch.tensor([math.pi / 2, 0.0]), rtol=0, atol=1e-6)
    null = tiny_sv3d.condition(Conditioning(reference=reference_image(), cameras=cams), null=True)
    assert torch.equal(null.added_time_ids, ids) and null.image_embeds.abs().max() == 0  # cameras kept
