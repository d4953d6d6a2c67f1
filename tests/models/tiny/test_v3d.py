"""The V3D scene model: untrained it is the video model exactly; its reprojected features reach the
output once the stem is trained, the null branch drops them, and it saves and loads in float16."""

from __future__ import annotations

import shutil

import pytest
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.models.tiny import WEIGHTS_DIR, load_tiny
from vdm3d.models.tiny.backbone import TinyVideoBackbone
from vdm3d.models.tiny.checkpoint import config_from_dict, load_model, save_model
from vdm3d.models.tiny.v3d import V3dSceneBackbone, V3dSceneConfig, from_video
from vdm3d.protocols import Conditioning


def _cameras(n: int, shift: float = 0.1) -> Cameras:
    K = torch.tensor([[55.4, 0, 32], [0, 55.4, 32], [0, 0, 1.0]]).expand(n, 3, 3)
    c2w = torch.eye(4).repeat(n, 1, 1)
    c2w[:, 0, 3] = shift * torch.arange(n)
    return Cameras(K, c2w, 64, 64)


def _cond(frames: int = 4, views: int = 2) -> Conditioning:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(1, views, 64, 64, 3, generator=g)
    src = _cameras(views, 0.3)
    return Conditioning(reference=images[:, 0], cameras=_cameras(frames).reshape(1, frames),
                        extras={"reference_c2w": src.c2w[:1], "scene_images": images,
                                "scene_cameras": src.reshape(1, views), "scene_depth_range": torch.tensor([[0.5, 6.0]])})


@pytest.fixture(scope="module")
def parts():
    video, _ = load_model(WEIGHTS_DIR / "video.json")
    vae, _ = load_model(WEIGHTS_DIR / "vae.json")
    return video, vae


def test_the_untrained_model_is_the_video_model_exactly(parts):
    video, vae = parts
    plain = TinyVideoBackbone(vae, video, frames=4)
    v3d = V3dSceneBackbone(vae, from_video(video), frames=4)
    cond = _cond()
    x = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = v3d.denoise(x, torch.tensor([[2.0]]), v3d.condition(cond))
        b = plain.denoise(x, torch.tensor([[2.0]]), plain.condition(cond))
    assert torch.equal(a, b)


def test_reprojected_features_reach_the_output_and_the_null_branch_drops_them(parts):
    video, vae = parts
    net = from_video(video)
    torch.nn.init.normal_(net.feature_stem[-1].weight, std=0.05)
    v3d = V3dSceneBackbone(vae, net, frames=4)
    cond = _cond()
    enc, null = v3d.condition(cond), v3d.condition(cond, null=True)
    assert enc.scene.shape == (1, 4, V3dSceneConfig().scene_channels, 32, 32)
    assert enc.scene.abs().sum() > 0 and not null.scene.any()
    # other input images change the output through the reprojection alone (same reference)
    images = cond.extras["scene_images"].clone()
    images[:, 1] = 1 - images[:, 1]
    other = v3d.condition(Conditioning(reference=cond.reference, cameras=cond.cameras,
                                       extras={**cond.extras, "scene_images": images}))
    x = torch.randn(1, 4, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a, b = v3d.denoise(x, torch.tensor([[2.0]]), enc), v3d.denoise(x, torch.tensor([[2.0]]), other)
    assert (a - b).abs().max() > 1e-3
    # both CFG branches join into one batch
    joined = v3d.concat_conditions([enc, null], 1)
    assert joined is not None and joined.scene.shape[0] == 2


def test_the_scene_model_saves_in_float16_and_loads_by_name(parts, tmp_path):
    video, _ = parts
    net = from_video(video)
    torch.nn.init.normal_(net.feature_stem[-1].weight, std=0.05)
    for name in ("vae.json", "vae.safetensors"):
        shutil.copy(WEIGHTS_DIR / name, tmp_path / name)
    save_model(tmp_path, "v3d_scene", "v3d_scene", net.half(), {"notes": "test"},
               extra={"vae": "vae", "resolution": [64, 64], "frames": 8})
    loaded = load_tiny("v3d_scene", weights_dir=tmp_path)
    assert isinstance(loaded, V3dSceneBackbone) and loaded.frames == 8
    assert loaded.denoiser.config == net.config
    for (k, a), b in zip(net.state_dict().items(), loaded.denoiser.state_dict().values()):
        assert torch.equal(a.float(), b), k
    assert config_from_dict(V3dSceneConfig, {"denoiser": {"channels": [64, 128]}, "depths": 4}).depths == 4
