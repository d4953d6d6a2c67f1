"""Training data never comes from the seeds a model is scored on: `--*.split heldout` is refused up front."""

from __future__ import annotations

import pytest

from vdm3d.cli.main import main

CASES = [
    ("vae", "--objects.split"), ("vae", "--rooms.split"), ("depth", "--rooms.split"), ("video", "--objects.split"),
    ("video", "--rooms.split"), ("explore", "--rooms.split"), ("orbit", "--objects.split"),
    ("object-depth", "--objects.split"), ("stylize", "--data.split"), ("v3d", "--rooms.split"),
]


@pytest.mark.parametrize("trainer,option", CASES)
def test_heldout_split_is_refused_before_any_work(trainer, option, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert main(["train", trainer, "--out", str(out), option, "heldout"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {option} heldout would train on the seeds the model's held-out scores are measured "
                   f"on; leave {option} at train (the default).")
    assert not out.exists() and not (tmp_path / "cache").exists()  # nothing rendered, no run folder
    assert list(tmp_path.iterdir()) == []


def test_object_depth_refuses_the_validation_seeds_it_reports(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    assert main(["train", "object-depth", "--out", str(tmp_path / "run"), "--objects.split", "val"]) == 2
    assert "validation scores this trainer reports" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_validation_split_stays_allowed_where_nothing_scores_it():
    from vdm3d.train.datasets import refuse_scored_split

    refuse_scored_split("--rooms.split", "val")  # settings are chosen on val; training there is the user's call
    refuse_scored_split("--rooms.split", "train")


@pytest.mark.parametrize("trainer", ["vae", "video"])
def test_different_object_and_room_resolutions_are_refused_before_any_work(trainer, tmp_path, monkeypatch, capsys):
    """QA s32: `train vae --objects.resolution 32 --rooms.resolution 16` rendered both sets, then crashed with
    numpy's concatenate ValueError; the video trainer builds one backbone resolution for both sets."""
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    small = ["--objects.count", "1", "--objects.views", "2", "--rooms.count", "1", "--rooms.paths", "1",
             "--rooms.frames", "2", "--loop.steps", "1", "--loop.cpu"]  # cheap should a regression start work
    assert main(["train", trainer, "--out", str(out), "--objects.resolution", "32", "--rooms.resolution", "16",
                 *small]) == 2
    err = capsys.readouterr().err.strip()
    why = ("the VAE trains on one pool of both sets' images" if trainer == "vae"
           else "the video model is made for one resolution and trains on both sets")
    assert err == (f"error: --objects.resolution 32 and --rooms.resolution 16 must be equal, because {why}; "
                   "give both the same value.")
    assert list(tmp_path.iterdir()) == []  # nothing rendered, no run folder
