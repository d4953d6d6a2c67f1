"""Shared fixtures of the model tests."""

import pytest


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    """An empty, offline model folder: ``VDM3D_MODELS`` and the Hugging Face cache point into ``tmp_path``."""
    monkeypatch.setenv("VDM3D_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "models"
