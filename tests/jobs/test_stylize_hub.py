"""`vdm3d stylize --backbone hub` end to end on tiny random FLUX + ControlNet and widened CogVideoX (GGI)
weights written to a temporary folder: the hub path runs the same stages as the embedded one."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch

from vdm3d.geometry.path_buffers import render_path
from vdm3d.jobs import stylize as job

pytest.importorskip("diffusers")
pytest.importorskip("moderngl")
pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stylize import _inputs  # noqa: E402


@pytest.mark.slow


def _save_hub_models(tmp_path, single_layers: int, frames: int):
    """Tiny random FLUX (``tmp_path/flux``) and GGI (``tmp_path/ggi``) folders, and the job's inputs; returns
    the FLUX backbone."""
    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings, widen_patch_embed
    from vdm3d.models.hub.cogvideox import tiny_components as cog_tiny
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings
    from vdm3d.models.hub.flux import tiny_components as flux_tiny

    flux = FluxBackbone(flux_tiny(0, single_layers=single_layers),
                        FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8))
    flux.save_pretrained(tmp_path / "flux")
    comps = cog_tiny(0, frames=frames)
    widen_patch_embed(comps["transformer"], 4)
    CogVideoXBackbone(comps, CogVideoXSettings(frames=frames, height=32, width=32, max_text_tokens=8)
                      ).save_pretrained(tmp_path / "ggi")
    _inputs(tmp_path, frames=frames)
    return flux


def test_hub_backbones_run_the_job(tmp_path, monkeypatch):
    _save_hub_models(tmp_path, single_layers=5, frames=9)  # single blocks 1-4 for the style LoRA
    seen = []
    real = job.model_maps
    monkeypatch.setattr(job, "model_maps", lambda *a: seen.append(real(*a)) or seen[-1])
    cfg = job.StylizeConfig(mesh=tmp_path / "scene.glb", trajectory=tmp_path / "path.json",
                            style=tmp_path / "style.png", out=tmp_path / "run", backbone="hub",
                            anchor_path=tmp_path / "flux", inbetween_path=tmp_path / "ggi", resolution=32,
                            arc_frames=5, steps=2, prompt="a toy", style_lora_steps=2)
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))  # the LoRA's default place is under it
    result = job.run_stylize(cfg, progress=None)
    assert result.frames.shape == (9, 32, 32, 3) and sorted(result.anchors) == [0, 4, 8]
    assert float((result.frames[0] - result.anchors[0]).abs().mean()) < 0.1  # fused along the path
    manifest = json.loads((cfg.out / "manifest.json").read_text())
    assert manifest["models"] == {"anchor": "flux-dev-controlnet-hed", "inbetween": "videofrom3d-ggi"}
    loras = list((tmp_path / "cache" / "style_lora").glob("*.safetensors"))
    assert len(loras) == 1 and manifest["style_lora"] == str(loras[0])  # the LoRA was trained and cached
    # hub models get the soft edges (the HED substitute) as 3-channel images, one per frame
    assert {tuple(m.shape) for m in seen} == {(1, 32, 32, 3), (5, 32, 32, 3)}
    torch.testing.assert_close(seen[0][0, ..., 0], result.buffers.soft[0])
    assert job.guidance(cfg, "anchor").scale == 3.5 and job.guidance(cfg, "inbetween").scale == 6.0


def test_causal_video_model_arcs_are_padded_to_4k_plus_1_frames(tmp_path, monkeypatch):
    """GGI's causal VAE takes 4k + 1 frames: every arc of a 16-frame path at the default --arc-frames 8
    (8, 8 and 2 frames) is generated at 9, 9 and 5 frames with its end frame held, and the held frames
    are dropped (VideoFrom3D pads 46 edge maps to 49)."""
    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings, widen_patch_embed
    from vdm3d.models.hub.cogvideox import tiny_components as cog_tiny

    assert [job.generated_frames(f, 4) for f in (2, 5, 6, 8, 9, 46, 49)] == [5, 5, 9, 9, 9, 49, 49]
    assert job.generated_frames(7, 1) == 7
    comps = cog_tiny(0, frames=9)
    widen_patch_embed(comps["transformer"], 4)
    ggi = CogVideoXBackbone(comps, CogVideoXSettings(frames=9, height=32, width=32, max_text_tokens=8))
    case = _inputs(tmp_path, frames=16)
    buffers = render_path(case.scene, job.square(case.cameras, 32))
    cfg = job.StylizeConfig(backbone="hub", resolution=32, steps=1, style_lora_steps=0)
    assert cfg.arc_frames == 8 and job.arcs(16, 8) == [(0, 7), (7, 14), (14, 15)]
    seen = []
    real = job.model_maps
    monkeypatch.setattr(job, "model_maps", lambda *a: seen.append(real(*a)) or seen[-1])
    anchors = {i: torch.full((32, 32, 3), i / 15) for i in (0, 7, 14, 15)}
    frames, _ = job.stylize_frames(cfg, job.StylizeModels(None, ggi), buffers, anchors[0], say=lambda _m: None,
                                   anchors=anchors)
    assert frames.shape == (16, 32, 32, 3) and bool(torch.isfinite(frames).all())
    assert [len(m) for m in seen] == [9, 9, 5]
    for m, (a, b) in zip(seen, [(0, 7), (7, 14), (14, 15)]):  # the arc's soft edges, then its end held
        f = b - a + 1
        torch.testing.assert_close(m[:f, ..., 0], buffers.soft[a:b + 1])
        torch.testing.assert_close(m[f:, ..., 0], buffers.soft[b].expand(len(m) - f, -1, -1))
    torch.testing.assert_close(frames[0], anchors[0])  # stitched: the first arc's start keyframe


def test_hub_arc_limit_is_ggi_window():
    with pytest.raises(job.ConfigError, match=r"--arc-frames is 17; use 2 to 16 \(the tiny models'"):
        job.check_config(job.StylizeConfig(arc_frames=17))
    job.check_config(job.StylizeConfig(backbone="hub", arc_frames=17))
    with pytest.raises(job.ConfigError, match=r"--arc-frames is 50; use 2 to 49 \(GGI's 49-frame window\)"):
        job.check_config(job.StylizeConfig(backbone="hub", arc_frames=50))


def test_style_lora_blocks_the_transformer_lacks_are_refused_before_the_run_folder(tmp_path, capsys):
    """A FLUX with one single-stream block and the default --style-lora-blocks 1 2 3 4: one sentence naming
    the flag, exit 2, and no folder (neither the run nor a .partial one), so the next run is not refused as
    an interrupted one; --style-lora-blocks 0 trains the LoRA on the block it has."""
    from vdm3d.cli.config import cli as parse
    from vdm3d.cli.main import main as cli
    flux = _save_hub_models(tmp_path, single_layers=1, frames=5)
    runs = tmp_path / "runs"
    argv = ["--mesh", str(tmp_path / "scene.glb"), "--trajectory", str(tmp_path / "path.json"), "--style",
            str(tmp_path / "style.png"), "--out", str(runs / "hub"), "--backbone", "hub", "--anchor-path",
            str(tmp_path / "flux"), "--inbetween-path", str(tmp_path / "ggi"), "--resolution", "32", "--steps", "1",
            "--style-lora-steps", "1", "--style-lora-cache", str(tmp_path / "loras")]
    assert cli(["stylize", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: --style-lora-blocks names block 1, but the transformer of flux-dev-controlnet-hed "
                       "has single-stream blocks 0 to 0; give blocks in that range, or --style-lora-steps 0 for "
                       "no style LoRA.")
    assert not runs.exists() or list(runs.iterdir()) == []
    config = parse(job.StylizeConfig, [*argv, "--style-lora-blocks", "0"], "vdm3d stylize")
    assert config.style_lora_blocks == (0,)
    models = job.StylizeModels(flux, None)
    job.check_style_lora(config, models)
    lora = job.align_style(config, models, torch.rand(32, 32, 3), say=lambda _m: None)
    from safetensors.torch import load_file
    keys = list(load_file(lora))
    assert keys and all(".single_transformer_blocks.0." in k for k in keys if "single_transformer_blocks" in k)
    assert any("single_transformer_blocks.0." in k for k in keys)
    # a cache that cannot be written: the LoRA is used all the same, and the manifest does not name a file
    # that was never written (it named the path it would have had)
    (tmp_path / "a_file").write_text("")
    unwritable = dataclasses.replace(config, style_lora_cache=tmp_path / "a_file" / "loras")
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings
    from vdm3d.models.hub.flux import tiny_components as flux_tiny

    fresh = FluxBackbone(flux_tiny(0, single_layers=1),
                         FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8))
    said = job.align_style(unwritable, job.StylizeModels(fresh, None), torch.rand(32, 32, 3), say=lambda _m: None)
    assert said == f"trained for this run, not cached ({tmp_path / 'a_file' / 'loras'} could not be written)"
    with pytest.raises(job.ConfigError, match="--style-lora-blocks is empty; give one or more block indices"):
        job.check_config(dataclasses.replace(config, style_lora_blocks=()))


def test_the_memory_plan_is_for_the_runs_size_and_arc_length(monkeypatch):
    """--memory plans each model for what the run makes: one anchor image and arcs of --arc-frames + 1 frames
    (GGI's 4k + 1) at --resolution, not the models' native 49 frames of 720x480."""
    calls = []
    monkeypatch.setattr(job, "load_backbone", lambda name, path=None, **kw: calls.append((name, kw)))
    job.load_models(job.StylizeConfig(mesh=Path("m.glb"), trajectory=Path("t.json"), style=Path("s.png"),
                                      backbone="hub", resolution=64, arc_frames=6))
    assert calls == [("flux-dev-controlnet-hed", {"plan_size": (64, 64), "plan_frames": 1}),
                     ("videofrom3d-ggi", {"plan_size": (64, 64), "plan_frames": 9})]
