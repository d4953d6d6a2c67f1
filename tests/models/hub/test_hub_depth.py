"""Depth estimators through transformers against transformers' own depth-estimation pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vdm3d.errors import ConfigError, MissingWeightsError, UnsafeCheckpointError
from vdm3d.models import registry
from vdm3d.models.depth import DepthEstimator, relative_depth
from vdm3d.models.hub.depth import TransformersDepth, tiny_depth_anything


def images(b: int = 2, h: int = 40, w: int = 56) -> torch.Tensor:
    """8-bit images as floats (what the pipeline sees from a PNG), not square: the processor keeps the
    aspect ratio and the output comes back at the input size."""
    g = torch.Generator().manual_seed(4)
    return torch.randint(0, 256, (b, h, w, 3), generator=g).float() / 255


@pytest.mark.parametrize(("metric", "name", "kind"), [(False, "depth-anything-v2-small", "inverse"),
                                                      (True, "depth-anything-v2-metric-indoor-small", "metric")])
def test_registered_depth_anything_matches_the_transformers_pipeline(metric, name, kind, models_dir):
    from transformers import pipeline

    tiny_depth_anything(0, metric=metric).save_pretrained(models_dir / name)
    est = registry.load_depth(name)
    assert isinstance(est, TransformersDepth) and est.kind == kind and est.name == name
    x = images()
    ours = est.predict(x)
    assert ours.shape == (2, 40, 56) and float(ours.std()) > 1e-3  # a real, non-constant map
    pipe = pipeline("depth-estimation", model=est.model, image_processor=est.processor)
    for i in range(2):
        pil = Image.fromarray((x[i].numpy() * 255).round().astype(np.uint8))
        torch.testing.assert_close(ours[i], pipe(pil)["predicted_depth"].float(), rtol=1e-4, atol=1e-4)


def test_missing_depth_weights_give_one_sentence_naming_repo_and_folder(models_dir):
    with pytest.raises(MissingWeightsError) as err:
        registry.load_depth("depth-anything-v2-small")
    msg = str(err.value)
    assert "depth-anything/Depth-Anything-V2-Small-hf" in msg and str(models_dir / "depth-anything-v2-small") in msg
    assert msg.endswith(".") and "\n" not in msg
    assert registry.installed("depth-anything-v2-small") is None
    card = registry.info("depth-anything-v2-small")
    assert card["task"] == "depth estimation" and "--local-dir" in card["download"]


def test_pickle_only_depth_folder_is_refused(models_dir):
    folder = models_dir / "depth-anything-v2-small"
    tiny_depth_anything(0).save_pretrained(folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(UnsafeCheckpointError, match="--trust-pickle"):
        registry.load_depth("depth-anything-v2-small")


def test_a_lora_adapters_folder_is_named_as_one(models_dir, tmp_path):
    """transformers loads an adapter folder's base model from the hub (offline: its own error); vdm3d's check
    said "has no config.json; download it again"."""
    from vdm3d.errors import InputError

    lora = tmp_path / "depth-lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8, "target_modules": ["query"]}')
    home = models_dir / "depth-anything-v2-small"
    sentence = (f"{lora} holds a LoRA/peft adapter (adapter_config.json), not a model, and vdm3d loads no adapters; "
                f"give the folder of depth-anything-v2-small itself instead (its weights go in {home}: `hf download "
                f"depth-anything/Depth-Anything-V2-Small-hf --local-dir {home}`), or the folder of the model with the "
                "adapter merged into it (peft's merge_and_unload, then save_pretrained).")
    with pytest.raises(InputError) as err:
        registry.load_depth("depth-anything-v2-small", lora)
    assert str(err.value) == sentence
    assert registry.verify("depth-anything-v2-small", lora) == (str(lora), [sentence])


def test_names_and_choices():
    assert registry.depth_names()[0] == "tiny-depth"
    assert "depth-anything-v2-small" in registry.names()
    with pytest.raises(ConfigError, match="depth-anything-v2-small"):
        registry.load_depth("tiny-video")  # a video model is not a depth estimator
    with pytest.raises(ConfigError, match="depth estimator"):
        registry.load_backbone("depth-anything-v2-small")


def test_disparity_becomes_depth_up_to_scale():
    """An ``inverse`` estimator whose output is exact disparity ``c / z`` gives back ``z`` up to scale."""
    g = torch.Generator().manual_seed(0)
    z = 1.0 + 4.0 * torch.rand(2, 8, 8, generator=g)

    class Disparity:
        name, kind = "exact-disparity", "inverse"

        def predict(self, images):
            return 3.0 / z

    assert isinstance(Disparity(), DepthEstimator)
    expected = z / z.flatten(1).median(1).values[:, None, None]
    torch.testing.assert_close(relative_depth(Disparity(), torch.zeros(2, 8, 8, 3)), expected)


def test_a_hub_id_is_looked_up_in_the_cache_without_the_network(models_dir, tmp_path, monkeypatch):
    """A script (no HF_HUB_OFFLINE, which only the CLI sets) reporting a missing Depth Anything spent 36 s on
    transformers' retries for an adapter_config.json; now no name is even resolved. A snapshot in the
    Hugging Face cache still loads by its hub id."""
    import socket

    import huggingface_hub

    looked_up = []

    def no_network(*args, **kwargs):
        looked_up.append(args[0])
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(MissingWeightsError):
        TransformersDepth.from_pretrained("depth-anything/Depth-Anything-V2-Small-hf", cache_dir=tmp_path / "hf")
    assert looked_up == []
    # a snapshot in the cache layout (models--ORG--NAME/snapshots/REV, refs/main naming REV)
    repo = tmp_path / "hf" / "models--org--tiny-depth"
    tiny_depth_anything(0).save_pretrained(repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    est = TransformersDepth.from_pretrained("org/tiny-depth", cache_dir=tmp_path / "hf")
    assert est.predict(images()).shape == (2, 40, 56) and looked_up == []
