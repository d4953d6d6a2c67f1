"""Every per-user cache lives under one folder that one variable moves (vdm3d.io.cache)."""

from pathlib import Path

import pytest

from vdm3d.io.cache import cache_root
from vdm3d.models import registry
from vdm3d.recon.perceptual import lpips_weights_path
from vdm3d.train.cache import cache_dir as train_cache


@pytest.fixture
def env(monkeypatch, tmp_path):
    for name in ("VDM3D_CACHE", "XDG_CACHE_HOME", "VDM3D_MODELS", "VDM3D_LPIPS_WEIGHTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def _places() -> list[Path]:
    return [registry.models_root(), registry.fingerprint_dir(), train_cache(), lpips_weights_path()]


def test_home_then_xdg_then_vdm3d_cache(env, tmp_path):
    assert cache_root() == tmp_path / "home" / ".cache" / "vdm3d"
    env.setenv("XDG_CACHE_HOME", "")  # empty means unset (XDG base directory spec)
    assert cache_root() == tmp_path / "home" / ".cache" / "vdm3d"
    env.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "vdm3d"
    assert _places() == [tmp_path / "xdg" / "vdm3d" / p for p in
                         ("models", "fingerprints", "train", "lpips_alex.safetensors")]
    env.setenv("VDM3D_CACHE", "~/scratch")  # vdm3d's own variable wins, and ~ is the user's home
    assert cache_root() == tmp_path / "home" / "scratch"
    assert all(p.parent == tmp_path / "home" / "scratch" for p in _places())


def test_models_and_lpips_keep_their_own_overrides(env, tmp_path):
    env.setenv("VDM3D_CACHE", str(tmp_path / "c"))
    env.setenv("VDM3D_MODELS", str(tmp_path / "weights"))
    env.setenv("VDM3D_LPIPS_WEIGHTS", str(tmp_path / "lpips.safetensors"))
    assert _places() == [tmp_path / "weights", tmp_path / "c" / "fingerprints", tmp_path / "c" / "train",
                         tmp_path / "lpips.safetensors"]
    assert registry.default_folder("sv3d-p") == tmp_path / "weights" / "sv3d-p"
