"""A request too large for the machine (a big --resolution, many frames or Gaussians under a memory limit)
is one sentence and exit 2, not torch's or numpy's traceback with exit 1; the run folder says what it kept
and which options to lower. The allocations are faked (the real ones need `ulimit -v`)."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from vdm3d.cli import main as cli_main
from vdm3d.errors import OutOfMemoryError, out_of_memory
from vdm3d.io.runs import RunFolder, memory_options

TORCH_CPU = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
             "to allocate 671088640 bytes. Error code 12 (Cannot allocate memory)")
TORCH_CUDA = ("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.65 GiB total capacity; 22.1 GiB already "
              "allocated)")




@dataclasses.dataclass(frozen=True)
class Fit:
    downscale: int = 4
    steps: int = 100


@dataclasses.dataclass(frozen=True)
class Job:
    resolution: int = 64
    frames: int = 21
    max_gaussians: int = 4000
    seed: int = 0
    fit: Fit = dataclasses.field(default_factory=Fit)


def numpy_error() -> MemoryError:
    try:
        np.empty(2**46, np.uint8)  # 64 TiB
    except MemoryError as e:
        return e
    raise AssertionError("numpy allocated 1 EiB")


@pytest.mark.parametrize("exc, said", [
    (RuntimeError(TORCH_CPU), "while allocating 0.62 GiB"),
    (RuntimeError(TORCH_CUDA), "while allocating 20.0 MiB"),
    (MemoryError(), ""),
    (RuntimeError("shape mismatch"), None),
    (ValueError("out of memory"), None),
])
def test_out_of_memory_is_told_from_other_errors(exc, said):
    assert out_of_memory(exc) == said


def test_numpy_and_a_chained_allocation_count():
    assert out_of_memory(numpy_error()) == "while allocating 64.00 TiB"
    try:
        try:
            raise RuntimeError(TORCH_CPU)
        except RuntimeError as inner:
            raise KeyError("x") from inner
    except KeyError as outer:
        assert out_of_memory(outer) == "while allocating 0.62 GiB"


def test_the_options_named_are_the_commands_own_and_those_set_come_first():
    assert memory_options(Job()) == "ask for less (a smaller --resolution, --frames or --max-gaussians or a larger " \
                                    "--fit.downscale)"
    assert memory_options(Job(max_gaussians=10**6)).startswith("ask for less (a smaller --max-gaussians, "
                                                               "--resolution or --frames")
    assert memory_options({"steps": 3}) == "ask for less (a smaller size or count)"


def test_a_run_out_of_memory_says_what_it_kept_and_exits_2(tmp_path, monkeypatch, capsys, fake_cli_command):
    out = tmp_path / "cup"

    def run():
        with RunFolder(out, config=Job(resolution=1024), command=["vdm3d", "fake"]) as folder:
            (folder.checkpoint_dir / "stage-orbit.safetensors").write_bytes(b"frames")
            raise RuntimeError(TORCH_CPU)

    fake_cli_command(run)
    assert cli_main.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out}: ran out of memory while allocating 0.62 GiB; the checkpoint in "
                   f"{tmp_path / '.cup.partial'} is kept: close other programs and run the same command with "
                   "--resume, or ask for less (a smaller --resolution, --frames or --max-gaussians or a larger "
                   "--fit.downscale) with --overwrite to start again.\n")
    assert (tmp_path / ".cup.partial" / "checkpoints" / "stage-orbit.safetensors").read_bytes() == b"frames"
    assert not out.exists()


def test_a_run_without_a_checkpoint_leaves_nothing(tmp_path, monkeypatch, capsys, fake_cli_command):
    out = tmp_path / "cup"

    def run():
        with RunFolder(out, config=Job(), command=["vdm3d", "fake"]):
            raise numpy_error()

    fake_cli_command(run)
    assert cli_main.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: ran out of memory while allocating 64.00 TiB; ") and "Traceback" not in err
    assert err.endswith(f"nothing of {out} was kept: ask for less (a smaller --resolution, --frames or "
                        "--max-gaussians or a larger --fit.downscale), or close other programs, and run it again.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(OutOfMemoryError):  # a script gets the sentence as the error class
        with RunFolder(tmp_path / "b", config=Job()):
            raise MemoryError()


def test_outside_a_run_folder_and_with_debug(monkeypatch, capsys, fake_cli_command):
    def run():
        raise RuntimeError(TORCH_CUDA)

    fake_cli_command(run)
    assert cli_main.main(["fake"]) == 2
    assert capsys.readouterr().err == ("error: vdm3d fake ran out of memory while allocating 20.0 MiB; ask for less (a "
                                       "smaller --resolution, fewer frames, views or Gaussians), or close other "
                                       "programs, and run it again.\n")
    assert cli_main.main(["fake", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_another_runtime_error_is_still_a_bug(monkeypatch, fake_cli_command):
    def run():
        raise RuntimeError("shape mismatch")

    fake_cli_command(run)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli_main.main(["fake"])


GL_READ = r'''
import resource, sys
import numpy as np
import torch
from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.data.procedural import Light, Part, Scene
from vdm3d.data.procedural.shapes import ellipsoid
from vdm3d.geometry.mesh_render import render_buffers

c2w = look_at(torch.tensor([2.0, 0, 0], dtype=torch.float64), torch.zeros(3, dtype=torch.float64),
              torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
camera = Cameras.from_fov(50.0, 2048, 2048, c2w.float())
s = ellipsoid(0.8, 0.8, 0.8, nu=32, nv=16)
scene = Scene([Part(s.vertices, s.faces, s.normals, s.uv, np.full((1, 1, 3), 200, np.uint8),
                    np.ones((len(s.vertices), 3), np.float32))], light=Light((0.0, 0.0, 1.0), 0.3, 0.7))
render_buffers(scene, camera)  # the GL context and the framebuffers of that size exist
vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + 40 * 2**20, resource.RLIM_INFINITY))  # less than one 64 MiB buffer
try:
    render_buffers(scene, camera)
except MemoryError as e:
    print("MemoryError:", e)
'''


def test_a_render_too_large_for_the_memory_left_is_a_memory_error_not_a_crash(tmp_path):
    """moderngl's ``Framebuffer.read`` does not check its allocation: under a memory limit, ``vdm3d data make
    --resolution 2048`` died of a segmentation fault (exit 139, a half-written partial folder and no word)
    instead of the MemoryError that the run folder turns into one sentence."""
    import os
    import subprocess

    resource = pytest.importorskip("resource")
    pytest.importorskip("moderngl")
    from vdm3d.geometry.mesh_render import RenderBackendError, get_renderer

    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc to set a memory limit above the process's own size")
    try:
        get_renderer()
    except RenderBackendError as e:
        pytest.skip(str(e))
    assert resource.RLIMIT_AS
    script = tmp_path / "gl_read.py"
    script.write_text(GL_READ)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("MemoryError: Unable to allocate 64.0 MiB"), done.stdout


def test_a_train_commands_dict_of_configs_names_its_prefixed_options():
    @dataclasses.dataclass(frozen=True)
    class Task:
        batch: int = 8
        frames: int = 8

    @dataclasses.dataclass(frozen=True)
    class Loop:
        steps: int = 100

    said = memory_options({"task": Task(batch=512), "loop": Loop(), "heldout": 2})
    assert said == "ask for less (a smaller --task.batch or --task.frames)"
