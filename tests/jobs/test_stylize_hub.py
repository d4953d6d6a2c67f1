"""`vdm3d stylize --backbone hub` end to end on tiny random FLUX + ControlNet and widened CogVideoX (GGI)
weights written to a temporary folder: the hub path runs the same stages as the embedded one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from vdm3d.jobs import stylize as job

pytest.importorskip("diffusers")
pytest.importorskip("moderngl")
pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stylize import _inputs  # noqa: E402


@pytest.mark.slow
def test_hub_backbones_run_the_job(tmp_path, monkeypatch):
    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings, widen_patch_embed
    from vdm3d.models.hub.cogvideox import tiny_components as cog_tiny
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings
    from vdm3d.models.hub.flux import tiny_components as flux_tiny

    flux = FluxBackbone(flux_tiny(0, single_layers=5),  # single blocks 1-4 for the style LoRA
                        FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8))
    flux.save_pretrained(tmp_path / "flux")
    comps = cog_tiny(0, frames=9)
    widen_patch_embed(comps["transformer"], 4)
    CogVideoXBackbone(comps, CogVideoXSettings(frames=9, height=32, width=32, max_text_tokens=8)
                      ).save_pretrained(tmp_path / "ggi")
    _inputs(tmp_path, frames=9)
    seen = []
    real = job.model_maps
    monkeypatch.setattr(job, "model_maps", lambda *a: seen.append(real(*a)) or seen[-1])
    cfg = job.StylizeConfig(mesh=tmp_path / "scene.glb", trajectory=tmp_path / "path.json",
                            style=tmp_path / "style.png", out=tmp_path / "run", backbone="hub",
                            anchor_path=tmp_path / "flux", inbetween_path=tmp_path / "ggi", resolution=32,
                            arc_frames=5, steps=2, prompt="a toy", style_lora_steps=2,
                            style_lora_cache=tmp_path / "loras")
    result = job.run_stylize(cfg, progress=None)
    assert result.frames.shape == (9, 32, 32, 3) and sorted(result.anchors) == [0, 4, 8]
    assert float((result.frames[0] - result.anchors[0]).abs().mean()) < 0.1  # fused along the path
    manifest = json.loads((cfg.out / "manifest.json").read_text())
    assert manifest["models"] == {"anchor": "flux-dev-controlnet-hed", "inbetween": "videofrom3d-ggi"}
    loras = list((tmp_path / "loras").glob("*.safetensors"))
    assert len(loras) == 1 and manifest["style_lora"] == str(loras[0])  # the LoRA was trained and cached
    # hub models get the soft edges (the HED substitute) as 3-channel images, one per frame
    assert {tuple(m.shape) for m in seen} == {(1, 32, 32, 3), (5, 32, 32, 3)}
    torch.testing.assert_close(seen[0][0, ..., 0], result.buffers.soft[0])
    assert job.guidance(cfg, "anchor").scale == 3.5 and job.guidance(cfg, "inbetween").scale == 6.0
