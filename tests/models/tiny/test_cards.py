"""The shipped model cards say what their numbers measured, and MODEL_CARDS.md is rendered from them."""

from __future__ import annotations

import json
import re

from vdm3d.models.tiny import WEIGHTS_DIR
from vdm3d.models.tiny.cards import render_cards, reproduce, timing


def _card(name: str) -> dict:
    return json.loads((WEIGHTS_DIR / f"{name}.json").read_text())["card"]


def test_model_cards_md_is_the_render_of_the_json_cards_and_prints_no_none():
    text = render_cards(WEIGHTS_DIR)
    assert (WEIGHTS_DIR / "MODEL_CARDS.md").read_text() == text
    assert "None s" not in text  # v3d_scene's card has no wall time with data: said, not printed as None
    # a network's shape is in its config's lists: the depth models' line printed "config: " and nothing else
    assert "object_depth.safetensors`, 1.34 MB; config: channels=[16, 32, 64, 96], resolution=[64, 64]" in text


def test_timing_says_what_each_time_measured():
    assert timing({"train_seconds": 10.0, "wall_seconds_incl_data": 12.5}) == "training wall time 10.0 s (with data 12.5 s)"
    assert timing({"train_seconds": 1080.2, "wall_seconds_last_session_incl_data": 404.0}) == (
        "training wall time 1080.2 s over all sessions (the last session, resumed, took 404.0 s of wall time with "
        "its data)")
    assert timing({"train_seconds": 351.3}) == "training wall time 351.3 s (wall time with data not recorded)"
    # object_depth ran in one session: its wall time with data (rendering the 1000 objects) exceeds its training time
    od = _card("object_depth")
    assert od["wall_seconds_incl_data"] > od["train_seconds"] and "wall_seconds_last_session_incl_data" not in od


def test_a_resumed_runs_card_names_its_wall_time_the_last_sessions():
    import time

    from vdm3d.train.run import card

    summary = {"steps": 4, "seconds": 100.0, "stopped": "done", "device": "cpu", "processes": 1, "losses": []}
    fresh, resumed = card(summary, {}, 0, {}, time.time() - 3), card(summary, {}, 0, {}, time.time() - 3, True)
    assert 3.0 <= fresh["wall_seconds_incl_data"] < 60 and "wall_seconds_last_session_incl_data" not in fresh
    assert 3.0 <= resumed["wall_seconds_last_session_incl_data"] < 60 and "wall_seconds_incl_data" not in resumed


def test_explore_reproduces_from_the_init_its_data_names():
    """The command started from the package's explore.json, which is now the fine-tuned model itself."""
    card = _card("explore")
    commit = re.search(r"git show (\w+):", card["data"]["init"]).group(1)
    line = reproduce(card, "explore")
    assert line.startswith("mkdir -p runs/init && ")
    assert f"git show {commit}:src/vdm3d/models/tiny/weights/explore.safetensors > runs/init/explore.safetensors" in line
    assert f"git show {commit}:src/vdm3d/models/tiny/weights/explore.json > runs/init/explore.json" in line
    assert "--init runs/init/explore.json " in line and "weights/explore.json --" not in line
    assert " && vdm3d train explore --out runs/train/explore " in line


def test_orbit_held_out_job_row_says_which_defaults_and_gives_todays():
    job = _card("orbit")["heldout"]["object_job"]
    assert job["job_novel_psnr_db"] == 13.53 and "NO proxy maps" in job["job_settings"]
    depth = _card("object_depth")["heldout"]["object_job"]  # the object-depth file's run, same 23 cases
    assert (job["job_today_defaults_novel_psnr_db"], job["job_today_defaults_novel_ssim"],
            job["job_today_defaults_chamfer"]) == (14.03, 0.5319, 0.1047)
    # today's defaults are the default row of a run whose no-regen row is the earlier default's, itself the default
    # of a run whose option row reproduced the run before, where the 18-view orbit gave what the depth card measured
    assert "--options no-regen" in job["job_today_defaults_command"]
    assert "13.90 / 0.5244 / 0.1035" in job["job_today_defaults_settings"]
    assert "orbit-36-fit-400 row" in job["job_today_defaults_settings"]
    assert "13.69 / 0.5069 / 0.0981" in job["job_today_defaults_settings"]
    assert abs(depth["job_novel_psnr_db"] - 13.69) <= 0.02 and job["cases"] == depth["cases"] == 23


def test_v3d_scene_says_plainly_it_is_below_its_baseline(capsys):
    from vdm3d.cli.main import main

    frames = _card("v3d_scene")["heldout"]["frames_psnr_db"]
    gap = round(frames["v3d_scene"] - frames["nearest_input_photo_copied"], 2)
    assert gap == frames["versus_nearest_input_photo_db"] == -0.46
    assert main(["models", "list"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("tiny-v3d_scene "))
    assert "0.46 dB BELOW its own baseline of copying the nearer input photo (19.26 dB)" in line
    assert "- summary: embedded v3d_scene (100 training steps): held-out frames 18.81 dB, 0.46 dB BELOW" in \
        render_cards(WEIGHTS_DIR)
