"""Batch manifests become the exact job commands, and each case's folder says what is left to do."""

from __future__ import annotations

import json

import pytest

from vdm3d.batch import runner
from vdm3d.batch.cases import Case, flags, read_cases
from vdm3d.batch.runner import CaseResult, case_state, command_for, summary_table
from vdm3d.errors import InputError


def test_flags_follow_tyro_spelling():
    assert flags({"fit_steps": 3, "refine": True, "recentre": False, "presets": ["dolly-in", "pan-left"],
                  "frames": None, "split": {"num_train_views": 3}}) == [
        "--fit-steps", "3", "--refine", "--no-recentre", "--presets", "dolly-in", "pan-left", "--frames", "None",
        "--split.num-train-views", "3"]


def test_jsonl_cases_with_paths_from_the_manifest_folder(tmp_path):
    (tmp_path / "cup.png").write_bytes(b"x")
    (tmp_path / "m.jsonl").write_text('# photos\n{"image": "cup.png", "steps": 2}\n\n'
                                      '{"name": "mug", "job": "fit", "data": "elsewhere/mug", "argv": ["-v"]}\n')
    a, b = read_cases(tmp_path / "m.jsonl", tmp_path / "runs", job="object")
    assert (a.name, a.job, a.out) == ("cup", "object", tmp_path / "runs" / "cup")  # named after its input
    assert a.options == {"image": str((tmp_path / "cup.png").resolve()), "steps": 2}
    assert a.command() == ["--image", str((tmp_path / "cup.png").resolve()), "--steps", "2",
                           "--out", str(tmp_path / "runs" / "cup")]
    assert (b.name, b.job, b.positionals) == ("mug", "fit", ("elsewhere/mug",))  # missing path left as written
    assert b.command() == ["-v", "elsewhere/mug", "--out", str(tmp_path / "runs" / "mug")]  # fit's data is positional


def test_yaml_shared_options_and_per_case_trajectory(tmp_path):
    (tmp_path / "walk.json").write_text("{}")
    (tmp_path / "b.yaml").write_text(
        "job: explore\noptions: {steps: 4, chunk: 8}\ncases:\n"
        "  - {name: a, image: a.png, path: walk.json, steps: 2}\n"
        "  - {name: b, image: b.png, out: /tmp/elsewhere/bee}\n")
    a, b = read_cases(tmp_path / "b.yaml", tmp_path / "runs")
    assert a.job == b.job == "explore"
    assert a.options == {"steps": 2, "chunk": 8, "image": "a.png", "path": str((tmp_path / "walk.json").resolve())}
    assert str(b.out) == "/tmp/elsewhere/bee" and "out" not in b.options


@pytest.mark.parametrize("text, suffix, words", [
    ('{"image": "a.png"}\n{"image": \n', ".jsonl", "line 2 is not JSON"),
    ('{"name": "x", "image": "a.png"}\n{"name": "x", "image": "b.png"}\n', ".jsonl", "'x' repeats line 1"),
    ('{"name": "../up", "image": "a.png"}\n', ".jsonl", "not a usable folder name"),
    ('{"name": "\u00fcn\u00ef", "image": "a.png"}\n', ".jsonl", "use ASCII letters"),  # 'letters' read as any
    ("cases: {a: 1}\n", ".yaml", "cases is not a list"),
    ("jobs: object\ncases: []\n", ".yaml", "jobs is not a batch setting"),
    ("", ".jsonl", "lists no cases"),
    ("a,b\n", ".csv", "names no manifest format"),
])
def test_bad_manifests_get_one_sentence(tmp_path, text, suffix, words):
    path = tmp_path / f"m{suffix}"
    path.write_text(text)
    with pytest.raises(InputError, match=words):
        read_cases(path, tmp_path / "runs", job="object")


def test_missing_job_is_named(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(InputError, match="line 1 job is not given"):
        read_cases(tmp_path / "m.jsonl", tmp_path / "runs")


def test_case_state_and_resume_commands(tmp_path, monkeypatch):
    def case(name: str, job: str = "fit") -> Case:
        return Case(name, job, {"data": "d"}, tmp_path / name)

    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "manifest.json").write_text('{"format": "vdm3d.run"}')
    (tmp_path / ".broken.partial" / "checkpoints").mkdir(parents=True)
    (tmp_path / ".killed.partial").mkdir()
    states = {n: case_state(case(n)) for n in ("done", "broken", "killed", "new")}
    assert states == {"done": "done", "broken": "resume", "killed": "restart", "new": "todo"}

    styles = {"fit": "path", "data": "flag", "object": "none"}
    monkeypatch.setattr(runner, "resume_style", lambda job: styles[job])
    base = ["--data", "d", "--out", str(tmp_path / "broken")]
    assert command_for(case("broken"), "resume") == ["fit", *base, "--resume", str(tmp_path / "broken")]
    assert command_for(case("broken", "data"), "resume") == ["data", *base, "--resume"]
    # a job that cannot resume starts again, discarding the checkpoint (the job refuses to without --overwrite)
    assert command_for(case("broken", "object"), "resume") == ["object", *base, "--overwrite"]
    assert command_for(case("killed"), "restart") == ["fit", *base[:-1], str(tmp_path / "killed")]


def test_a_folder_with_someone_elses_manifest_is_not_a_finished_case(tmp_path):
    """A case's --out holding a web app's manifest.json is not a finished run to skip: the job runs and refuses the
    folder by name (a case skipped as done would have reported 'ok' on files vdm3d never wrote)."""
    for name, text in (("app", '{"name": "app", "start_url": "/"}'), ("empty", "{}"), ("text", "not json"),
                       ("run", '{"format": "vdm3d.run", "version": 1}')):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(text)
    states = {n: case_state(Case(n, "fit", {"data": "d"}, tmp_path / n)) for n in ("app", "empty", "text", "run")}
    assert states == {"app": "todo", "empty": "todo", "text": "todo", "run": "done"}


def test_a_finished_case_whose_options_changed_is_named(tmp_path):
    """Editing a case's options after it finished: still skipped (its results stand), but the summary names it
    and how to run it again; the recorded ``--resume RUN`` / ``--overwrite`` of the earlier run do not count."""
    case = Case("a", "fit", {"data": "d", "fit": {"steps": 20}}, tmp_path / "a")
    (tmp_path / "a").mkdir()
    ran = ["/venv/bin/vdm3d", "fit", *case.command(), "--resume", str(tmp_path / "a"), "--overwrite"]
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"format": "vdm3d.run", "command": ran}))
    assert not runner.options_changed(case)
    edited = Case("b", "fit", {"data": "d", "fit": {"steps": 60}}, tmp_path / "a")  # the same folder
    assert runner.options_changed(edited)
    results = runner.run_cases([case, edited], tmp_path / "logs", use_ray=False)
    assert [r.status for r in results] == ["skipped", "skipped"] and results[0].error == ""
    table = summary_table(results)
    assert "b: skipped: its options differ from those of its finished run" in table and "a: skipped" not in table
    assert table.endswith("0 ran, 2 already done, 0 failed")


def test_a_usage_error_is_summarized_by_its_text_not_its_frame():
    """A case that fails on a mistyped option ends its output with tyro's box; the summary quotes the box's
    message, not its bottom border. Other failures keep their last line."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "vdm3d.cli.main", "object", "--image", "x.png", "--frobnicate"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and (proc.stdout + proc.stderr).strip().endswith("╯")
    assert runner.last_words(proc.stdout + proc.stderr) == "Unrecognized options: --frobnicate"
    assert runner.last_words("loading\nerror: c.png: does not exist.\n") == "error: c.png: does not exist."
    assert runner.last_words("") == ""


def test_summary_table_counts_and_names_failures():
    rows = [CaseResult("a", "object", "done", "skipped", 0.0, "runs/a"),
            CaseResult("b", "object", "restart", "ok", 12.5, "runs/b"),
            CaseResult("c", "object", "todo", "failed", 1.0, "runs/c", 2, "error: c.png: does not exist.")]
    table = summary_table(rows)
    assert "b     object  restart  ok       12.5" in table
    assert "c: exit 2: error: c.png: does not exist." in table
    assert table.endswith("1 ran, 1 already done, 1 failed")


@pytest.mark.slow
def test_resume_style_reads_the_jobs_help():
    assert runner.resume_style("fit") == "path"  # --resume RUN
    assert runner.resume_style("object") == "flag"  # --resume / --no-resume (per-stage checkpoints)


def _manifest(tmp_path, text):
    (tmp_path / "m.yaml").write_text(text)
    return tmp_path / "m.yaml"


def test_shared_options_go_only_to_the_cases_of_the_job_they_are_for(tmp_path):
    """The docs' example: `fit_steps` is Gaussian steps in object but cache steps per chunk in explore, and
    stylize has no such option; the shared options reach only the manifest's job, per-job ones their job."""
    m = _manifest(tmp_path, "job: object\noptions: {fit_steps: 300}\ncases:\n"
                            "  - {name: cup, image: cup.png}\n"
                            "  - {name: walk, job: explore, image: room.png}\n"
                            "  - {name: sty, job: stylize, mesh: t.obj, style: s.png}\n")
    cup, walk, sty = read_cases(m, tmp_path / "runs")
    assert cup.options["fit_steps"] == 300 and "fit_steps" not in walk.options and "fit_steps" not in sty.options
    m = _manifest(tmp_path, "job: object\noptions:\n  object: {fit_steps: 300}\n  explore: {fit_steps: 2, steps: 3}\n"
                            "cases:\n  - {name: cup, image: cup.png}\n  - {name: walk, job: explore, image: room.png}\n"
                            "  - {name: walk2, job: explore, image: room.png, fit_steps: 5}\n")
    cup, walk, walk2 = read_cases(m, tmp_path / "runs")
    assert cup.options == {"fit_steps": 300, "image": "cup.png"}
    assert walk.options == {"fit_steps": 2, "steps": 3, "image": "room.png"}
    assert walk2.options["fit_steps"] == 5  # a case's own option wins
    # no manifest job: every case whose job has the option
    m = _manifest(tmp_path, "options: {fit_steps: 30}\ncases:\n  - {name: cup, job: object, image: cup.png}\n"
                            "  - {name: sty, job: stylize, mesh: t.obj, style: s.png}\n")
    cup, sty = read_cases(m, tmp_path / "runs")
    assert cup.options["fit_steps"] == 30 and "fit_steps" not in sty.options


@pytest.mark.parametrize("text, words", [
    ("job: object\noptions: {mesh: t.obj}\ncases:\n  - {name: sty, job: stylize, style: s.png}\n",
     "options.mesh is not an option of `vdm3d object`, the manifest's job"),
    ("options: {frobnicate: 1}\ncases:\n  - {name: cup, job: object, image: cup.png}\n",
     "options.frobnicate is an option of none of the cases' jobs \\(object\\)"),
    ("options:\n  explore: {steps: 3}\ncases:\n  - {name: cup, job: object, image: cup.png}\n",
     "options.explore is for the job explore, which no case runs"),
])
def test_a_shared_option_that_reaches_no_case_is_refused(tmp_path, text, words):
    with pytest.raises(InputError, match=words) as e:
        read_cases(_manifest(tmp_path, text), tmp_path / "runs")
    assert str(tmp_path / "m.yaml") in str(e.value)


def test_an_unknown_case_option_is_one_sentence_before_any_case_runs(tmp_path):
    from vdm3d.errors import ConfigError

    m = _manifest(tmp_path, "job: object\ncases:\n  - {name: ok, image: a.png}\n  - {name: typo, image: spot.png, fit_stpes: 5}\n")
    with pytest.raises(ConfigError) as e:
        read_cases(m, tmp_path / "runs")
    assert str(e.value) == (f"{m}: case 2 (typo): 'fit_stpes' is not an option of `vdm3d object` "
                            "(did you mean 'fit_steps'?); fix the key in the manifest.")
    m = _manifest(tmp_path, "job: fit\ncases:\n  - {name: f, data: scene, split: {num_train_viewz: 3}}\n")
    with pytest.raises(ConfigError, match="'split.num_train_viewz' is not an option of `vdm3d fit` "
                                          "\\(did you mean 'num_train_views'\\?"):
        read_cases(m, tmp_path / "runs")


def test_case_options_take_the_flag_spellings_and_become_the_flags_tyro_parses(tmp_path):
    import tyro

    from vdm3d.jobs.fit import FitJobConfig

    m = _manifest(tmp_path, "job: fit\noptions: {steps: 7}\ncases:\n"
                            "  - {name: f, data: scene, split: {num_train_views: 3}, fit: {sh_degree: 0}, downscale: 4}\n")
    (case,) = read_cases(m, tmp_path / "runs")
    config = tyro.cli(FitJobConfig, args=case.command())
    assert (config.data.name, config.fit.steps, config.split.num_train_views, config.fit.sh_degree, config.downscale) \
        == ("scene", 7, 3, 0, 4)
    assert config.out == tmp_path / "runs" / "f"


def test_the_jobs_a_case_may_name_are_commands():
    """batch.cases.JOBS (which keys per-job shared options) names commands of the CLI; batch, rerun, models and
    doctor run no case of their own."""
    from vdm3d.batch.cases import JOBS
    from vdm3d.cli.main import GROUPS

    assert set(JOBS) == set(GROUPS) - {"batch", "rerun", "models", "doctor"}


def test_a_case_out_under_home_is_where_its_job_writes(tmp_path, monkeypatch):
    """The job expands `out: ~/x`; the batch looked for the finished case in a folder named `~`, so it never
    counted it as done."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "m.yaml").write_text("job: object\ncases:\n  - {name: a, image: a.png, out: ~/runs/a}\n")
    [case] = read_cases(tmp_path / "m.yaml", tmp_path / "runs")
    assert case.out == tmp_path / "home" / "runs" / "a"


def test_a_cases_recorded_command_names_the_threads_it_ran_with(tmp_path):
    """A case runs at ``--cpus-per-case`` threads; its manifest recorded the command without them, and that
    command typed by hand ran at every core (an explore video at PSNR 52 dB from the case's, QA s34 finding 4).
    The recorded command now carries the global ``--threads N``, and a finished case is not "changed" by it."""
    from vdm3d.cli.main import _pop_threads

    case = Case("orbit", "trajectory", {"frames": 3, "width": 16, "height": 16}, tmp_path / "orbit",
                argv=("make", "orbit"))
    [result] = runner.run_cases([case], tmp_path / "logs", use_ray=False, cpus_per_case=1)
    assert result.status == "ok", result.error
    m = json.loads((tmp_path / "orbit" / "manifest.json").read_text())
    assert m["command"][1:] == ["--threads", "1", "trajectory", *case.command()] and m["threads"] == 1
    assert _pop_threads(m["command"][1:]) == ([case.job, *case.command()], 1)  # what `vdm3d` itself reads
    assert "$ vdm3d --threads 1 trajectory make orbit" in (tmp_path / "logs" / "orbit.log").read_text()
    assert not runner.options_changed(case)
    m["command"] = [m["command"][0], "--threads=4", *m["command"][3:]]  # another --cpus-per-case: same options
    (tmp_path / "orbit" / "manifest.json").write_text(json.dumps(m))
    assert not runner.options_changed(case)


def test_a_case_given_gpus_runs_its_hub_backbones_there(tmp_path, monkeypatch, capsys):
    """`--gpus-per-case G`: each case asks Ray for G GPUs (Ray then sets its CUDA_VISIBLE_DEVICES) and a job
    with hub backbones gets --device cuda, unless the case names a device; a machine without CUDA is refused
    before anything is written (a local Ray would have waited for GPUs forever)."""
    import sys
    import types

    from vdm3d.cli.main import main

    obj = Case("a", "object", {"image": "a.png"}, tmp_path / "a")
    assert command_for(obj, "todo", device="cuda")[-2:] == ["--device", "cuda"]
    assert "--device" not in command_for(obj, "todo")
    assert command_for(Case("b", "object", {"image": "a.png", "device": "cuda:1"}, tmp_path / "b"), "todo",
                       device="cuda").count("--device") == 1
    assert "--device" not in command_for(Case("c", "fit", {"data": "d"}, tmp_path / "c"), "todo", device="cuda")
    # the commands given --device are those that take it: their --help says so, the others' does not
    from vdm3d.batch.cases import JOBS

    def help_of(job):
        capsys.readouterr()
        assert main([job, "--help"]) == 0, job
        return capsys.readouterr().out

    assert {job for job in JOBS if "--device cuda" in help_of(job)} == set(runner.DEVICE_JOBS)
    asked = []
    fake = types.SimpleNamespace(init=lambda **k: None, shutdown=lambda: None,
                                 remote=lambda **k: asked.append(k) or (lambda f: f))
    monkeypatch.setitem(sys.modules, "ray", fake)
    runner._run_on_ray([], tmp_path, None, 2, 1, finish=None, gpus_per_case=0.5)
    assert asked[-1]["num_gpus"] == 0.5 and asked[-1]["num_cpus"] == 1
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"name": "a", "job": "object", "image": "a.png"}) + "\n")
    assert main(["batch", str(manifest), "--gpus-per-case", "1", "--out", str(tmp_path / "runs")]) == 2
    assert capsys.readouterr().err == ("error: --gpus-per-case 1: this machine has no CUDA device for the cases "
                                       "(torch.cuda.is_available() is False); pass --gpus-per-case 0, or the "
                                       "--address of a Ray cluster with GPUs.\n")
    assert not (tmp_path / "runs").exists()
