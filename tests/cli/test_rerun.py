"""`vdm3d rerun RUN/manifest.json` repeats a run from its recorded config, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vdm3d.cli.main import main
from vdm3d.cli.rerun import differences, job_argv

SPOT = Path(__file__).resolve().parents[2] / "src" / "vdm3d" / "assets" / "spot.png"
TINY = "fit_steps: 10\ncarve_resolution: 24\nnum_points: 200\nmesh_resolution: 24\nmesh_views: 6\n" \
       "turntable_frames: 2\nsteps: 2\nframes: 6\n"


@pytest.mark.slow
def test_rerun_reproduces_an_object_run_exactly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spot.png").write_bytes(SPOT.read_bytes())
    (tmp_path / "tiny.yaml").write_text(TINY + "image: spot.png\n")  # a relative path, from the run's cwd
    argv = ["object", "--config", "tiny.yaml", "--out", "runs/a", "--seed", "3"]
    monkeypatch.setattr("sys.argv", ["vdm3d", *argv])  # what the manifest records as the command
    assert main(argv) == 0
    first = json.loads((tmp_path / "runs/a/manifest.json").read_text())
    assert first["config"]["seed"] == 3 and first["config"]["fit_steps"] == 10 and first["cwd"] == str(tmp_path)
    from vdm3d.io.runs import file_sha256
    from vdm3d.models.tiny import WEIGHTS_DIR

    shipped = WEIGHTS_DIR / "orbit.safetensors"  # the shipped weights it ran with (a retrain changes them)
    assert first["inputs"]["vdm3d:models/tiny/weights/orbit.safetensors"] == file_sha256(shipped)  # wherever installed
    from vdm3d.threads import current_threads

    assert first["threads"] == current_threads() >= 1

    monkeypatch.chdir("/")  # the rerun starts elsewhere: the manifest's cwd anchors the relative paths
    capsys.readouterr()
    assert main(["rerun", str(tmp_path / "runs/a/manifest.json")]) == 0
    assert "config: identical to the original" in capsys.readouterr().out
    again = tmp_path / "runs/a-rerun"
    assert (again / "splats.ply").read_bytes() == (tmp_path / "runs/a/splats.ply").read_bytes()
    assert (again / "cameras/transforms.json").read_text() == (tmp_path / "runs/a/cameras/transforms.json").read_text()

    # the rasterizer that ran is recorded (numba's images differ from the C++ kernels' in the last bits),
    # and a rerun that ran another one says so
    from vdm3d.splat.backends import cpp

    ran = "cpp" if cpp.available()[0] else "numba"
    assert first["backends"] == {"rasterizer": [ran]}
    first["backends"] = {"rasterizer": ["numba" if ran == "cpp" else "cpp"]}
    (tmp_path / "runs/a/manifest.json").write_text(json.dumps(first))
    assert main(["rerun", str(tmp_path / "runs/a/manifest.json"), "--out", str(tmp_path / "runs/b")]) == 0
    assert "backends differ from the original run (numbers may differ): rasterizer: " in capsys.readouterr().out


def test_job_argv_uses_the_recorded_config_or_replays_arguments(tmp_path):
    m = tmp_path / "manifest.json"
    obj = {"command": ["/x/bin/vdm3d", "object", "--image", "a.png", "--steps", "3"], "config": {}}
    assert job_argv(m, obj, tmp_path / "new", False, ["--fit-steps", "9"]) == [
        "object", "--config", str(m), "--out", str(tmp_path / "new"), "--fit-steps", "9"]
    data = {"command": ["vdm3d", "data", "make", "objects", "--out", "old", "--count", "2", "--resume"]}
    assert job_argv(m, data, tmp_path / "new", True, []) == [
        "data", "make", "objects", "--count", "2", "--out", str(tmp_path / "new"), "--overwrite"]


def test_a_manifest_naming_a_command_that_writes_no_run_is_refused(tmp_path, capsys):
    """A crafted manifest whose command was `vdm3d rerun ...` recursed until a RecursionError traceback, and one
    naming `vdm3d models convert ... --trust-pickle` was replayed (trust the rerun's command line never gave;
    only tyro's refusal of the appended --out stopped it). Only commands that write run folders are repeated."""
    for command in (["vdm3d", "rerun", "x"], ["vdm3d", "models", "convert", "m.ckpt", "w.safetensors", "--trust-pickle"],
                    ["vdm3d", "view", "runs/a"]):
        m = tmp_path / "manifest.json"
        m.write_text(json.dumps({"format": "vdm3d.run", "version": 1, "command": command, "cwd": str(tmp_path),
                                 "config": {}}))
        assert main(["rerun", str(m), "--out", str(tmp_path / "new")]) == 2
        assert capsys.readouterr().err.strip().endswith(
            f"{m}: command names `vdm3d {command[1]}`, which writes no run folder to repeat; pass the manifest of "
            "a run made by a vdm3d job, eval, train, data or trajectory command.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_differences_list_changed_fields_only():
    old = {"image": "cup.png", "out": "runs/a", "overwrite": False, "fit": {"steps": 3, "lr": 1.0}}
    new = {"image": "/data/cup.png", "out": "runs/b", "overwrite": True, "fit": {"steps": 4, "lr": 1.0}}
    assert differences(old, new, old_cwd="/data") == ["fit.steps: 3 -> 4"]
    assert differences(old, new) == ["fit.steps: 3 -> 4", "image: 'cup.png' -> '/data/cup.png'"]


def test_rerun_names_hub_weights_that_changed(tmp_path):
    """The manifests' input hashes include each hub model's fingerprint record; rerun names a changed one
    as that model's weights, and weights loaded from another place as such."""
    from vdm3d.cli.rerun import input_differences

    record = tmp_path / "fingerprints" / "sv3d-p-0123456789ab.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"model": "sv3d-p", "source": "/models/sv3d-p", "files": {}}))
    old = {"cwd": str(tmp_path), "inputs": {"a.png": "1", str(record): "x"}}
    assert input_differences(old, old) == []
    new = {"cwd": "/", "inputs": {str(tmp_path / "a.png"): "1", str(record): "y"}}  # the same a.png, from elsewhere
    assert input_differences(old, new) == ["sv3d-p's weights in /models/sv3d-p changed"]
    moved = record.with_name("sv3d-p-ba9876543210.json")
    moved.write_text(json.dumps({"model": "sv3d-p", "source": "Org/sv3d@abc", "files": {}}))
    new = {"cwd": str(tmp_path), "inputs": {"a.png": "1", str(moved): "z"}}
    assert input_differences(old, new) == [
        "sv3d-p's weights were loaded from Org/sv3d@abc, not from where the original run loaded them"]
    # a manifest that names its models' folders (its "models" field) lets the sentence say where they were
    old["models"] = {"sv3d-p": {"source": "/models/sv3d-p", "fingerprint": "x"}}
    assert input_differences(old, new) == [
        "sv3d-p's weights were loaded from Org/sv3d@abc, not from /models/sv3d-p, where the original run loaded them"]


def test_a_rerun_uses_the_original_runs_thread_count_unless_asked(monkeypatch, capsys):
    """A run with --threads 2 reran with the machine's default and printed "identical" over other bytes;
    the manifest records the count and a rerun applies it, unless --threads (or OMP_NUM_THREADS) asks."""
    import vdm3d.threads as threads
    from vdm3d.cli.rerun import apply_threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = threads.current_threads()
    try:
        threads.set_threads(None)  # the default, not asked for
        default = threads.current_threads()
        apply_threads(default + 1)
        assert threads.current_threads() == default + 1
        assert f"threads: {default + 1}, as the original run" in capsys.readouterr().err  # a note: stderr
        threads.set_threads(1)  # `vdm3d --threads 1 rerun ...`
        apply_threads(3)
        assert threads.current_threads() == 1
        assert "threads: 1 as asked; the original run used 3" in capsys.readouterr().err
    finally:
        threads.set_threads(before or 1)


def test_a_run_made_from_python_is_rerun_by_its_config_type(shared_data, tmp_path, monkeypatch, capsys):
    """A script's run_fit(...) records the script as its command; rerun finds the job from the config type."""
    from vdm3d.data.readers import Split
    from vdm3d.jobs.fit import FitJobConfig, run_fit
    from vdm3d.recon.trainer import FitConfig

    monkeypatch.setattr("sys.argv", ["make_runs.py"])
    config = FitJobConfig(data=shared_data / "llff_fern", out=tmp_path / "a", downscale=16,
                          split=Split(test_every=8), fit=FitConfig(steps=3, checkpoint_every=100))
    run_fit(config)
    manifest = tmp_path / "a" / "manifest.json"
    assert json.loads(manifest.read_text())["command"] == ["make_runs.py"]
    assert job_argv(manifest, json.loads(manifest.read_text()), tmp_path / "b", False, []) == [
        "fit", "--config", str(manifest), "--out", str(tmp_path / "b")]
    capsys.readouterr()
    assert main(["rerun", str(manifest), "--out", str(tmp_path / "b")]) == 0
    assert "config: identical to the original" in capsys.readouterr().out
    assert (tmp_path / "b" / "splats.ply").read_bytes() == (tmp_path / "a" / "splats.ply").read_bytes()
    # a manifest of something else made from Python still gets the sentence
    data = json.loads(manifest.read_text())
    data["config_type"] = "SomethingConfig"
    manifest.write_text(json.dumps(data))
    assert main(["rerun", str(manifest)]) == 2
    assert "does not name a vdm3d command" in capsys.readouterr().err


def _manifest(**fields) -> dict:
    return {"format": "vdm3d.run", "command": ["/x/bin/vdm3d", "object", "--steps", "2"], "config": {"steps": 2},
            "config_type": "ObjectConfig", "cwd": "/", "threads": 1, "inputs": {}, **fields}


def test_a_rerun_of_a_run_resumed_at_another_thread_count_does_not_claim_to_repeat_it(tmp_path, monkeypatch,
                                                                                       capsys):
    """A run interrupted at 2 threads and resumed at 1 matches neither count's run; rerun said "config:
    identical to the original" over a video at PSNR 52 dB from the original (QA s34 finding 2)."""
    import vdm3d.cli.main as cli_main
    import vdm3d.threads as threads
    from vdm3d.cli import rerun

    legs = [{"threads": 2, "started": "2026-12-01T10:00:00", "seconds": 1.0},
            {"threads": 1, "started": "2026-12-01T10:05:00", "seconds": 0.5}]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(_manifest(legs=legs)))

    def job(argv):  # the job as the rerun starts it: writes its run folder
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir()
        (out / "manifest.json").write_text(json.dumps(_manifest(legs=[{"threads": 1}])))
        return 0

    monkeypatch.setattr(cli_main, "main", job)
    before = threads.current_threads()
    try:
        threads.set_threads(1)
        assert rerun.main([str(tmp_path / "run")]) == 0
    finally:
        threads.set_threads(before or 1)
    out, err = capsys.readouterr()
    assert ("threads: the original run was resumed at another thread count (2 threads, then 1), which a rerun "
            "cannot repeat") in err  # a note: stderr, while the comparison below is the rerun's result
    assert "config: identical to the original, but the original ran in legs at 2 threads, then 1" in out
    assert "config: identical to the original\n" not in out
    # legs at one count (or of unknown count) are one run, as far as threads go
    same = _manifest(legs=[{"threads": 1}, {"threads": None}, {"threads": 1}])
    assert rerun.comparison(same, _manifest(legs=[{"threads": 1}])) == ["config: identical to the original"]


def test_a_rerun_names_another_code_revision_or_cpu_and_spares_older_manifests():
    """Manifests now record the code revision, the CPU, more libraries and the GL renderer; a rerun names those
    that differ, and an older manifest, which recorded none of them, is not told that they all differ."""
    from vdm3d.cli.rerun import comparison

    new = _manifest(legs=[{"threads": 1}], code="b" * 40, cpu={"model": "Zen 4", "flags": "1234abcd"},
                    packages={"vdm3d": "0.1.0", "numba": "0.68.1"}, backends={"gl": ["llvmpipe"]})
    old = _manifest(packages={"vdm3d": "0.1.0"}, backends={})  # before legs, code, cpu, numba, gl were recorded
    assert comparison(old, new) == ["config: identical to the original"]
    recent = {**new, "code": "a" * 40 + "-dirty", "cpu": {"model": "Xeon", "flags": "9999ffff"},
              "packages": {"vdm3d": "0.1.0"}, "backends": {}}
    assert comparison(recent, new) == [
        "config: identical to the original",
        "packages differ from the original run (numbers may differ): numba: '<absent>' -> '0.68.1'",
        f"code differs from the original run (numbers may differ): {'a' * 40}-dirty -> {'b' * 40}",
        "CPU differs from the original run (the C++ rasterizer is built for each CPU; numbers may differ): "
        "Xeon -> Zen 4",
        "backends differ from the original run (numbers may differ): gl: '<absent>' -> ['llvmpipe']"]


def test_a_rerun_runs_the_hub_backbones_where_the_original_did_unless_told():
    """A GPU run's rerun ran its hub backbones on the CPU (hours for a full-size model): the recorded --device
    goes with the rerun, and a --device given to rerun wins."""
    from vdm3d.cli.rerun import recorded_device

    gpu = {"command": ["/bin/vdm3d", "object", "--image", "a.png", "--device", "cuda:1", "--out", "runs/a"]}
    assert recorded_device(gpu, []) == ["--device", "cuda:1"]
    assert recorded_device(gpu, ["--device", "cpu"]) == []
    assert recorded_device({"command": ["/bin/vdm3d", "object", "--device=auto"]}, []) == ["--device", "auto"]
    assert recorded_device({"command": ["/bin/vdm3d", "object", "--image", "a.png"]}, []) == []
