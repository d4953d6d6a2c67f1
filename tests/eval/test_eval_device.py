"""`vdm3d eval SUB --device`: the evaluations that load hub backbones place them as the jobs do."""

from __future__ import annotations

import pytest
import torch

from vdm3d.cli import eval as eval_cli
from vdm3d.cli.main import main


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_device_this_machine_has_not_is_refused_before_any_work(tmp_path, capsys):
    assert main(["eval", "orbit", "--objects", "1", "--device", "cuda", "--out", str(tmp_path / "e")]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda: this process sees no CUDA device")
    assert not (tmp_path / "e").exists()


def test_the_cases_of_an_eval_manifest_get_the_device(tmp_path, monkeypatch):
    """`--device` is taken before the manifest is split into cases, and given back to every case's command."""
    seen = []
    monkeypatch.setattr(eval_cli, "run_manifest", lambda sub, manifest, batch, shared: seen.append((sub, shared)) or 0)
    manifest = tmp_path / "cases.yaml"
    manifest.write_text("cases:\n  - name: a\n")
    assert main(["eval", "object", "--manifest", str(manifest), "--device", "cpu", "--procedural", "1"]) == 0
    assert seen == [("object", ["--procedural", "1", "--device", "cpu"])]
