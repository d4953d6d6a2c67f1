"""Every hub adapter: the protocol, two sampling steps with CFG, and an exact save/load round trip."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vdm3d.protocols import Backbone, Conditioning

from hub_helpers import CASES, SIZE, latent_shape, two_steps

pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")



@pytest.mark.parametrize("case", list(CASES))
def test_two_steps_and_exact_roundtrip(case, request, tmp_path):
    fixture, schedule, frames, make_cond = CASES[case]
    bb = request.getfixturevalue(fixture)
    assert isinstance(bb, Backbone)
    assert bb.prediction in ("v", "flow") and bb.process in ("edm", "vp", "flow")
    cond = make_cond()
    assert cond.used_slots() <= set(bb.slots)
    shape = latent_shape(bb, frames)
    sigmas = schedule.sigmas()
    out = two_steps(bb, sigmas, shape, cond)
    assert out.shape == shape and torch.isfinite(out).all()
    # two steps moved the sample: it is neither the starting noise nor all zeros
    start = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * (sigmas[0] ** 2 + 1).sqrt()
    assert (out - start).abs().mean() > 1e-3 * start.abs().mean()

    video = bb.decode(out)
    assert video.shape == (1, frames, SIZE, SIZE, 3) and float(video.min()) >= 0 and float(video.max()) <= 1

    bb.save_pretrained(tmp_path / case)
    loaded = type(bb).from_pretrained(tmp_path / case)
    assert loaded.settings == bb.settings and loaded.name == bb.name
    again = two_steps(loaded, sigmas, shape, cond)
    assert torch.equal(again, out), f"{case}: max diff {(again - out).abs().max():.3g} after save/load"
    assert torch.equal(loaded.decode(out), video)


@pytest.mark.filterwarnings("ignore:The `local_dir_use_symlinks` argument is deprecated:UserWarning")
def test_hub_id_loads_offline_from_the_hub_cache(tiny_wan, tmp_path):
    """A hub id resolves through a Hugging Face cache (models--org--name/snapshots/<rev>/...), offline."""
    import shutil

    from vdm3d.models.hub.wan import WanBackbone

    REV = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as the cache stores snapshots

    snapshot = tmp_path / "hub" / "models--vdm3d--tiny-wan" / "snapshots" / REV
    tiny_wan.save_pretrained(tmp_path / "saved")
    shutil.copytree(tmp_path / "saved", snapshot)
    (snapshot / "model_index.json").write_text('{"_class_name": "WanPipeline"}')
    (tmp_path / "hub" / "models--vdm3d--tiny-wan" / "refs").mkdir()
    (tmp_path / "hub" / "models--vdm3d--tiny-wan" / "refs" / "main").write_text(REV)
    # published repositories carry no vdm3d_adapter.json: settings come from the registry / the caller
    loaded = WanBackbone.from_pretrained(
        "vdm3d/tiny-wan", cache_dir=tmp_path / "hub", **dataclasses.asdict(tiny_wan.settings)
    )
    x = torch.randn(1, 2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    cond = Conditioning(text="a red house")
    with torch.no_grad():
        assert torch.equal(
            loaded.denoise(x, torch.tensor([1.0]), loaded.condition(cond)),
            tiny_wan.denoise(x, torch.tensor([1.0]), tiny_wan.condition(cond)),
        )
    from vdm3d.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="vdm3d/absent"):
        WanBackbone.from_pretrained("vdm3d/absent", cache_dir=tmp_path / "hub")
