"""--config FILE.yaml: the file gives a job's defaults, flags override it, bad files get one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vdm3d.cli.config import build, cli, pop_config_flag, read_config_file
from vdm3d.cli.main import dispatch
from vdm3d.cli.object import choose_preset
from vdm3d.errors import ConfigError, InputError
from vdm3d.jobs.fit import FitJobConfig
from vdm3d.jobs.object import PRESETS, ObjectConfig


def test_pop_config_flag_in_both_spellings():
    assert pop_config_flag(["--a", "1", "--config", "x.yaml", "--b"]) == (["--a", "1", "--b"], Path("x.yaml"))
    assert pop_config_flag(["--config=y.yml"]) == ([], Path("y.yml"))
    assert pop_config_flag(["--steps", "2"]) == (["--steps", "2"], None)
    with pytest.raises(ConfigError, match="--config needs a file"):
        pop_config_flag(["--config"])


def test_file_sets_defaults_and_flags_win(tmp_path):
    f = tmp_path / "cup.yaml"
    f.write_text("image: cup.png\nfit-steps: 50\nguidance: triangular\nrefine: true\nradius: 3\n")
    config = cli(ObjectConfig, ["--config", str(f), "--fit-steps", "70"], "vdm3d object")
    assert config.image == Path("cup.png") and config.guidance == "triangular" and config.refine
    assert config.fit_steps == 70  # the flag overrides the file
    assert config.radius == 3.0 and isinstance(config.radius, float)
    assert config.steps == ObjectConfig().steps  # untouched fields keep the defaults


def test_file_applies_on_top_of_a_preset(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("image: a.png\nsteps: 7\n")
    config = cli(ObjectConfig, ["--config", str(f), "--preset", "v3d"], "vdm3d object",
                 default=choose_preset(["--preset", "v3d"]))
    assert config.steps == 7 and config.guidance_scale == PRESETS["v3d"][1].guidance_scale


def test_nested_configs_and_positional_fields_through_dispatch(tmp_path):
    f = tmp_path / "fit.yaml"
    f.write_text("data: scenes/fern\ndownscale: 4\nsplit: {test_every: 0, train_views: [0, 2, 5]}\n"
                 "fit: {steps: 30}\n")
    config = dispatch(FitJobConfig, ["--config", str(f), "--steps", "40"], "vdm3d fit")
    assert config.data == Path("scenes/fern") and config.downscale == 4
    assert config.split.train_views == (0, 2, 5) and config.split.test_every == 0
    assert config.fit.steps == 40 and config.fit.patch_size == FitJobConfig.__dataclass_fields__["fit"].default.patch_size
    assert dispatch(FitJobConfig, ["--config", str(f), "other/scene"], "vdm3d fit").data == Path("other/scene")


@pytest.mark.parametrize("text, words", [
    ("fit_stpes: 3\n", "'fit_stpes' is not an option of ObjectConfig \\(did you mean 'fit_steps'\\?\\)"),
    ("fit_steps: many\n", "fit_steps must be a whole number, got 'many'"),
    ("guidance: sideways\n", "guidance must be one of 'triangular', 'constant'"),
    ("radius: [1, 2]\n", "radius must be a number"),
    ("- a\n- b\n", "is not a mapping of options"),
    ("image: [unclosed\n", "is not valid YAML"),
])
def test_bad_config_files_name_the_file_and_field(tmp_path, text, words):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises((ConfigError, InputError), match=words) as e:
        cli(ObjectConfig, ["--config", str(f)], "vdm3d object")
    assert str(f) in str(e.value)


def test_a_run_manifest_is_a_config_with_paths_from_its_folder(tmp_path):
    recorded = {"image": "photos/cup.png", "out": "runs/cup", "fit_steps": 12, "overwrite": True, "frames": None}
    m = tmp_path / "manifest.json"
    m.write_text(json.dumps({"format": "vdm3d.run", "version": 1, "command": ["vdm3d", "object"],
                             "cwd": "/work/where", "config": recorded}))
    data, base = read_config_file(m)
    assert base.folder == Path("/work/where") and not base.beside and "overwrite" not in data  # never overwrites
    config = build(ObjectConfig, data, None, str(m), base)
    assert config.image == Path("/work/where/photos/cup.png") and config.fit_steps == 12
    assert config.frames is None and not config.overwrite


def test_a_yaml_files_relative_paths_are_taken_beside_it_when_there(tmp_path, monkeypatch):
    """``image: cup.png`` next to ``cup.yaml`` works from any folder (as in a batch manifest); a path that is not
    beside the file (an output folder, a file of the current folder) means what it means on the command line."""
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    (project / "cup.png").write_bytes(b"png")
    (elsewhere / "mask.png").write_bytes(b"png")
    (project / "cup.yaml").write_text("image: cup.png\nmask: mask.png\nout: runs/cup\n")
    monkeypatch.chdir(elsewhere)
    config = cli(ObjectConfig, ["--config", str(project / "cup.yaml")], "vdm3d object")
    assert config.image == project / "cup.png"
    assert config.mask == Path("mask.png") and config.out == Path("runs/cup")
    (project / "runs" / "cup").mkdir(parents=True)  # an output folder beside the file does not move the run there
    assert cli(ObjectConfig, ["--config", str(project / "cup.yaml")], "vdm3d object").out == Path("runs/cup")


@pytest.mark.parametrize("job, text", [("object", "seed: 4321\n"), ("fit", "fit: {seed: 4321}\n"),
                                       ("complete", "seed: 4321\n"), ("explore", "seed: 4321\n"),
                                       ("stylize", "seed: 4321\n")])
def test_every_job_takes_a_config_file(tmp_path, capsys, job, text):
    from vdm3d.cli.main import main

    pytest.importorskip(f"vdm3d.jobs.{job}")  # (the job's own tests report a job that does not import)
    f = tmp_path / "c.yaml"
    f.write_text(text)
    assert main([job, "--config", str(f), "--help"]) == 0
    out = capsys.readouterr().out
    assert "4321" in out and "--config FILE.yaml" in out  # the file's value is the default shown


def test_flat_flag_names_of_nested_options_work_in_a_file(tmp_path):
    """`vdm3d fit --help` shows --steps, --downscale, --num-train-views at top level: a file takes those names."""
    f = tmp_path / "fit.yaml"
    f.write_text("data: scenes/fern\nsteps: 20\ndownscale: 8\nnum-train-views: 3\nrefine_start: 7\n")
    config = dispatch(FitJobConfig, ["--config", str(f)], "vdm3d fit")
    assert (config.fit.steps, config.downscale, config.split.num_train_views) == (20, 8, 3)
    assert config.fit.densify.refine_start == 7  # two levels down (FitConfig.densify), still flat on the command line
    assert config.fit.patch_size == FitJobConfig.__dataclass_fields__["fit"].default.patch_size  # the rest kept
    f.write_text("data: scenes/fern\nsteps: 20\nfit: {steps: 30}\n")
    with pytest.raises(ConfigError, match="fit.steps is set twice"):
        dispatch(FitJobConfig, ["--config", str(f)], "vdm3d fit")


def test_dotted_flags_and_no_flags_in_a_file(tmp_path):
    from vdm3d.cli.batch import BatchConfig
    from vdm3d.jobs.complete import CompleteConfig

    config = build(CompleteConfig, {"data": "s", "plan.max_hole_fraction": 0.2, "baseline.steps": 9}, None, "c.yaml")
    assert config.plan.max_hole_fraction == 0.2 and config.baseline.steps == 9
    assert config.plan.hybrid == "auto"  # CompleteConfig's own plan default, kept
    assert build(BatchConfig, {"manifest": "m.yaml", "no_ray": True}, None, "b.yaml").ray is False
    assert build(BatchConfig, {"manifest": "m.yaml", "no-ray": False}, None, "b.yaml").ray is True


@pytest.mark.parametrize("key, words", [
    ("path", "'path' is not an option of FitJobConfig \\(the positional argument is `data:` in a file\\)"),
    ("stesp", "'stesp' is not an option of FitJobConfig \\(did you mean 'steps'\\?"),
])
def test_unknown_keys_name_the_flat_spelling_and_the_positional(tmp_path, key, words):
    f = tmp_path / "fit.yaml"
    f.write_text(f"{key}: 3\n")
    with pytest.raises(ConfigError, match=words):
        dispatch(FitJobConfig, ["--config", str(f)], "vdm3d fit")
