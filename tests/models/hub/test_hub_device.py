"""Hub backbones away from the CPU (`--device cuda`): the protocol's calls take a job's CPU float32 tensors and
give CPU float32 back whatever the backbone's device and precision. No GPU here, so the two halves are checked
apart: half precision for real (bfloat16 on the CPU, through two sampler steps with CFG), and the device on
torch's ``meta`` device, where an adapter that mixed in a CPU tensor of its own fails as it would on CUDA."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from vdm3d.models import device as device_module
from hub_helpers import CASES, SIZE, latent_shape, two_steps

pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")


@pytest.mark.parametrize("case", list(CASES))
def test_a_half_precision_backbone_takes_and_gives_cpu_float32(case, request):
    """The adapters cast what they are given to their own precision; what comes back is float32 again, and
    two steps in bfloat16 land near the float32 ones."""
    fixture, schedule, frames, make_cond = CASES[case]
    bb = request.getfixturevalue(fixture)
    half = copy.deepcopy(bb).to(dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16
    shape, sigmas, cond = latent_shape(bb, frames), schedule.sigmas(), make_cond()
    want = two_steps(bb, sigmas, shape, cond)
    got = two_steps(half, sigmas, shape, cond)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    assert (got - want).abs().mean() < 0.05 * want.abs().mean(), f"{case}: bfloat16 strays from float32"
    with torch.no_grad():
        video = half.decode(got)
        assert video.dtype == torch.float32 and video.shape == (1, frames, SIZE, SIZE, 3)
        if "reference" in bb.slots or case == "wan":
            assert half.encode(video).dtype == torch.float32


@pytest.mark.parametrize("case", list(CASES))
def test_an_adapter_on_another_device_computes_there_from_cpu_inputs(case, request, monkeypatch):
    """On ``meta`` (a device without data: every op checks where its tensors are) the calls get CPU
    inputs, as a job gives them, and run through without a device mismatch; what they return is on the
    backbone's device until the boundary brings it back (here left there, since meta holds no values)."""
    fixture, schedule, frames, make_cond = CASES[case]
    bb = copy.deepcopy(request.getfixturevalue(fixture)).to("meta")
    # transformers' text encoders read their masks' values (.item()), which meta has not: no text here
    bb.components.update({k: None for k in bb.components if k.startswith(("text_encoder", "tokenizer"))})
    make_cond = (lambda make: lambda: dataclasses.replace(make(), text=None, negative_text=None))(make_cond)
    assert bb.device.type == "meta"
    monkeypatch.setattr(device_module, "to_caller", lambda value: value)
    for check in ("allclose", "equal"):  # value checks (one sigma per sample): meta has no values
        monkeypatch.setattr(torch, check, lambda *args, **kwargs: True)
    shape = latent_shape(bb, frames)
    with torch.no_grad():
        cond = bb.condition(make_cond())
        null = bb.condition(make_cond(), null=True)
        x = torch.randn(shape)
        sigma = schedule.sigmas()[:1]
        for c in (cond, null):
            assert bb.denoise(x, sigma, c).device.type == "meta"
        video = bb.decode(x)
        assert video.device.type == "meta" and video.shape == (1, frames, SIZE, SIZE, 3)
        if "reference" in bb.slots or case == "wan":
            assert bb.encode(torch.rand(1, frames, SIZE, SIZE, 3)).device.type == "meta"
