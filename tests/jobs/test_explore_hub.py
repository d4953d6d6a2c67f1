"""The explore job end to end with the Wan-based hub adapters (tiny random configurations, 2 steps)."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from vdm3d.errors import ConfigError
from vdm3d.jobs.explore import ExploreConfig, run_explore


@pytest.fixture(scope="module")
def models_folder(tmp_path_factory):
    from vdm3d.models.hub.wan import WanBackbone, WanSettings, tiny_components

    root = tmp_path_factory.mktemp("models")
    for name in ("worldwarp", "wan2.1-t2v-1.3b"):
        WanBackbone(tiny_components(0), WanSettings(frames=5, height=64, width=64, max_text_tokens=8)
                    ).save_pretrained(root / name)
    return root


@pytest.mark.slow
@pytest.mark.parametrize("name", ["worldwarp", "wan2.1-t2v-1.3b"])
def test_wan_adapters_run_the_job_with_4x_temporal_chunks(models_folder, tmp_path, monkeypatch, name):
    monkeypatch.setenv("VDM3D_MODELS", str(models_folder))
    img = (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "start.png")
    config = ExploreConfig(image=tmp_path / "start.png", move=("dolly-in",), frames=9, chunk=5, context=1,
                           backbone=name, steps=2, fit_steps=2, prompt="a room", out=tmp_path / "run")
    result = run_explore(config, progress=None)
    video = result.video.images
    assert video.shape == (9, 64, 64, 3) and bool(torch.isfinite(video).all())
    np.testing.assert_allclose(video[0].numpy(), img / 255.0, atol=1e-6)  # frame 0 is the input image
    assert float((video[1:] - video[0]).abs().mean()) > 1e-3  # the random model made new frames
    with pytest.raises(ConfigError, match="4k \\+ 1"):
        run_explore(dataclasses.replace(config, chunk=8, out=tmp_path / "bad"), progress=None)
    assert not (tmp_path / "bad").exists()
