"""The style LoRA cache shared by several stylize runs (QA s32 qa_shared finding 2): two runs training the same
style at once both succeed and leave one loadable file; a cache that cannot be written is a note, and no temp
file is left. Training itself is skipped (the freshly injected LoRA is what gets cached)."""

from __future__ import annotations

import errno
import threading

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:`FluxPosEmbed` is deprecated:FutureWarning")

SETTINGS = dict(steps=3, rank=2)


def _backbone():
    from vdm3d.models.hub.flux import FluxBackbone, FluxSettings, tiny_components

    return FluxBackbone(tiny_components(0, single_layers=5),
                        FluxSettings(height=32, width=32, max_text_tokens=8, clip_tokens=8))


def _style():
    y, x = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    return torch.stack([x, y, 0.5 * (x + y)], -1)


@pytest.fixture
def untrained(monkeypatch):
    from vdm3d.models.hub import flux

    monkeypatch.setattr(flux, "_train_lora", lambda *a, **k: None)
    return flux


def test_two_runs_training_one_style_at_once_both_cache_it(untrained, tmp_path, monkeypatch, at_once):
    """With one shared `.KEY.safetensors.tmp` the second rename found the file gone (FileNotFoundError) and that
    stylize run crashed after its whole LoRA training."""
    import safetensors.torch

    flux = untrained
    written = threading.Barrier(2, timeout=60)  # both are writing their temp file before either renames it
    real_save = safetensors.torch.save

    def slow_save(*args, **kwargs):
        data = real_save(*args, **kwargs)
        written.wait()
        return data

    monkeypatch.setattr(safetensors.torch, "save", slow_save)
    backbones, said = [_backbone(), _backbone()], []
    results = at_once(lambda i: flux.apply_style_lora(backbones[i], _style(), base_id="tiny", cache_dir=tmp_path,
                                                      settings=flux.StyleLoraSettings(**SETTINGS), say=said.append))
    (path,) = tmp_path.iterdir()  # one file, no temp file
    assert results == [(path, True), (path, True)]
    assert said == [f"style LoRA: trained 3 steps, cached as {path}"] * 2
    again = _backbone()
    assert flux.apply_style_lora(again, _style(), base_id="tiny", cache_dir=tmp_path, say=lambda _m: None,
                                 settings=flux.StyleLoraSettings(**SETTINGS)) == (path, False)
    def lora(backbone):
        return {n: p for n, p in backbone.transformer.named_parameters() if "lora_" in n}

    loaded = lora(again)
    assert loaded and any(all(torch.equal(loaded[n], p) for n, p in lora(b).items()) for b in backbones)


@pytest.mark.parametrize("error,text,fix", [
    (errno.EROFS, "Read-only file system", "pass --style-lora-cache a writable folder"),
    (errno.ENOSPC, "No space left on device", "free space there or pass --style-lora-cache a folder on another disk"),
])
def test_a_cache_that_cannot_be_written_is_a_note_and_leaves_no_temp_file(untrained, tmp_path, monkeypatch,
                                                                          error, text, fix):
    import os

    flux = untrained

    def written_then_fail(fd):  # the LoRA is in the temp file, which is never renamed into place
        raise OSError(error, text)

    monkeypatch.setattr(os, "fsync", written_then_fail)
    said = []
    path, trained = flux.apply_style_lora(_backbone(), _style(), base_id="tiny", cache_dir=tmp_path,
                                          settings=flux.StyleLoraSettings(**SETTINGS), say=said.append)
    assert trained and not path.exists() and list(tmp_path.iterdir()) == []
    assert said == [f"style LoRA: trained 3 steps, but the cache folder {tmp_path} cannot be written ({text}), so "
                    f"it is used without caching and trained again next time; {fix} to keep it."]
