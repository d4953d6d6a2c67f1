"""Every bad input gets one sentence: a table of malformed inputs across every command.

Each case runs ``vdm3d.cli.main.main(argv)`` in-process, as a user's command line would, and asserts:

* exit status 2;
* stderr is exactly one line ``error: <one sentence>.`` (no traceback, no OpenCV/PIL warning line
  before it, no progress bar);
* the sentence names the file or the option (the case's ``names``);
* nothing is left behind at the case's output location: neither the folder or file nor the hidden
  ``.NAME.partial`` sibling where runs are written.

The inputs come from the ``bad_inputs`` fixture (``conftest.py``); ``{name}`` in an argument is that
input's path and ``{out}`` a fresh output path per case. Every case fails before any real work, so
the whole table runs in seconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from vdm3d.cli.main import main

OUT = "{out}"
# (id, arguments, what the sentence must name)
CASES: list[tuple[str, list[str], list[str]]] = [
    # -- fit: scene readers -------------------------------------------------------------------
    ("fit-missing-folder", ["fit", "{missing}", "--out", OUT], ["{missing}"]),
    ("fit-empty-folder", ["fit", "{empty_folder}", "--out", OUT], ["{empty_folder}"]),
    ("fit-bad-json", ["fit", "{scene_bad_json}", "--out", OUT], ["transforms.json"]),
    ("fit-nan-pose", ["fit", "{scene_nan}", "--out", OUT], ["transforms.json", "frame 1"]),
    ("fit-fisheye", ["fit", "{scene_fisheye}", "--out", OUT], ["transforms.json", "camera_model"]),
    ("fit-missing-images", ["fit", "{scene_missing_images}", "--out", OUT], ["transforms.json", "3 of 4"]),
    ("fit-fisheye-k4", ["fit", "{scene_k4}", "--out", OUT], ["transforms.json", "k4"]),
    ("fit-bomb-image", ["fit", "{scene_bomb_image}", "--out", OUT], ["im2.png", "pixels"]),
    ("fit-llff-pickle", ["fit", "{llff_pickle}", "--out", OUT], ["poses_bounds.npy", "pickle"]),
    ("fit-llff-garbage", ["fit", "{llff_garbage}", "--out", OUT], ["poses_bounds.npy"]),
    ("fit-llff-empty", ["fit", "{llff_empty}", "--out", OUT], ["poses_bounds.npy"]),
    ("fit-llff-shape", ["fit", "{llff_shape}", "--out", OUT], ["poses_bounds.npy", "17"]),
    ("fit-llff-zero", ["fit", "{llff_zero}", "--out", OUT], ["poses_bounds.npy", "rotation"]),
    ("fit-llff-count", ["fit", "{llff_count}", "--out", OUT], ["poses_bounds.npy", "3 poses"]),
    ("fit-colmap-bad-line", ["fit", "{colmap_bad}", "--out", OUT], ["images.txt"]),
    ("fit-colmap-model", ["fit", "{colmap_model}", "--out", OUT], ["cameras.txt", "EQUIRECTANGULAR"]),
    # -- fit: options --------------------------------------------------------------------------
    ("fit-steps-negative", ["fit", "{scene}", "--steps", "-1", "--out", OUT], ["--steps", "-1", ">= 1"]),
    ("fit-steps-zero", ["fit", "{scene}", "--steps", "0", "--out", OUT], ["--steps", ">= 1"]),
    ("fit-lr-negative", ["fit", "{scene}", "--lr-means", "-0.1", "--out", OUT], ["--lr-means", ">= 0"]),
    ("fit-downscale-zero", ["fit", "{scene}", "--downscale", "0", "--out", OUT], ["--downscale"]),
    ("fit-ssim-weight", ["fit", "{scene}", "--ssim-weight", "1.5", "--out", OUT], ["--ssim-weight", "between 0 and 1"]),
    ("fit-sh-degree", ["fit", "{scene}", "--sh-degree", "7", "--out", OUT], ["--sh-degree"]),
    ("fit-test-views", ["fit", "{scene}", "--test-views", "9", "--out", OUT], ["test views", "9"]),
    ("fit-num-train-views", ["fit", "{scene}", "--num-train-views", "0", "--out", OUT], ["--num-train-views"]),
    ("fit-out-parent-file", ["fit", "{scene}", "--out", "{file}/run"], ["{file}", "not a folder"]),
    ("fit-resume-never-ran", ["fit", "{scene}", "--resume", OUT], [OUT, "--resume"]),
    ("fit-config-bad-yaml", ["fit", "{scene}", "--config", "{yaml_bad}", "--out", OUT], ["bad.yaml"]),
    ("fit-config-not-mapping", ["fit", "{scene}", "--config", "{yaml_list}", "--out", OUT], ["list.yaml"]),
    ("fit-config-missing", ["fit", "{scene}", "--config", "{missing}", "--out", OUT], ["{missing}"]),
    # -- object --------------------------------------------------------------------------------
    ("object-missing-image", ["object", "--image", "{missing}", "--out", OUT], ["{missing}"]),
    ("object-folder-image", ["object", "--image", "{folder_png}", "--out", OUT], ["folder.png", "is a folder"]),
    ("object-text-image", ["object", "--image", "{text_png}", "--out", OUT], ["notes.png"]),
    ("object-empty-image", ["object", "--image", "{empty_png}", "--out", OUT], ["empty.png"]),
    ("object-truncated-image", ["object", "--image", "{truncated_png}", "--out", OUT], ["truncated.png"]),
    ("object-bomb-image", ["object", "--image", "{bomb_png}", "--out", OUT], ["bomb.png", "pixels"]),
    ("object-mask-aspect", ["object", "--image", "{image}", "--mask", "{mask_wide}", "--out", OUT],
     ["mask_wide.png", "48x32", "32x32"]),
    ("object-mask-photo", ["object", "--image", "{image}", "--mask", "{mask_photo}", "--out", OUT],
     ["mask_photo.png", "black-and-white"]),
    ("object-fit-steps", ["object", "--image", "{image}", "--fit-steps", "-5", "--out", OUT], ["--fit-steps"]),
    ("object-nan-guidance", ["object", "--image", "{image}", "--guidance-scale", "nan", "--out", OUT],
     ["--guidance-scale", "nan"]),
    ("object-frames-zero", ["object", "--image", "{image}", "--frames", "0", "--out", OUT], ["--frames"]),
    ("object-resolution-zero", ["object", "--image", "{image}", "--resolution", "0", "--out", OUT],
     ["--resolution"]),
    ("object-fov", ["object", "--image", "{image}", "--fov-deg", "190", "--out", OUT], ["--fov-deg"]),
    ("object-preset", ["object", "--image", "{image}", "--preset", "nope", "--out", OUT], ["--preset"]),
    ("object-out-parent-file", ["object", "--image", "{image}", "--out", "{file}/run"], ["{file}"]),
    ("object-config-unknown", ["object", "--image", "{image}", "--config", "{yaml_unknown}", "--out", OUT],
     ["unknown.yaml", "fit_stepz"]),
    ("object-config-type", ["object", "--image", "{image}", "--config", "{yaml_type}", "--out", OUT],
     ["type.yaml", "fit_steps"]),
    ("object-config-range", ["object", "--image", "{image}", "--config", "{yaml_range}", "--out", OUT],
     ["--fit-steps", "-3"]),
    ("object-resume-never-ran", ["object", "--image", "{image}", "--resume", "--out", OUT], [OUT, "--resume"]),
    # -- explore -------------------------------------------------------------------------------
    ("explore-missing-image", ["explore", "--image", "{missing}", "--move", "dolly-in", "--out", OUT], ["{missing}"]),
    ("explore-bomb-image", ["explore", "--image", "{bomb_png}", "--move", "dolly-in", "--out", OUT], ["bomb.png"]),
    ("explore-strength", ["explore", "--image", "{image}", "--strength", "2", "--out", OUT], ["--strength"]),
    ("explore-chunk-zero", ["explore", "--image", "{image}", "--chunk", "0", "--out", OUT], ["--chunk"]),
    ("explore-frames-zero", ["explore", "--image", "{image}", "--frames", "0", "--out", OUT], ["--frames"]),
    ("explore-speed-negative", ["explore", "--image", "{image}", "--speed", "-1", "--out", OUT], ["--speed"]),
    ("explore-bad-path", ["explore", "--image", "{image}", "--path", "{traj_text}", "--out", OUT], ["path.txt"]),
    ("explore-nan-path", ["explore", "--image", "{image}", "--path", "{traj_nan}", "--out", OUT], ["path_nan.json"]),
    # -- complete ------------------------------------------------------------------------------
    ("complete-missing-scene", ["complete", "{missing}", "--out", OUT], ["{missing}"]),
    ("complete-baseline-steps", ["complete", "{scene}", "--baseline.steps", "0", "--out", OUT],
     ["--baseline.steps"]),
    ("complete-cfg-rescale", ["complete", "{scene}", "--generation.cfg-rescale", "3", "--out", OUT],
     ["--generation.cfg-rescale"]),
    ("complete-llff-pickle", ["complete", "{llff_pickle}", "--out", OUT], ["poses_bounds.npy"]),
    # -- stylize -------------------------------------------------------------------------------
    ("stylize-missing-mesh", ["stylize", "--mesh", "{missing}", "--trajectory", "{trajectory}", "--style",
                              "{image}", "--out", OUT], ["{missing}"]),
    ("stylize-garbage-mesh", ["stylize", "--mesh", "{mesh_garbage}", "--trajectory", "{trajectory}", "--style",
                              "{image}", "--out", OUT], ["garbage.obj"]),
    ("stylize-bomb-style", ["stylize", "--mesh", "{mesh}", "--trajectory", "{trajectory}", "--style",
                            "{bomb_png}", "--out", OUT], ["bomb.png"]),
    ("stylize-bad-trajectory", ["stylize", "--mesh", "{mesh}", "--trajectory", "{traj_bad_version}", "--style",
                                "{image}", "--out", OUT], ["path_v9.json", "version"]),
    ("stylize-steps", ["stylize", "--mesh", "{mesh}", "--trajectory", "{trajectory}", "--style", "{image}",
                       "--steps", "0", "--out", OUT], ["--steps"]),
    ("stylize-resolution-odd", ["stylize", "--mesh", "{mesh}", "--trajectory", "{trajectory}", "--style",
                                "{image}", "--resolution", "18", "--out", OUT],
     ["--resolution is 18", "multiple of 4"]),  # (above 680 px is no longer refused: frames are drawn in tiles)
    ("stylize-noise-alpha", ["stylize", "--mesh", "{mesh}", "--trajectory", "{trajectory}", "--style", "{image}",
                             "--noise-alpha", "nan", "--out", OUT], ["--noise-alpha"]),
    # -- train / eval / data -------------------------------------------------------------------
    ("train-depth-steps", ["train", "depth", "--out", OUT, "--loop.steps", "-1"], ["--loop.steps"]),
    ("train-vae-lr", ["train", "vae", "--out", OUT, "--loop.lr", "0"], ["--loop.lr", "> 0"]),
    ("train-video-batch", ["train", "video", "--out", OUT, "--task.batch", "0"], ["--task.batch"]),
    ("train-explore-ema", ["train", "explore", "--out", OUT, "--loop.ema-decay", "1.5"], ["--loop.ema-decay"]),
    ("train-stylize-frames", ["train", "stylize", "--out", OUT, "--data.frames", "0"], ["--data.frames"]),
    ("eval-object-novel", ["eval", "object", "--novel-views", "0"], ["--novel-views"]),
    ("eval-explore-frames", ["eval", "explore", "--frames", "0", "--out", OUT], ["--frames"]),
    ("eval-depth-rooms", ["eval", "depth", "--rooms", "0"], ["--rooms"]),
    ("data-make-count", ["data", "make", "objects", "--out", OUT, "--count", "0"], ["--count"]),
    ("data-make-resolution", ["data", "make", "rooms", "--out", OUT, "--resolution", "-8"], ["--resolution"]),
    # -- trajectory ----------------------------------------------------------------------------
    ("traj-make-frames", ["trajectory", "make", "orbit", "--frames", "0", "--out", OUT + ".json"], ["--frames"]),
    ("traj-make-fov", ["trajectory", "make", "orbit", "--fov-deg", "nan", "--out", OUT + ".json"], ["--fov-deg"]),
    ("traj-extend-missing", ["trajectory", "make", "extend", "--input", "{missing}", "--out", OUT + ".json"],
     ["{missing}"]),
    ("traj-convert-version", ["trajectory", "convert", "{traj_bad_version}", "--out", OUT + ".json"],
     ["path_v9.json"]),
    ("traj-convert-lens", ["trajectory", "convert", "{scene_lens}/transforms.json", "--out", OUT + ".json"],
     ["transforms.json", "k1=0.1", "--distortion drop"]),
    ("traj-convert-pickle", ["trajectory", "convert", "{npy_pickle}", "--out", OUT + ".json"], ["cams_pickle.npy"]),
    ("traj-validate-nan", ["trajectory", "validate", "{traj_nan}"], ["path_nan.json"]),
    ("traj-info-text", ["trajectory", "info", "{traj_text}"], ["path.txt"]),
    ("traj-preview-missing", ["trajectory", "preview", "{missing}", "--out", OUT + ".png"], ["{missing}"]),
    ("traj-preview-scene", ["trajectory", "preview", "{trajectory}", "--scene", "{ply_garbage}",
                            "--out", OUT + ".png"], ["splats.ply"]),
    # -- models / view / batch / rerun ---------------------------------------------------------
    ("models-convert-untrusted", ["models", "convert", "{ckpt_pickle}", OUT + ".safetensors"], ["--trust-pickle"]),
    ("models-convert-garbage", ["models", "convert", "{ckpt_garbage}", OUT + ".safetensors", "--trust-pickle"],
     ["garbage.ckpt"]),
    ("models-info-unknown", ["models", "info", "no-such-model"], ["no-such-model"]),
    ("view-missing", ["view", "{missing}"], ["{missing}"]),
    ("view-garbage-ply", ["view", "{ply_garbage}", "--screenshot", OUT + ".png"], ["splats.ply"]),
    ("view-port", ["view", "{mesh}", "--port", "70000"], ["--port"]),
    ("batch-not-cases", ["batch", "{batch_bad}", "--out", OUT, "--no-ray"], ["cases.yaml"]),
    ("batch-missing", ["batch", "{missing}", "--out", OUT, "--no-ray"], ["{missing}"]),
    ("batch-cpus", ["batch", "{batch_bad}", "--out", OUT, "--cpus-per-case", "0"], ["--cpus-per-case"]),
    ("rerun-missing", ["rerun", "{missing}", "--out", OUT], ["{missing}"]),
    ("rerun-not-json", ["rerun", "{manifest_not_json}", "--out", OUT], ["manifest.json"]),
    ("rerun-bad-manifest", ["rerun", "{manifest_bad}", "--out", OUT], ["manifest.json"]),
    ("threads", ["fit", "{scene}", "--threads", "0", "--out", OUT], ["--threads"]),
]


def _fill(arg: str, inputs: dict[str, Path], out: Path) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: str(out if m.group(1) == "out" else inputs[m.group(1)]), arg)


def test_the_table_covers_every_command():
    commands = {args[0] for _, args, _ in CASES}
    assert commands >= {"fit", "object", "explore", "complete", "stylize", "train", "eval", "trajectory", "data",
                        "models", "view", "batch", "rerun"}
    assert len(CASES) >= 60
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("args, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_sentence(args, names, bad_inputs, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a command that defaults its output next to the input writes nothing there
    out = tmp_path / "out" / "run"
    out.parent.mkdir()
    argv = [_fill(a, bad_inputs, out) for a in args]
    capfd.readouterr()
    status = main(argv)
    err = capfd.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert status == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    sentence = lines[0][len("error: "):]
    assert sentence.endswith(".") and not re.search(r"\w\. [A-Z]", sentence), sentence  # one sentence
    for name in names:
        assert _fill(name, bad_inputs, out) in sentence, (name, sentence)
    left = sorted(p.name for p in out.parent.iterdir())
    assert left == [], f"left behind: {left}"
    assert sorted(os.listdir(tmp_path)) == ["out"]
