"""The jobs called from Python (docs/python.md): every run_* checks its config as the CLI does before any
folder is made, leaves the caller's torch random state alone, and prints nothing unless asked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vdm3d.cli.main import main as cli
from vdm3d.data.readers import Split
from vdm3d.errors import ConfigError
from vdm3d.jobs.complete import CompleteConfig, run_complete
from vdm3d.jobs.explore import ExploreConfig, run_explore
from vdm3d.jobs.fit import FitJobConfig, run_fit
from vdm3d.jobs.object import ObjectConfig, run_object
from vdm3d.jobs.stylize import StylizeConfig, run_stylize
from vdm3d.recon.trainer import FitConfig

CLI_SEED = "--seed {} is out of range: it must be between 0 and 4294967295; pass a value in that range."
SEED = "{}.seed = {} is out of range: it must be between 0 and 4294967295; pass a value in that range."


@pytest.fixture
def image_path(tmp_path) -> Path:
    img = np.zeros((48, 64, 3), np.uint8)
    img[:, :, 0] = np.linspace(30, 220, 64, dtype=np.uint8)[None]
    img[:, :, 1] = np.linspace(200, 40, 48, dtype=np.uint8)[:, None]
    img[10:30, 20:40] = np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    path = tmp_path / "inputs" / "start.png"
    path.parent.mkdir()
    Image.fromarray(img).save(path)
    return path


def _bogus(config, **changes):
    """``config`` with values its constructor's annotations refuse (the test session type-checks
    constructors; a library caller's process does not)."""
    config = dataclasses.replace(config)
    for name, value in changes.items():
        object.__setattr__(config, name, value)
    return config


def _cases(image: Path, fern: Path, out: Path):
    """(run function, config, the sentence it must raise): values every run used to take, or crash on. A library
    call's sentence names the dataclass field, not the command-line flag."""
    stylize = StylizeConfig(mesh=image, trajectory=image, style=image, out=out)
    return [
        # ran to a normal-looking run folder of the unfitted Gaussians
        (run_fit, FitJobConfig(data=fern, out=out, downscale=16, fit=FitConfig(steps=0)),
         "FitJobConfig.fit.steps = 0 is out of range: it must be >= 1; pass a value in that range."),
        (run_fit, FitJobConfig(data=fern, out=out, downscale=16,
                               fit=dataclasses.replace(FitConfig(steps=5), ssim_weight=float("nan"))),
         "FitJobConfig.fit.ssim_weight = nan is out of range: it must be between 0 and 1; pass a value in that range."),
        # ran as the random init
        (run_fit, _bogus(FitJobConfig(data=fern, out=out, downscale=16), init="bogus"),
         "FitJobConfig.init takes one of points, random, not 'bogus'; pass one of them."),
        # ran with the default 18 views and recorded frames: 0
        (run_object, ObjectConfig(image=image, out=out, frames=0),
         "ObjectConfig.frames = 0 is out of range: it must be >= 4; pass a value in that range."),
        # ran the tiny preset and recorded "bogus" as the preset
        (run_object, ObjectConfig(image=image, out=out, preset="bogus"),
         "--preset 'bogus' is unknown; choose one of: tiny, sv3d, sv3d-dynamic, sv3d-u, v3d."),
        # sent the user after the masks and cameras
        (run_object, ObjectConfig(image=image, out=out, guidance_scale=float("nan")),
         "ObjectConfig.guidance_scale = nan is out of range: it must be >= 0; pass a value in that range."),
        (run_object, ObjectConfig(image=image, out=out, seed=-1), SEED.format("ObjectConfig", -1)),
        (run_explore, ExploreConfig(image=image, out=out, move=("dolly-in",), seed=2**64), SEED.format("ExploreConfig", 2**64)),
        # named --mean-steps first
        (run_explore, ExploreConfig(image=image, out=out, move=("dolly-in",), steps=-1),
         "ExploreConfig.steps = -1 is out of range: it must be >= 1; pass a value in that range."),
        (run_stylize, dataclasses.replace(stylize, seed=-1), SEED.format("StylizeConfig", -1)),
        (run_complete, CompleteConfig(data=fern, out=out, seed=-1), SEED.format("CompleteConfig", -1)),
        (run_complete, _bogus(CompleteConfig(data=fern, out=out), paths="circle"),
         "CompleteConfig.paths takes one of planned, orbit, not 'circle'; pass one of them."),
    ]


@pytest.mark.parametrize("index", range(12))
def test_run_functions_check_their_config_before_any_folder(index, image_path, shared_data, tmp_path):
    out = tmp_path / "runs" / "run"
    run, config, sentence = _cases(image_path, shared_data / "llff_fern", out)[index]
    with pytest.raises(ConfigError) as e:
        run(config)
    assert str(e.value) == sentence
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("argv", [
    ["object", "--image", "{image}", "--seed", "-1", "--frames", "12", "--out", "{out}"],
    ["complete", "{fern}", "--num-train-views", "3", "--seed", "-1", "--out", "{out}"],
])
def test_a_negative_seed_on_the_command_line_is_one_sentence_and_exit_2(argv, image_path, shared_data, tmp_path,
                                                                       capsys):
    out = tmp_path / "runs" / "run"
    names = {"image": image_path, "fern": shared_data / "llff_fern", "out": out}
    assert cli([a.format(**names) for a in argv]) == 2
    assert capsys.readouterr().err == f"error: {CLI_SEED.format(-1)}\n"
    assert not (tmp_path / "runs").exists()


def test_complete_with_method_v3d_is_refused_by_the_guided_job(tmp_path):
    """run_complete ran the guided method for a config that says --method v3d (the CLI picks the function)."""
    with pytest.raises(ConfigError) as e:
        run_complete(CompleteConfig(data=tmp_path / "scene", method="v3d"))
    assert str(e.value) == ("complete: run_complete runs --method guidedvd; call "
                            "vdm3d.jobs.complete_v3d.run_complete_v3d for --method v3d.")
    from vdm3d.jobs.complete_v3d import run_complete_v3d

    with pytest.raises(ConfigError, match=r'^complete: run_complete_v3d runs --method v3d; set method="v3d" in'):
        run_complete_v3d(CompleteConfig(data=tmp_path / "scene"))
    assert not (tmp_path / "runs").exists() and list(tmp_path.iterdir()) == []


def test_a_job_leaves_the_callers_torch_random_state_alone(image_path, tmp_path):
    """A model built inside the job initialises its layers from the global generator before its weights
    are loaded; the caller's seeded numbers after the job moved. The job's own output is unchanged."""
    config = ExploreConfig(image=image_path, move=("dolly-in",), frames=6, chunk=4, context=1, steps=1, samples=1,
                           fit_steps=2, points_per_frame=256, max_points=600)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = run_explore(dataclasses.replace(config, out=tmp_path / "a"), progress=None)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # another global state: the same video
    second = run_explore(dataclasses.replace(config, out=tmp_path / "b"), progress=None)
    assert torch.equal(first.video.images, second.video.images)
    assert (tmp_path / "a" / "video.mp4").read_bytes() == (tmp_path / "b" / "video.mp4").read_bytes()


def test_run_fit_prints_nothing_unless_given_say(shared_data, tmp_path, capsys):
    config = FitJobConfig(data=shared_data / "llff_fern", out=tmp_path / "quiet", downscale=16,
                          split=Split(test_every=8), fit=FitConfig(steps=2, checkpoint_every=100))
    run_fit(config)
    said = capsys.readouterr()
    assert (said.out, said.err) == ("", "")
    lines: list[str] = []
    run_fit(dataclasses.replace(config, out=tmp_path / "told"), say=lines.append)
    assert lines == ["loading 20 views at 32x24"]  # fern's 4032x3024 photos at --downscale 16 (from images_8)
    assert capsys.readouterr().out == ""


def test_the_package_docstring_and_readme_point_at_pages_that_exist():
    import re

    import vdm3d

    root = Path(__file__).resolve().parents[2]
    named = re.findall(r"[\w/]+\.md", vdm3d.__doc__)
    assert "docs/python.md" in named and all((root / name).is_file() for name in named), named
    assert "[docs/python.md](docs/python.md)" in (root / "README.md").read_text()


def test_run_fit_without_say_still_warns_of_memory_as_a_python_warning(shared_data, tmp_path, monkeypatch):
    # Without say nothing is printed, but a scene that will not fit in memory is still said, as a warning a
    # script sees (with the --downscale that fits), before the images are loaded.
    from vdm3d.jobs import fit as fit_job

    monkeypatch.setattr(fit_job, "available_memory", lambda device: 1)  # one byte free: nothing fits
    config = FitJobConfig(data=shared_data / "llff_fern", out=tmp_path / "quiet", downscale=16,
                          split=Split(test_every=8), fit=FitConfig(steps=2, checkpoint_every=100))
    with pytest.warns(UserWarning, match=r"^20 views at 32x24 need about .* \(an estimate\)"):
        run_fit(config)
