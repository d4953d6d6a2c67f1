"""`vdm3d trajectory ...` through the real entry point: outputs, round trips, and bad input -> status 2."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.cameras.io import read_transforms_json
from vdm3d.cameras.trajectory_file import load_trajectory
from vdm3d.cli.main import main


def run(*args):
    return main(["trajectory", *map(str, args)])


@pytest.mark.slow
def test_demo_commands(tmp_path, capsys):
    out = tmp_path / "runs" / "demo" / "orbit.json"
    assert run("make", "orbit", "--frames", 36, "--radius", 2.5, "--elevation-deg", 20, "--out", out, "--overwrite") == 0
    t = load_trajectory(out, torch.float64)
    assert len(t) == 36 and t.provenance["generator"] == "orbit"
    torch.testing.assert_close(t.cameras.centers.norm(dim=-1), torch.full((36,), 2.5, dtype=torch.float64), atol=1e-6, rtol=0)
    png = tmp_path / "runs" / "demo" / "orbit_preview.png"
    assert run("preview", out, "--out", png, "--overwrite") == 0
    from vdm3d.io.images import read_image

    img = read_image(png)
    assert img.shape[0] > 300 and img.shape[1] > 600
    assert float((img < 0.9).any(-1).float().mean()) > 0.02  # something was drawn
    capsys.readouterr()
    assert run("info", out, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["frames"] == 36 and info["fps"] == 24.0


@pytest.mark.parametrize("args, frames", [
    (["sv3d"], 21), (["sv3d", "--dynamic", "--seed", "2"], 21), (["v3d"], 18),
    (["move", "--presets", "dolly-in", "pan-left", "--frames", "9"], 9),
])
def test_make_kinds(tmp_path, args, frames):
    out = tmp_path / "t.json"
    assert run("make", *args, "--out", out) == 0
    assert len(load_trajectory(out)) == frames


def test_make_keyframes_and_extend_from_files(tmp_path):
    run("make", "orbit", "--frames", 4, "--out", tmp_path / "k.json")
    assert run("make", "keyframes", "--keyframes", tmp_path / "k.json", "--frames", 30, "--closed",
               "--out", tmp_path / "smooth.json") == 0
    assert len(load_trajectory(tmp_path / "smooth.json")) == 30
    assert run("make", "extend", "--input", tmp_path / "smooth.json", "--extra-frames", 10, "--mode", "pingpong",
               "--out", tmp_path / "long.json") == 0
    assert len(load_trajectory(tmp_path / "long.json")) == 40


def test_make_orbit_target_and_move_from_file(tmp_path):
    assert run("make", "orbit", "--frames", 8, "--target", 1, 2, 3, "--out", tmp_path / "o.json") == 0
    o = load_trajectory(tmp_path / "o.json", torch.float64)
    uv, _ = o.cameras.project(torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64).expand(8, 1, 3))
    torch.testing.assert_close(uv[:, 0], torch.full((8, 2), 256.0, dtype=torch.float64), atol=1e-3, rtol=0)
    assert run("make", "move", "--start", tmp_path / "o.json", "--start-index", 2, "--presets", "dolly-in",
               "--speed", 10, "--frames", 5, "--out", tmp_path / "m.json") == 0
    m = load_trajectory(tmp_path / "m.json", torch.float64)
    torch.testing.assert_close(m.cameras.c2w[0], o.cameras.c2w[2], atol=1e-6, rtol=0)
    step = (m.cameras.centers[-1] - m.cameras.centers[0]) @ o.cameras.forward[2]
    assert float(step) == pytest.approx(4 * 0.08, rel=1e-5)  # four steps of 10 x 0.008 straight ahead
    assert run("make", "move", "--start", tmp_path / "o.json", "--start-index", 9, "--out", tmp_path / "x.json") == 2


def test_an_orbit_around_a_far_target_keeps_every_camera_where_it_is(tmp_path):
    """QA F18: a georeferenced target (5e6 from the origin) put the file's centres on float32's 0.5-unit grid there
    (two frames at one position); the file is written from float64 cameras."""
    target = (500000.0, 5000000.0, 100.0)
    assert run("make", "orbit", "--frames", 8, "--radius", 2.5, "--target", *target, "--out", tmp_path / "o.json") == 0
    o = load_trajectory(tmp_path / "o.json", torch.float64)
    d = o.cameras.centers - torch.tensor(target, dtype=torch.float64)
    np.testing.assert_allclose(d.norm(dim=-1).numpy(), 2.5, atol=1e-6)  # on the circle, to the micrometre


def test_make_spiral_from_llff(shared_data, tmp_path):
    assert run("make", "spiral", "--cameras", shared_data / "llff_fern" / "poses_bounds.npy", "--width", 504,
               "--height", 378, "--frames", 30, "--out", tmp_path / "s.json") == 0
    assert len(load_trajectory(tmp_path / "s.json")) == 30


def test_a_spiral_without_bounds_names_the_file_and_the_flag(tmp_path, capsys):
    """A camera file without LLFF's near/far bounds: one sentence naming it and --focus-depth (it said
    "llff_spiral: pass ... focus_depth", internal names); with --focus-depth the spiral is made."""
    run("make", "orbit", "--frames", 8, "--out", tmp_path / "o.json")
    run("make", "move", "--start", tmp_path / "o.json", "--presets", "truck-right", "--frames", 6,
        "--out", tmp_path / "m.json")  # forward-facing cameras, as a spiral wants
    capsys.readouterr()
    assert run("make", "spiral", "--cameras", tmp_path / "m.json", "--out", tmp_path / "s.json") == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {tmp_path / 'm.json'}: has no near/far bounds (only LLFF poses_bounds.npy does), so the "
                   "spiral's focus is unknown; pass --focus-depth D (the distance the cameras look at).")
    assert run("make", "spiral", "--cameras", tmp_path / "m.json", "--focus-depth", 2, "--frames", 12,
               "--out", tmp_path / "s.json") == 0
    assert len(load_trajectory(tmp_path / "s.json")) == 12


def test_re10k_output_says_how_to_read_its_size_back(tmp_path, capsys):
    """RE10K stores intrinsics as fractions of an image size it does not keep: converting a 512x512 path says
    so and gives the command that reads it back square; that command gives the same intrinsics."""
    run("make", "orbit", "--frames", 6, "--out", tmp_path / "o.json")
    capsys.readouterr()
    assert run("convert", tmp_path / "o.json", "--out", tmp_path / "o.txt") == 0
    assert f"convert it back with `vdm3d trajectory convert {tmp_path / 'o.txt'} --width 512 --height 512" \
        in capsys.readouterr().err
    assert run("convert", tmp_path / "o.txt", "--width", 512, "--height", 512, "--out", tmp_path / "b.json") == 0
    a, b = load_trajectory(tmp_path / "o.json"), load_trajectory(tmp_path / "b.json")
    torch.testing.assert_close(b.cameras.Ks, a.cameras.Ks, atol=1e-3, rtol=0)


@pytest.mark.parametrize("target", ["o.txt", "t.json"])
def test_convert_notes_go_to_stderr_so_stdout_in_a_file_holds_the_result_alone(tmp_path, target):
    """`vdm3d trajectory convert ... > log`: the notes (RE10K stores no image size; image names that name no
    files) went to stdout, into the file with the result line; they are notes, so stderr (docs/errors.md,
    *Streams and exit status*)."""
    import subprocess
    import sys

    run("make", "orbit", "--frames", 6, "--out", tmp_path / "o.json")
    src = Path(__file__).resolve().parents[2] / "src"
    with open(tmp_path / "log", "w") as log:
        done = subprocess.run([sys.executable, "-m", "vdm3d", "trajectory", "convert", str(tmp_path / "o.json"),
                               "--out", str(tmp_path / target)], stdout=log, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(src)}, timeout=300)
    assert done.returncode == 0
    assert (tmp_path / "log").read_text() == f"wrote {tmp_path / target}: 6 cameras\n"
    assert done.stderr.startswith("note: ")


def test_convert_re10k_round_trip_through_cli(shared_data, tmp_path):
    for f in sorted((shared_data / "trajectories_re10k").glob("*.txt")):
        tj, back = tmp_path / f"{f.stem}_transforms.json", tmp_path / f"{f.stem}.txt"
        assert run("convert", f, "--out", tj) == 0
        cams, names, extras = read_transforms_json(tj)
        assert len(cams) == 16 and extras["top"]["re10k_url"].startswith("https://")
        assert run("convert", tj, "--out", back) == 0
        a = np.loadtxt(f, skiprows=1)
        b = np.loadtxt(back, skiprows=1)
        assert np.abs(a - b).max() < 1e-9
        assert back.read_text().splitlines()[0] == f.read_text().splitlines()[0]


def test_convert_keeps_the_colmap_lens_beside_llff_poses(shared_data, tmp_path, capsys):
    """fern's SIMPLE_RADIAL lens lives in sparse/0 beside poses_bounds.npy; the scene readers undistort with
    it, so convert must write it (transforms.json) or refuse to drop it (formats without distortion)."""
    from vdm3d.cameras.io import read_colmap

    fern = shared_data / "llff_fern"
    cam = read_colmap(fern / "sparse" / "0").cameras[1]
    assert cam.model == "SIMPLE_RADIAL"  # params f, cx, cy, k
    tj = tmp_path / "fern_transforms.json"
    assert run("convert", fern / "poses_bounds.npy", "--out", tj) == 0
    data = json.loads(tj.read_text())
    assert data["camera_model"] == "OPENCV" and data["k1"] == float(cam.params[3]) != 0
    assert data["k2"] == data["p1"] == data["p2"] == 0
    _, _, extras = read_transforms_json(tj)
    assert extras["distortion"]["k1"] == float(cam.params[3])  # and it reads back
    capsys.readouterr()
    for out in ("fern.txt", "fern.json"):
        assert run("convert", fern / "poses_bounds.npy", "--out", tmp_path / out) == 2
        err = capsys.readouterr().err
        assert "k1=0.0197" in err and "--distortion drop" in err and not (tmp_path / out).exists()
    assert run("convert", fern / "poses_bounds.npy", "--out", tmp_path / "fern.txt", "--distortion", "drop") == 0
    # poses without their COLMAP model carry no lens
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "poses_bounds.npy").write_bytes((fern / "poses_bounds.npy").read_bytes())
    assert run("convert", tmp_path / "bare" / "poses_bounds.npy", "--out", tmp_path / "bare.txt") == 0


def test_convert_keeps_a_colmap_models_lenses_in_transforms_json(tmp_path, capsys):
    """A COLMAP model with distortion was refused even for transforms.json, which stores it: now each
    image's lens is written (top level when shared, per frame when not), read back equal by pycolmap's
    parameters; other formats still refuse to drop it unless --distortion drop."""
    import pycolmap

    from vdm3d.cameras.io import colmap_from_cameras, write_colmap
    from vdm3d.cameras.trajectory import orbit

    cams = orbit(3, radius=3.0, width=80, height=60).cameras.to(torch.float64)
    model = colmap_from_cameras(cams, ["a.png", "b.png", "c.png"])
    lenses = {1: ("SIMPLE_RADIAL", [70.0, 40.0, 30.0, 0.02]), 2: ("OPENCV", [70.0, 71.0, 40.0, 30.0, -0.05, 0.01, 1e-3, -2e-3])}
    for cid, (name, params) in lenses.items():
        model.cameras[cid] = type(model.cameras[1])(cid, name, 80, 60, np.array(params))
    for im in model.images.values():
        im.camera_id = 2 if im.name == "b.png" else 1
    write_colmap(model, tmp_path / "sparse", binary=True)
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse"))
    truth = {im.name: rec.cameras[im.camera_id].params for im in rec.images.values()}

    assert run("convert", tmp_path / "sparse", "--out", tmp_path / "t.json", "--to", "transforms") == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["camera_model"] == "OPENCV" and "k1" not in data  # two lenses: per frame
    for frame in data["frames"]:
        p = truth[Path(frame["file_path"]).name]
        want = [p[3], 0, 0, 0] if len(p) == 4 else list(p[4:8])
        assert [frame[k] for k in ("k1", "k2", "p1", "p2")] == pytest.approx(want, abs=1e-12)
    capsys.readouterr()
    assert run("convert", tmp_path / "sparse", "--out", tmp_path / "v.json") == 2
    err = capsys.readouterr().err
    assert "k1=0.02" in err and "--distortion drop" in err and not (tmp_path / "v.json").exists()
    assert run("convert", tmp_path / "sparse", "--out", tmp_path / "v.json", "--distortion", "drop") == 0


def test_convert_to_colmap_folder_and_back(tmp_path):
    run("make", "orbit", "--frames", 5, "--out", tmp_path / "o.json")
    assert run("convert", tmp_path / "o.json", "--out", tmp_path / "sparse") == 0
    assert (tmp_path / "sparse" / "images.bin").is_file()
    assert run("convert", tmp_path / "sparse", "--out", tmp_path / "back.json") == 0
    a, b = load_trajectory(tmp_path / "o.json", torch.float64), load_trajectory(tmp_path / "back.json", torch.float64)
    torch.testing.assert_close(a.cameras.c2w, b.cameras.c2w, atol=1e-6, rtol=0)


def test_validate_against_scene(tmp_path, capsys):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    mesh.export(tmp_path / "ball.obj")
    run("make", "orbit", "--frames", 6, "--radius", 3, "--elevation-deg", 0, "--out", tmp_path / "far.json")
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj", "--report", tmp_path / "r.json") == 0
    assert "ok: no problems" in capsys.readouterr().out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert len(rep["frames"]) == 6
    run("make", "orbit", "--frames", 6, "--radius", 0.5, "--out", tmp_path / "in.json")
    assert run("validate", tmp_path / "in.json", "--scene", tmp_path / "ball.obj") == 1
    assert "inside geometry" in capsys.readouterr().out


def test_a_large_scene_file_is_announced_before_it_is_read(tmp_path, capsys, monkeypatch):
    """validate and preview said nothing while reading a 66 MB OBJ (35 s); a large file now gets a line
    before (name, size) and after (faces, time) on stderr, a small one none."""
    import trimesh

    from vdm3d.io import progress

    mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    mesh.export(tmp_path / "ball.obj")
    run("make", "orbit", "--frames", 4, "--radius", 3, "--elevation-deg", 0, "--out", tmp_path / "far.json")
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj") == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "LARGE_FILE_BYTES", 10)
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj") == 0
    size = (tmp_path / "ball.obj").stat().st_size
    first, second = capsys.readouterr().err.splitlines()[:2]
    assert first == f"scene: reading ball.obj ({size / 1e6:.0f} MB)"
    assert second.startswith(f"scene: {len(mesh.faces):,} faces read in ")


def valid_file(tmp_path):
    p = tmp_path / "t.json"
    run("make", "orbit", "--frames", 3, "--out", p)
    return p, json.loads(p.read_text())


def corrupt(kind, tmp_path):
    p, data = valid_file(tmp_path)
    if kind == "malformed":
        p.write_text(p.read_text()[:-20])
    elif kind == "nan":
        p.write_text(p.read_text().replace(str(data["frames"][1]["c2w"][0][3]), "NaN", 1))
    elif kind == "rotation":
        data["frames"][2]["c2w"][0][0] = 2.0
        p.write_text(json.dumps(data))
    elif kind == "shape":
        data["frames"][1]["K"] = [[1, 0], [0, 1]]
        p.write_text(json.dumps(data))
    elif kind == "missing":
        p.unlink()
    elif kind == "focal":
        data["frames"][0]["K"][0][0] = -3.0
        p.write_text(json.dumps(data))
    elif kind == "format":
        data["format"] = "something.else"
        p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize("kind, expect", [
    ("malformed", "not valid JSON"), ("nan", "frame 1 field c2w has a non-finite"),
    ("rotation", "frame 2 field rotation is not orthonormal"), ("shape", "frame 1 field K must be a 3x3"),
    ("missing", "does not exist"), ("focal", "frame 0 field focal length must be positive"),
    ("format", "format is 'something.else'"),
])
@pytest.mark.parametrize("command", ["convert", "preview", "validate", "make-extend"])
def test_bad_input_exits_2_with_one_sentence_and_no_output(tmp_path, capsys, kind, expect, command):
    bad = corrupt(kind, tmp_path)
    capsys.readouterr()
    out_dir = tmp_path / "outdir"
    if command == "convert":
        rc = run("convert", bad, "--out", out_dir / "sparse")  # a COLMAP folder output
    elif command == "preview":
        rc = run("preview", bad, "--out", out_dir / "p.png")
    elif command == "validate":
        rc = run("validate", bad)
    else:
        rc = run("make", "extend", "--input", bad, "--out", out_dir / "x.json")
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error: ") and expect in err, err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert not out_dir.exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no partial folders or temp files


def test_existing_output_needs_overwrite(tmp_path, capsys):
    p, _ = valid_file(tmp_path)
    assert run("make", "orbit", "--out", p) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert run("make", "orbit", "--out", p, "--overwrite") == 0


def test_an_existing_report_needs_overwrite_and_is_refused_before_the_check(tmp_path, capsys, monkeypatch):
    """`validate --report r.json` replaced an existing r.json unasked (after the check, which can take minutes)."""
    import trimesh

    from vdm3d.cameras import check

    trimesh.creation.icosphere(subdivisions=1, radius=1.0).export(tmp_path / "ball.obj")
    run("make", "orbit", "--frames", 4, "--radius", 3, "--elevation-deg", 0, "--out", tmp_path / "far.json")
    report = tmp_path / "r.json"
    report.write_text("my notes")
    real = check.check_trajectory
    monkeypatch.setattr(check, "check_trajectory", lambda *a, **k: pytest.fail("the check ran"))
    capsys.readouterr()
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj", "--report", report) == 2
    assert capsys.readouterr().err == f"error: {report}: already exists; choose another --report or pass --overwrite.\n"
    assert report.read_text() == "my notes"
    (tmp_path / "folder.json").mkdir()  # a folder is not a report to replace, even with --overwrite
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj", "--report",
               tmp_path / "folder.json", "--overwrite") == 2
    assert capsys.readouterr().err == (f"error: {tmp_path / 'folder.json'}: is a folder, and --report names a file "
                                       "to write; give --report a file name.\n")
    monkeypatch.setattr(check, "check_trajectory", real)
    assert run("validate", tmp_path / "far.json", "--scene", tmp_path / "ball.obj", "--report", report,
               "--overwrite") == 0
    assert len(json.loads(report.read_text())["frames"]) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ball.obj", "far.json", "folder.json", "r.json"]


def test_an_existing_first_frame_is_refused_naming_its_own_option(tmp_path, capsys):
    """The refusal of an existing --first-frame told to choose another --out."""
    first = tmp_path / "first.png"
    first.write_bytes(b"a picture")
    assert run("make", "from-video", "--video", tmp_path / "none.mp4", "--first-frame", first,
               "--out", tmp_path / "path.json") == 2
    assert capsys.readouterr().err == (f"error: {first}: already exists; choose another --first-frame or pass "
                                       "--overwrite.\n")
    assert first.read_bytes() == b"a picture"


@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_out_dot_is_refused_the_same_way_with_or_without_overwrite(tmp_path, monkeypatch, capsys, overwrite):
    """'--out .' said "already exists; pass --overwrite", and with --overwrite it was refused for another reason."""
    monkeypatch.chdir(tmp_path)
    assert run("make", "orbit", "--frames", 4, "--out", ".", *overwrite) == 2
    err = capsys.readouterr().err
    assert err == ("error: .: names the folder it is in, not a new one, and an output is written beside its place "
                   "and moved there at the end; give a new folder inside it, such as --out run.\n")
    assert list(tmp_path.iterdir()) == []


def test_help_teaches(capsys):
    assert run("make", "orbit", "--help") == 0
    text = capsys.readouterr().out
    assert "--elevation-deg" in text and "Height angle above the horizontal plane" in text


def _with_lens(tmp_path, keys: dict) -> Path:
    """A 3-camera orbit as a transforms.json with camera_model OPENCV and the lens ``keys`` at the top level."""
    run("make", "orbit", "--frames", 3, "--width", 64, "--height", 64, "--out", tmp_path / "o_transforms.json")
    p = tmp_path / "lens_transforms.json"
    data = json.loads((tmp_path / "o_transforms.json").read_text())
    p.write_text(json.dumps({**data, "camera_model": "OPENCV", **keys}))
    return p


def test_validate_refuses_a_transforms_lens_and_its_advice_works(tmp_path, capsys):
    """QA F8/F9: `validate` said ok for a transforms.json with k1 = 0.05 that every job then ran as pinhole; it is
    refused now, and the command the sentence gives writes a pinhole copy that validates."""
    import shlex

    p = _with_lens(tmp_path, {"k1": 0.05})
    capsys.readouterr()
    assert run("validate", p) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {p}: every frame has lens distortion (k1=0.05), which vdm3d's pinhole cameras would drop; "
                   "undistort the images first (e.g. colmap image_undistorter or cv2.undistort), or, if they already "
                   f"are, write a pinhole copy with `vdm3d trajectory convert {p} --distortion drop --out path.json` "
                   "(in Python: distortion='drop').")
    argv = shlex.split(err.split("`")[1])
    assert argv[:3] == ["vdm3d", "trajectory", "convert"]
    argv[argv.index("--out") + 1] = str(tmp_path / "path.json")
    assert main(argv[1:]) == 0 and run("validate", tmp_path / "path.json") == 0
    assert "ok: " in capsys.readouterr().out
    pinhole = load_trajectory(tmp_path / "path.json", torch.float64).cameras
    want = read_transforms_json(p, torch.float64)[0]
    torch.testing.assert_close(pinhole.Ks, want.Ks, atol=0, rtol=0)
    torch.testing.assert_close(pinhole.c2w, want.c2w, atol=0, rtol=0)


def test_zero_lens_coefficients_load_and_convert(tmp_path, capsys):
    """A nerfstudio export names OPENCV with all-zero coefficients: it validates, and convert wrote nothing before
    ("distortion () cannot be stored in a vdm3d file")."""
    p = _with_lens(tmp_path, {"k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0})
    assert run("validate", p) == 0
    assert run("convert", p, "--out", tmp_path / "v.json") == 0 and len(load_trajectory(tmp_path / "v.json")) == 3


def test_commands_that_make_new_cameras_from_a_lens_file_say_they_leave_it(tmp_path, capsys):
    """keyframes, move --start and spiral make new pinhole cameras from poses: they run, and say the lens is left;
    extend writes the file's own frames on, so it refuses; info describes the lens."""
    p = _with_lens(tmp_path, {"k1": 0.05, "p1": 0.001})
    capsys.readouterr()
    assert run("make", "keyframes", "--keyframes", p, "--frames", 5, "--out", tmp_path / "k.json") == 0
    assert capsys.readouterr().err.strip() == (f"note: {p} has lens distortion (k1=0.05, p1=0.001); the new path's "
                                               "cameras are pinhole, made from its poses and focal lengths only")
    assert run("make", "extend", "--input", p, "--out", tmp_path / "e.json") == 2
    assert "every frame has lens distortion (k1=0.05, p1=0.001)" in capsys.readouterr().err
    assert run("info", p, "--json") == 0
    assert json.loads(capsys.readouterr().out)["distortion"] == "k1=0.05, p1=0.001"


def test_one_camera_keyframes_and_extend_name_the_file_and_option(tmp_path, capsys):
    """QA F14: "interpolate_keyframes: need at least 2 keyframes ..." and "extend: mode 'extrapolate' ..." named
    Python names; the sentences name the option and the file."""
    one = tmp_path / "one.json"
    run("make", "orbit", "--frames", 1, "--out", one)
    capsys.readouterr()
    assert run("make", "keyframes", "--keyframes", one, "--frames", 10, "--out", tmp_path / "k.json") == 2
    assert capsys.readouterr().err.strip() == (f"error: --keyframes {one} has 1 camera; a path through keyframes needs "
                                               "at least 2, so add another keyframe to the file.")
    for mode in ("extrapolate", "loop"):
        assert run("make", "extend", "--input", one, "--mode", mode, "--out", tmp_path / "e.json") == 2
        assert capsys.readouterr().err.strip() == (f"error: --input {one} has 1 camera, but --mode {mode} needs the "
                                                   "motion between at least 2; pass a longer path, or --mode pingpong "
                                                   "to hold this camera.")
    assert run("make", "keyframes", "--keyframes", one, "--frames", 1, "--out", tmp_path / "k.json") == 2
    assert "--frames 1 is out of range: it must be >= 2" in capsys.readouterr().err
    assert run("make", "extend", "--input", one, "--mode", "pingpong", "--extra-frames", 2,
               "--out", tmp_path / "e.json") == 0
    assert len(load_trajectory(tmp_path / "e.json")) == 3 and not (tmp_path / "k.json").exists()


def test_info_shows_the_vertical_fov_and_an_off_centre_principal_point(tmp_path, capsys):
    """QA F4: `info` on a path with fx 68.6, fy 90 and principal point (20, 40) in 64x64 showed only fov_x_deg."""
    run("make", "orbit", "--frames", 3, "--width", 64, "--height", 64, "--out", tmp_path / "o.json")
    data = json.loads((tmp_path / "o.json").read_text())
    for f in data["frames"]:
        f["K"] = [[68.6, 0, 20.0], [0, 90.0, 40.0], [0, 0, 1]]
    p = tmp_path / "nonsquare.json"
    p.write_text(json.dumps(data))
    capsys.readouterr()
    assert run("info", p, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    fov_x, fov_y = (round(float(np.degrees(2 * np.arctan(32 / f))), 3) for f in (68.6, 90.0))
    assert (fov_x, fov_y) == (50.015, 39.146)
    assert info["fov_x_deg"] == [fov_x, fov_x] and info["fov_y_deg"] == [fov_y, fov_y]
    assert info["cx"] == [20.0, 20.0] and info["cy"] == [40.0, 40.0]
    assert run("info", p) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "   fov_y_deg: [39.146, 39.146]" in lines and "          cy: [40.0, 40.0] (image centre 32)" in lines
    assert run("info", tmp_path / "o.json", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert "cx" not in info and info["fov_y_deg"] == info["fov_x_deg"]  # centred: no principal point shown


@pytest.mark.parametrize("home", [
    pytest.param("read-only", marks=pytest.mark.skipif(
        hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a chmod 555 folder")),
    "a file"])
def test_preview_with_an_unwritable_home_prints_only_its_own_line(tmp_path, home):
    """`vdm3d trajectory preview` with a HOME matplotlib cannot write (a container, a batch account) printed
    matplotlib's `mkdir -p failed ...` and `Matplotlib created a temporary cache directory ...` around its own
    line; matplotlib now gets vdm3d's cache, or a temp folder when that is under the same HOME."""
    import subprocess
    import sys

    run("make", "orbit", "--frames", 6, "--out", tmp_path / "o.json")
    folder = tmp_path / "home"
    if home == "read-only":
        folder.mkdir()
        folder.chmod(0o555)
    else:
        folder.write_text("not a folder")
    env = {k: v for k, v in os.environ.items()
           if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "VDM3D_CACHE")}
    src = Path(__file__).resolve().parents[2] / "src"
    try:
        done = subprocess.run([sys.executable, "-m", "vdm3d", "trajectory", "preview", str(tmp_path / "o.json"),
                               "--out", str(tmp_path / "o.png")], capture_output=True, text=True, timeout=300,
                              env={**env, "HOME": str(folder), "PYTHONPATH": str(src)})
    finally:
        if folder.is_dir():
            folder.chmod(0o755)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", f"wrote {tmp_path / 'o.png'}\n")
    assert (tmp_path / "o.png").stat().st_size > 0


def test_matplotlib_gets_vdm3ds_cache_only_when_its_own_folder_cannot_be_written(tmp_path, monkeypatch):
    from vdm3d.io.cache import matplotlib_config_dir

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mine"))
    matplotlib_config_dir()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "mine")  # the user's choice is kept
    monkeypatch.delenv("MPLCONFIGDIR")
    matplotlib_config_dir()
    assert "MPLCONFIGDIR" not in os.environ  # a HOME that works: matplotlib's own folder, and its matplotlibrc
    assert (tmp_path / "home" / ".config" / "matplotlib").is_dir()
    monkeypatch.setenv("HOME", str(tmp_path / "afile"))
    (tmp_path / "afile").write_text("not a folder")
    matplotlib_config_dir()
    assert os.environ["MPLCONFIGDIR"] == str(tmp_path / "cache" / "matplotlib")  # kept between runs
    assert (tmp_path / "cache" / "matplotlib").is_dir()


def test_info_and_validate_of_a_run_folder_read_its_camera_file(tmp_path, capsys):
    """QA chain: `trajectory info runs/object` said the folder held no cameras.bin (a folder was taken for COLMAP);
    a run folder now reads as its cameras/*.json and `info` names the file it read."""
    run("make", "orbit", "--frames", 4, "--width", 32, "--height", 32, "--fps", 6, "--out",
        tmp_path / "obj" / "cameras" / "orbit.json")
    capsys.readouterr()
    assert run("info", tmp_path / "obj", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["file"] == str(tmp_path / "obj" / "cameras" / "orbit.json")
    assert info["frames"] == 4 and info["fps"] == 6.0
    assert run("validate", tmp_path / "obj") == 0
    assert "has 4 valid cameras" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["validate", "preview"])
def test_a_scene_with_non_finite_points_is_refused_with_their_count(tmp_path, capsys, command):
    """--scene with NaN points said "points are empty or contain NaN/inf; clean the scene": not how many (a few
    stray points or the whole file), and for a mesh it counted the surface samples, not the file's vertices."""
    import trimesh
    from plyfile import PlyData, PlyElement

    run("make", "orbit", "--frames", 4, "--radius", 3, "--out", tmp_path / "far.json")
    points = np.random.default_rng(0).normal(size=(1000, 3))
    points[[3, 500, 999], 1] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "points.npy", points)
    cloud = np.zeros(1000, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    cloud["x"], cloud["y"], cloud["z"] = points.T
    PlyData([PlyElement.describe(cloud, "vertex")]).write(str(tmp_path / "cloud.ply"))
    mesh = trimesh.creation.icosphere(subdivisions=1, radius=1.0)
    vertices = np.array(mesh.vertices)
    vertices[5] = np.nan
    (tmp_path / "ball.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in vertices)
                                       + "".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in mesh.faces))
    expect = {"points.npy": "3 of 1,000 points have a non-finite x, y or z (NaN or inf); remove those points from "
                            "the file or export the scene again",
              "cloud.ply": "3 of 1,000 points have a non-finite x, y or z (NaN or inf); remove those points from "
                           "the file or export the scene again",
              "ball.obj": f"1 of {len(vertices)} vertices has a non-finite x, y or z (NaN or inf); repair those "
                          "vertices or export the mesh again"}
    capsys.readouterr()
    for name, sentence in expect.items():
        extra = ["--out", tmp_path / "p.png"] if command == "preview" else []
        assert run(command, tmp_path / "far.json", "--scene", tmp_path / name, *extra) == 2
        assert capsys.readouterr().err == f"error: {tmp_path / name}: {sentence}.\n"
        assert not (tmp_path / "p.png").exists()
