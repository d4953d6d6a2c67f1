"""The shipped checkpoints: present, small, described, and deterministic to sample from."""

from __future__ import annotations

import pytest
import torch

from vdm3d.protocols import Backbone, Conditioning
from vdm3d.models.tiny import DEFAULT_DEPTH, DEFAULT_VIDEO, WEIGHTS_DIR, TinyDepth, available, load_tiny

REQUIRED = ("data", "seed", "steps", "train_seconds", "hardware", "command", "heldout")


def _orbit_condition():
    from vdm3d.data.procedural import make_object, orbit_cameras
    from vdm3d.geometry.mesh_render import render_buffers

    cams = orbit_cameras(9, width=64, height=64, elevation_deg=10.0)
    rgb = render_buffers(make_object(1_000_123), cams[:1]).rgb
    targets = cams[1:]
    return Conditioning(reference=rgb, cameras=targets.reshape(1, 8),
                        extras={"reference_c2w": cams.c2w[:1]})


def test_shipped_models_are_listed_with_cards_and_fit_the_budget():
    cards = available()
    assert {"vae", DEFAULT_VIDEO, DEFAULT_DEPTH} <= set(cards)
    for name, card in cards.items():
        missing = [k for k in REQUIRED if k not in card]
        assert not missing, (name, missing)
    total = sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir() if p.is_file())
    assert total <= 30 * 1024 * 1024


@pytest.mark.slow
def test_sampling_the_shipped_video_model_is_deterministic_for_a_seed():
    from vdm3d.diffusion.samplers import sample
    from vdm3d.diffusion.schedules import EdmSchedule

    bb = load_tiny(DEFAULT_VIDEO)
    assert isinstance(bb, Backbone) and bb.process == "edm" and bb.prediction == "v"
    cond = _orbit_condition()
    sigmas = EdmSchedule(4, 0.002, 80.0, 7.0).sigmas()
    shape = (1, 8, bb.latent_channels, 16, 16)

    def run(seed):
        with torch.no_grad():
            z = sample(bb, sigmas, cond=cond, shape=shape, generator=torch.Generator().manual_seed(seed))
            return bb.decode(z)

    a, b, c = run(3), run(3), run(4)
    assert a.shape == (1, 8, 64, 64, 3)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3
    assert 0.0 <= float(a.min()) and float(a.max()) <= 1.0


def test_shipped_depth_model_predicts_relative_depth():
    net = load_tiny(DEFAULT_DEPTH)
    assert isinstance(net, TinyDepth)
    out = net.predict(torch.rand(2, 64, 64, 3))
    assert out.shape == (2, 64, 64) and bool(torch.all(out > 0))
    torch.testing.assert_close(out.flatten(1).median(1).values, torch.ones(2), atol=0.02, rtol=0)


def test_card_commands_name_a_portable_run_folder():
    from vdm3d.models.tiny.cards import portable_command

    cmd = "vdm3d train video --out /work/runs_x/video --loop.steps 9 --task.mixture 0.6 0.25 0.15"
    assert portable_command(cmd, "video") == ("vdm3d train video --out runs/train/video --loop.steps 9 "
                                              "--task.mixture 0.6 0.25 0.15")
