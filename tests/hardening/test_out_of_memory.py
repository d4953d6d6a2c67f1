"""A request too large for the machine (a big --resolution, many frames or Gaussians under a memory limit)
is one sentence and exit 2, not torch's or numpy's traceback with exit 1; the run folder says what it kept
and which options to lower. The allocations are faked (the real ones need `ulimit -v`)."""

import dataclasses
import importlib.machinery
import sys
import types

import numpy as np
import pytest

from vdm3d.cli import main as cli_main
from vdm3d.errors import OutOfMemoryError, out_of_memory
from vdm3d.io.runs import RunFolder, memory_options

TORCH_CPU = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
             "to allocate 671088640 bytes. Error code 12 (Cannot allocate memory)")
TORCH_CUDA = ("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.65 GiB total capacity; 22.1 GiB already "
              "allocated)")


def fake_command(monkeypatch, body):
    module = types.ModuleType("vdm3d_fake_oom")
    module.__spec__ = importlib.machinery.ModuleSpec("vdm3d_fake_oom", None)
    module.HELP = "a fake command"
    module.main = lambda argv, prog: body()
    monkeypatch.setitem(sys.modules, "vdm3d_fake_oom", module)
    monkeypatch.setitem(cli_main.GROUPS, "fake", "vdm3d_fake_oom")


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
    (RuntimeError(TORCH_CPU), "while allocating 640 MiB"),
    (RuntimeError(TORCH_CUDA), "while allocating 20 MiB"),
    (MemoryError(), ""),
    (RuntimeError("shape mismatch"), None),
    (ValueError("out of memory"), None),
])
def test_out_of_memory_is_told_from_other_errors(exc, said):
    assert out_of_memory(exc) == said


def test_numpy_and_a_chained_allocation_count():
    assert out_of_memory(numpy_error()) == "while allocating 64 TiB"
    try:
        try:
            raise RuntimeError(TORCH_CPU)
        except RuntimeError as inner:
            raise KeyError("x") from inner
    except KeyError as outer:
        assert out_of_memory(outer) == "while allocating 640 MiB"


def test_the_options_named_are_the_commands_own_and_those_set_come_first():
    assert memory_options(Job()) == "ask for less (a smaller --resolution, --frames or --max-gaussians or a larger " \
                                    "--fit.downscale)"
    assert memory_options(Job(max_gaussians=10**6)).startswith("ask for less (a smaller --max-gaussians, "
                                                               "--resolution or --frames")
    assert memory_options({"steps": 3}) == "ask for less (a smaller size or count)"


def test_a_run_out_of_memory_says_what_it_kept_and_exits_2(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cup"

    def run():
        with RunFolder(out, config=Job(resolution=1024), command=["vdm3d", "fake"]) as folder:
            (folder.checkpoint_dir / "stage-orbit.safetensors").write_bytes(b"frames")
            raise RuntimeError(TORCH_CPU)

    fake_command(monkeypatch, run)
    assert cli_main.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out}: ran out of memory while allocating 640 MiB; the checkpoint in "
                   f"{tmp_path / '.cup.partial'} is kept: close other programs and run the same command with "
                   "--resume, or ask for less (a smaller --resolution, --frames or --max-gaussians or a larger "
                   "--fit.downscale) with --overwrite to start again.\n")
    assert (tmp_path / ".cup.partial" / "checkpoints" / "stage-orbit.safetensors").read_bytes() == b"frames"
    assert not out.exists()


def test_a_run_without_a_checkpoint_leaves_nothing(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cup"

    def run():
        with RunFolder(out, config=Job(), command=["vdm3d", "fake"]):
            raise numpy_error()

    fake_command(monkeypatch, run)
    assert cli_main.main(["fake"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: ran out of memory while allocating 64 TiB; ") and "Traceback" not in err
    assert err.endswith(f"nothing of {out} was kept: ask for less (a smaller --resolution, --frames or "
                        "--max-gaussians or a larger --fit.downscale), or close other programs, and run it again.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(OutOfMemoryError):  # a script gets the sentence as the error class
        with RunFolder(tmp_path / "b", config=Job()):
            raise MemoryError()


def test_outside_a_run_folder_and_with_debug(monkeypatch, capsys):
    def run():
        raise RuntimeError(TORCH_CUDA)

    fake_command(monkeypatch, run)
    assert cli_main.main(["fake"]) == 2
    assert capsys.readouterr().err == ("error: vdm3d fake ran out of memory while allocating 20 MiB; ask for less (a "
                                       "smaller --resolution, fewer frames, views or Gaussians), or close other "
                                       "programs, and run it again.\n")
    assert cli_main.main(["fake", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_another_runtime_error_is_still_a_bug(monkeypatch):
    def run():
        raise RuntimeError("shape mismatch")

    fake_command(monkeypatch, run)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        cli_main.main(["fake"])
