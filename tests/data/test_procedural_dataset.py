"""`vdm3d data make`: folder layout readable by the project's own readers, same seed -> same bytes,
resume skips complete cases, two workers write what one writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vdm3d.cli.main import main
from vdm3d.data.procedural.dataset import DatasetConfig, build_case, write_case

pytest.importorskip("moderngl")
try:
    from vdm3d.geometry.mesh_render import RenderBackendError, get_renderer

    get_renderer()
except RenderBackendError as e:  # no EGL/Mesa on this machine: say so instead of failing
    pytest.skip(str(e), allow_module_level=True)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "manifest.json"}


def _make(out: Path, *extra: str) -> int:
    return main(["data", "make", "objects", "--count", "2", "--resolution", "16", "--views", "3",
                 "--workers", "1", "--no-progress", "--out", str(out), *extra])


def test_case_layout_and_contents(tmp_path):
    from vdm3d.cameras.io_transforms import read_transforms_json
    from vdm3d.cameras.trajectory_file import load_trajectory
    from vdm3d.data.procedural import load_mesh
    from vdm3d.io.images import read_depth, read_image

    assert _make(tmp_path / "ds", "--seed", "5") == 0
    case = tmp_path / "ds" / "case_000001"
    cfg = DatasetConfig(kind="objects", count=2, resolution=16, views=3, seed=5, workers=1)
    scene, cams, b = build_case(cfg, 1)
    for j in range(3):
        assert torch.equal(read_depth(case / f"depth/{j:03d}.npy"), b.depth[j])  # lossless
        img = read_image(case / f"images/{j:03d}.png")
        assert (img - b.rgb[j]).abs().max() <= 0.5 / 255 + 1e-6  # 8-bit rounding only
    buffers = np.load(case / "buffers.npz")
    assert np.array_equal(buffers["instance"], b.instance.numpy())
    assert np.allclose(buffers["normals"], b.normals.numpy(), atol=1e-3)
    cams_read = read_transforms_json(case / "transforms.json")[0]
    assert torch.allclose(cams_read.c2w, cams.c2w, atol=1e-6) and torch.allclose(cams_read.Ks, cams.Ks)
    traj = load_trajectory(case / "trajectory.json")
    assert torch.allclose(traj.cameras.c2w, cams.c2w, atol=1e-6)
    from vdm3d.cameras.formats import read_camera_file  # both camera files give one frame rate (QA chain: 24 vs 8)

    assert read_camera_file(case / "transforms.json").trajectory.fps == traj.fps == 8.0
    mesh = load_mesh(case / "mesh.glb", normalize=False)  # glTF y-up, turned back z-up on load
    assert sum(len(p.faces) for p in mesh.parts) == scene.num_faces
    info = json.loads((case / "scene.json").read_text())
    assert info["kind"] == "objects" and len(info["parts"]) == len(scene.parts)
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["seed"] == 5 and manifest["rendered"] == 2


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    assert _make(tmp_path / "a", "--seed", "1") == 0
    assert _make(tmp_path / "b", "--seed", "1") == 0
    assert _make(tmp_path / "c", "--seed", "2") == 0
    a, b, c = (_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.endswith(".png"))


def test_resume_skips_complete_cases(tmp_path):
    out = tmp_path / "ds"
    partial = tmp_path / ".ds.partial"
    (partial / "checkpoints").mkdir(parents=True)  # what an interrupted run leaves behind
    cfg = DatasetConfig(kind="objects", count=2, resolution=16, views=3, seed=0, workers=1)
    done = write_case(partial, cfg, 0)
    stamp = (done / "images/000.png").stat().st_mtime_ns
    (partial / ".case_000001.tmp").mkdir()  # a half-written case is redone
    assert _make(out, "--resume") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["skipped"] == 1 and manifest["rendered"] == 1
    assert (out / "case_000000/images/000.png").stat().st_mtime_ns == stamp
    assert (out / "case_000001/images/002.png").is_file() and not (out / ".case_000001.tmp").exists()
    assert not (out / "checkpoints").exists()
    fresh = tmp_path / "fresh"
    assert _make(fresh) == 0
    assert _files(out) == _files(fresh)


def test_resume_refuses_a_link_planted_in_the_partial_folder(tmp_path, capsys):
    """`--resume` wrote the cases into the partial folder through a link someone had put there: a case's
    ``.case_000001.tmp`` linked elsewhere took its rendered files (images/, depth/, mesh.glb, ...) into the
    folder it pointed to. Refused, exit 2, before anything is written."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("important")
    out = tmp_path / "ds"
    partial = tmp_path / ".ds.partial"
    (partial / "checkpoints").mkdir(parents=True)  # what an interrupted run leaves behind
    (partial / ".case_000001.tmp").symlink_to(outside, target_is_directory=True)
    capsys.readouterr()
    assert _make(out, "--resume") == 2
    assert capsys.readouterr().err == (
        f"error: {partial / '.case_000001.tmp'}: is a symbolic link inside the interrupted run's folder {partial}, through "
        f"which the resumed run would write outside {out}; remove it, or run again without --resume (and with "
        "--overwrite) to start again.\n")
    assert [p.name for p in outside.iterdir()] == ["victim.txt"] and (outside / "victim.txt").read_text() == "important"
    assert sorted(p.name for p in partial.iterdir()) == [".case_000001.tmp", "checkpoints"] and not out.exists()


def test_bad_options_exit_with_one_sentence(tmp_path, capsys):
    assert _make(tmp_path / "x", "--ssaa", "2") == 2
    err = capsys.readouterr().err
    assert "--ssaa must be an odd integer" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_two_workers_write_the_same_bytes(tmp_path):
    assert main(["data", "make", "objects", "--count", "2", "--resolution", "16", "--views", "3", "--workers", "2",
                 "--no-progress", "--out", str(tmp_path / "two")]) == 0
    assert main(["data", "make", "objects", "--count", "2", "--resolution", "16", "--views", "3", "--workers", "1",
                 "--no-progress", "--out", str(tmp_path / "one")]) == 0
    assert _files(tmp_path / "two") == _files(tmp_path / "one")


def test_mesh_glb_is_y_up_and_reads_back_where_the_cameras_see_it(tmp_path):
    """glTF is +y up: the GLB read by stylize's loader with its default up axis lands on the case's
    world geometry, and its depth under the case's cameras equals the exact depth files."""
    import trimesh

    from vdm3d.geometry.mesh_render import render_buffers
    from vdm3d.geometry.mesh_scene import load_mesh_scene
    from vdm3d.io.images import read_depth

    cfg = DatasetConfig(kind="rooms", count=1, resolution=24, views=2, seed=5, workers=1)
    case = write_case(tmp_path, cfg, 0)
    scene, cams, _ = build_case(cfg, 0)
    raw = trimesh.load(str(case / "mesh.glb"), force="scene", process=False)
    lo, hi = raw.bounds  # as stored: up is +y, so the room's height (z in vdm3d's world) lies along y
    height = scene.bounds[1, 2] - scene.bounds[0, 2]
    assert abs((hi[1] - lo[1]) - height) < 1e-4 and abs(hi[2] + scene.bounds[0, 1]) < 1e-4
    read = load_mesh_scene(case / "mesh.glb", normalize=False)  # stylize's call, default up="auto"
    assert np.abs(read.bounds - scene.bounds).max() < 1e-4
    from scipy.spatial import cKDTree

    # triangles as 9-vectors (parts may come back in another order): each finds its twin within 1e-4
    tri_read = np.concatenate([p.vertices[p.faces].reshape(-1, 9) for p in read.parts])  # [T, 9]
    tri_true = np.concatenate([p.vertices[p.faces].reshape(-1, 9) for p in scene.parts])
    assert tri_read.shape == tri_true.shape
    assert cKDTree(tri_true).query(tri_read)[0].max() < 1e-4 and cKDTree(tri_read).query(tri_true)[0].max() < 1e-4
    depth = render_buffers(read, cams, ssaa=1).depth
    for j in range(len(cams)):
        truth = read_depth(case / f"depth/{j:03d}.npy")
        both = (truth > 0) & (depth[j] > 0)
        assert both.float().mean() > 0.9 and (depth[j][both] - truth[both]).abs().max() < 1e-3


def test_progress_in_a_log_is_plain_lines(tmp_path, capsys):
    """`vdm3d data make ... 2>&1 | tail` (not a terminal): lines with the count and an ETA, as the jobs
    print them, not a bar redrawn with carriage returns."""
    assert main(["data", "make", "objects", "--count", "2", "--resolution", "16", "--views", "3",
                 "--workers", "1", "--out", str(tmp_path / "ds")]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith("data objects 1/2 (50%), ") and "ETA" in lines[0]
    assert lines[1].startswith("data objects 2/2 (100%), ")


def _children(pid: int) -> list[str]:
    """Command lines of the processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rpartition(")")[2].split()[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().decode(errors="replace"))
        except (OSError, ValueError, IndexError):
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the workers through /proc")
def _ignores_sigint(pid: int) -> bool:
    """Whether process ``pid`` ignores SIGINT now (the SigIgn mask of /proc/PID/status)."""
    import signal

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGINT - 1) & 1)
    return False


def _ctrl_c_as_in_a_terminal() -> None:
    """A command typed at a terminal starts with Ctrl-C's default action. pytest started in the background by
    a non-interactive shell (`make test &` in a script, some CI jobs) has SIGINT ignored, and vdm3d keeps an
    inherited SIG_IGN on purpose (`vdm3d ... &` must not be stopped by the script's Ctrl-C)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_with_workers_is_one_sentence(tmp_path):
    """Ctrl-C reaches the whole process group, the spawned workers too: a worker still importing torch
    printed its KeyboardInterrupt traceback (and a `Process SpawnPoolWorker-N:` line) before the parent's
    sentence. The workers now ignore it; the parent stops them and says what it kept."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vdm3d.cli.main", "data", "make", "objects", "--count", "200",
                             "--resolution", "16", "--views", "2", "--workers", "2", "--no-progress", "--out",
                             str(tmp_path / "d")], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,  # a terminal's job
                            preexec_fn=_ctrl_c_as_in_a_terminal)
    try:
        deadline = time.time() + 120
        while sum("spawn_main" in c for c in _children(proc.pid)) < 2 or _ignores_sigint(proc.pid):
            # both workers started (still importing torch), and the parent has left the few milliseconds in
            # which it ignores Ctrl-C itself while it starts them (a signal then goes to one of its other
            # threads and is lost, under load too often for a test to land by chance)
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGINT, err
    # the workers were still importing torch: no case was finished, so there is nothing to resume (the partial
    # folder with only its start.json used to be kept, and called a checkpoint)
    assert err.splitlines() == [f"interrupted by SIGINT: no checkpoint had been written yet, so nothing of "
                                f"{tmp_path / 'd'} was kept."], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
