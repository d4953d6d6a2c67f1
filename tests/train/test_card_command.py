"""A trained model's card records the `vdm3d train` command that made it, however the run was started."""

from __future__ import annotations

import json
import sys


from vdm3d.cli.main import main

TINY = ["--objects.count", "1", "--objects.views", "2", "--objects.resolution", "16", "--rooms.count", "1",
        "--rooms.paths", "1", "--rooms.frames", "2", "--rooms.resolution", "16", "--model.channels", "4", "8",
        "--task.batch", "2", "--task.crop", "8", "--loop.steps", "2", "--loop.cpu", "--heldout", "1",
        "--heldout-rooms", "1"]


def _command(run) -> str:
    return json.loads((run / "vae.json").read_text())["card"]["command"]


def test_card_command_with_global_threads_and_through_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    argv = ["--threads", "1", "train", "vae", "--out", "run", *TINY]
    monkeypatch.setattr(sys, "argv", ["vdm3d", *argv])  # as the console script sees it
    assert main(argv) == 0
    assert _command(tmp_path / "run") == "vdm3d train vae --out run " + " ".join(TINY)

    monkeypatch.setattr(sys, "argv", ["vdm3d", "rerun", "run", "--out", "again"])
    assert main(["rerun", "run", "--out", "again"]) == 0
    assert _command(tmp_path / "again") == "vdm3d train vae " + " ".join(TINY) + f" --out {tmp_path / 'again'}"


def test_card_command_outside_the_cli_is_empty(monkeypatch):
    from vdm3d.train.run import train_command

    monkeypatch.setattr(sys, "argv", ["pytest", "-x", "tests"])
    assert train_command() == ""  # a library call has no command to repeat; never the host program's argv


def test_a_model_file_given_to_a_trainer_is_hashed_with_its_weights(tmp_path):
    """A fine-tune's init (or a frozen VAE) was hashed by its .json alone, so swapped weights under the same
    .json passed --resume's same-inputs check and rerun; now its weights and VAE are inputs too."""
    from vdm3d.models.tiny import WEIGHTS_DIR
    from vdm3d.train.loop import LoopConfig
    from vdm3d.train.run import training_folder

    run = training_folder(tmp_path / "run", {"x": 1}, LoopConfig(), False, False, inputs=(WEIGHTS_DIR / "video.json",))
    assert [p.name for p in run.inputs] == ["video.json", "video.safetensors", "vae.json", "vae.safetensors"]
    missing = training_folder(tmp_path / "run", {"x": 1}, LoopConfig(), False, False, inputs=(tmp_path / "no.json",))
    assert missing.inputs == [tmp_path / "no.json"]  # refused by the run folder as "does not exist"
