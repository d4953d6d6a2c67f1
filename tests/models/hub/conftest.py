"""Tiny random hub backbones: the real diffusers/transformers classes, a few thousand weights each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The hub tests share small helpers in hub_helpers.py beside this file; pytest runs in importlib
# mode (test basenames repeat across folders), which does not put test folders on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

from hub_helpers import SIZE  # noqa: E402


@pytest.fixture(scope="module")
def tiny_svd():
    from vdm3d.models.hub.svd import SVDBackbone, SVDSettings, tiny_components

    return SVDBackbone(tiny_components(0), SVDSettings(frames=2, height=SIZE, width=SIZE))


@pytest.fixture(scope="module")
def tiny_sv3d():
    from vdm3d.models.hub.sv3d import SV3DBackbone, SV3DSettings, tiny_components

    return SV3DBackbone(tiny_components(0), SV3DSettings(frames=2, height=SIZE, width=SIZE))


@pytest.fixture(scope="module")
def tiny_cogvideox():
    from vdm3d.models.hub.cogvideox import CogVideoXBackbone, CogVideoXSettings, tiny_components

    return CogVideoXBackbone(
        tiny_components(0, frames=9), CogVideoXSettings(frames=9, height=SIZE, width=SIZE, max_text_tokens=8)
    )


@pytest.fixture(scope="module")
def tiny_wan():
    from vdm3d.models.hub.wan import WanBackbone, WanSettings, tiny_components

    return WanBackbone(tiny_components(0), WanSettings(frames=5, height=SIZE, width=SIZE, max_text_tokens=8))


@pytest.fixture(scope="module")
def tiny_flux():
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings, tiny_components

    return FluxBackbone(
        tiny_components(0), FluxSettings(height=SIZE, width=SIZE, max_text_tokens=8, clip_tokens=8)
    )
