"""`--device`: what it accepts, and the boundary's conversions (tensors inside conditions and cameras)."""

from __future__ import annotations

import pytest
import torch

from vdm3d.cameras import Cameras
from vdm3d.cli.config import pop_device_flag
from vdm3d.errors import ConfigError
from vdm3d.models.device import parse_device, to_caller, to_device
from vdm3d.protocols import Conditioning


def test_a_device_is_checked_before_any_work():
    assert pop_device_flag(["--image", "a.png", "--device=cpu"]) == (["--image", "a.png"], "cpu")
    assert pop_device_flag(["--image", "a.png"]) == (["--image", "a.png"], None)
    assert parse_device("CPU") == torch.device("cpu")
    if not torch.cuda.is_available():
        assert parse_device("auto") == torch.device("cpu")
        with pytest.raises(ConfigError, match=r"^--device cuda:1: this process sees no CUDA device"):
            parse_device("cuda:1")
    for bad in ("tpu", "", "gpu0", "meta"):
        with pytest.raises(ConfigError, match="is not a device vdm3d runs on; pass cpu, cuda, cuda:N or auto."):
            pop_device_flag(["--device", bad] if bad else ["--device"])


def test_the_boundary_moves_what_a_condition_holds_and_gives_float32_back():
    """Every tensor a job hands over goes (a dataclass is copied, not changed; cameras keep their class), and
    only floating results are made float32."""
    cams = Cameras(torch.eye(3).expand(2, 3, 3) * 10, torch.eye(4).expand(2, 4, 4), 32, 32)
    cond = Conditioning(reference=torch.rand(1, 4, 4, 3), cameras=cams, keyframes={0: torch.rand(1, 4, 4, 3)},
                        extras={"polars_rad": [torch.tensor(1.0)]}, text="a cup")
    moved = to_device(cond, torch.device("meta"))
    assert moved is not cond and cond.reference.device.type == "cpu"
    assert moved.reference.device.type == "meta" and moved.keyframes[0].device.type == "meta"
    assert isinstance(moved.cameras, Cameras) and moved.cameras.c2w.device.type == "meta"
    assert moved.extras["polars_rad"][0].device.type == "meta" and moved.text == "a cup"
    assert to_device(cond, torch.device("cpu")) is cond  # nothing to move: the same object
    half = torch.ones(2, dtype=torch.bfloat16)
    assert to_caller(half).dtype == torch.float32 and to_caller(torch.ones(2, dtype=torch.long)).dtype == torch.long


def test_an_embedded_model_says_it_stays_on_the_cpu_when_a_gpu_was_asked_for(monkeypatch, capsys):
    from vdm3d.models import device as devices
    from vdm3d.models.registry import load_backbone

    real = devices.parse_device
    monkeypatch.setattr(devices, "parse_device", lambda text, flag="--device": torch.device("cuda")
                        if str(text).startswith("cuda") else real(text, flag))  # as on a machine with a GPU
    monkeypatch.setitem(devices._configured, "device", "cuda")
    tiny = load_backbone("tiny-video")
    assert next(tiny.parameters()).device.type == "cpu"
    assert capsys.readouterr().err == ("note: tiny-video is an embedded model and runs on the CPU; --device places "
                                       "the hub backbones.\n")
    monkeypatch.setitem(devices._configured, "device", None)
    load_backbone("tiny-video")
    assert capsys.readouterr().err == ""
