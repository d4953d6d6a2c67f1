"""Compiled CPU renderer in C++: the ``cpp`` backend, and the default without CUDA.

``cpu_raster/`` beside this file (``raster.cpp``, ``projection*.cpp``, bound in ``module.cpp``) holds the
twins of the ``numba`` backend's kernels, with exactly the rules of :mod:`.torch_ref` (the numba docstrings
describe the tiles, the front-to-back walk, the backward's recovery of the transmittances and the per-pair
gradient slots; the C++ follows them line for line), the binning included (:func:`.numba.bin_gaussians`'s
radix sort and tile lists, sorting ``depth bits << 32 | index`` items read in sequence: 0.39 against numba's
0.73 ms at 20k Gaussians; the lists stay in C++, held by Python as an opaque ``Bins`` between the forward
and the backward). Tiles are 16 or 32 pixels square (:func:`tile_size`: 32 from 128 x 128 px, a third fewer
(tile, Gaussian) pairs), never chosen by the thread count, so the results do not depend on it.

* **Rasterizer**, float32: each row of a Gaussian's box inside a tile is evaluated ``LANES = 8`` pixels
  at a time by branch-free arithmetic (masks instead of ``continue``, ``exp`` as ``2^x`` by a polynomial
  instead of a libm call, with ``-log2(e) / 2`` folded into the conic once per Gaussian: 6 % off the
  forward, 4 % off the backward), which gcc's auto-vectorizer turns into AVX2/AVX-512 instructions
  (``-O3 -march=native``). The backward's step is written with GCC's vector extensions instead (types of
  8 floats, which clang compiles too): auto-vectorized, its ten per-lane sums lived on the stack, a load
  and a store each per step; as vector variables they stay in registers (8-10 % off the backward,
  bit-identical results); its ten per-pair lane sums are shuffle trees (gcc's in-order sum of a loop
  over the lanes was seven extracts and seven dependent adds each). ``2^x`` rounds by adding and
  subtracting 1.5 * 2^23 rather than by ``floor`` (6 % off the forward), the same in both kernels, so
  that the backward recomputes the forward's alpha bit for bit. The numba kernels are scalar code that
  steps ``exp`` over the pixel lattice by products and branches per pixel: 4.3 ns (forward) and 5.5 ns
  (backward) per pixel evaluation at 20k Gaussians, 128 px; these took 0.54x and 0.60x their time before
  this session's changes, measured side by side (``numba``'s LLVM did not vectorize a lane-parallel
  version profitably: docs/speed.md). Sums along a pixel are float32 as in gsplat and in ``torch_ref``
  itself.
* **Projection**, float32 arithmetic like :mod:`.torch_ref` (the parameters are float32). The forward's
  loop over Gaussians is branch-free and gcc vectorizes it (8 Gaussians per AVX2 instruction; it
  did not under ``omp simd``, whose per-lane copies of the local arrays have no affine address, so
  the loops carry ``GCC ivdep``): 0.42 ms against 1.13 ms for the scalar float64 loop at 20k. The
  backward vectorizes the same way (1.39 against 2.47 ms for its scalar loop that skipped the
  Gaussians without cotangents): its per-Gaussian sums over the cameras are structure-of-arrays
  scratch, its selects are products or second loops where a select made gcc predicate a load it then
  could not vectorize, and its SH-coefficient rows are written in a second loop, one contiguous row of
  ``3 K`` floats per Gaussian. Every gradient entry is written by the kernels (no zero-filled arrays),
  and their scratch is each thread's own, inside the C++.
* **Around the kernels**: raw addresses come from ``Tensor.data_ptr`` (numpy's ``ctypes.data`` cost
  16x more, ~70 times a pass), and each gradient array is reused once nothing refers to it any more
  (:func:`_reused`: a fresh 3.8 MB ``v_sh`` was 937 page faults a pass).

Built on first use with :func:`torch.utils.cpp_extension.load` (pybind11 only, no torch headers; the
translation units of :data:`SOURCES` compiled in parallel: 27-31 s on 2 free cores, where the one file it
was took 50-55 s whatever the cores, and about as long as that on one core; docs/speed.md, "First build";
announced by one line on stderr so that a job does not look hung), cached under ``TORCH_EXTENSIONS_DIR``
(default ``~/.cache/torch_extensions``) under a name that carries a hash of the CPU's flags
(``-march=native`` code must not reach another machine) and one of what the module is built from (the
source, the compiler flags, torch's version), and loaded in milliseconds afterwards by every checkout and
venv with that source (:func:`_load` says how). Where it cannot be built (no C++ compiler, no ninja, or
``VDM3D_NO_CPP=1``) or the Gaussians are not float32, :func:`render_backend` falls back to the ``numba``
backend, which computes the same images (:func:`available` says which and why). Threads: the rasterizer's
OpenMP loop over tiles uses ``torch.get_num_threads()``, which :func:`vdm3d.threads.set_threads` sets; the
kernels release the GIL.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.io.provenance import cpu_tag
from vdm3d.splat.backends import numba as numba_backend
from vdm3d.splat.backends.numba_projection import _camera_table, _per_gaussian, project_gaussians_numba
from vdm3d.splat.gaussians import Gaussians
from vdm3d.splat.output import RenderOutput
from vdm3d.splat.projection import ALPHA_MAX, ALPHA_MIN, EPS_2D, NEAR_PLANE, T_MIN, Projected
from vdm3d.splat.sh import num_sh_bases

SOURCE_DIR = Path(__file__).with_name("cpu_raster")
# The translation units, which torch's ninja build compiles in parallel (as many at once as ninja's default
# job count, the CPUs this process may use plus 2, or MAX_JOBS where the user set it). They are cut to
# similar sizes (CPU-s at -O3, one by one on the dev machine) so that two cores finish together whatever order
# ninja starts them in (1.11 does not follow this list).
SOURCES = ("projection.cpp",  # 10-12: the forward's four SH degrees, the backward's loop and finish
           "projection_backward_sh3.cpp",  # 9-10
           "projection_backward_sh2.cpp",  # 10
           "projection_backward_sh0_sh1.cpp",  # 10-11
           "module.cpp",  # 8-11, 5 of them pybind11's header
           "raster.cpp")  # 1-1.5: binning, the rasterizer's forward and backward
_state: dict[str, object] = {}


CFLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"]
LDFLAGS = ["-fopenmp"]
COMPILE_NOTICE = "compiling the C++ renderer (first use in this environment, half a minute to a minute, once)"


def _source_files() -> dict[str, bytes]:
    """Every file of the module's source (``cpu_raster/``: the translation units and the headers they
    include), by name: what :func:`_build_tag` hashes and :func:`_build_and_import` copies."""
    return {f.name: f.read_bytes() for f in sorted(SOURCE_DIR.iterdir()) if f.suffix in (".cpp", ".h")}


def _build_tag(sources: dict[str, bytes]) -> str:
    """A short hash of what the module is built from: the text of every source file and header (with its
    name, so that a file moved from one name to another is another build), the compiler flags and torch's
    version. Two checkouts with different kernels (a branch and main) share torch's extension cache, and
    under one name each would rebuild the other's module in turn, so that a process could load kernels
    whose arguments do not match its Python side (seen: a heap corruption when the projection's scratch
    changed dtype). One name per content avoids both; the source's path is left out on purpose, so that
    checkouts of the same source share one build (see :func:`_load`)."""
    parts = [part for name in sorted(sources) for part in (name.encode(), sources[name])]
    key = b"\0".join([*parts, " ".join(CFLAGS + LDFLAGS).encode(), torch.__version__.encode()])
    return hashlib.sha1(key).hexdigest()[:8]


def _extensions_root() -> Path:
    """The folder torch's :func:`~torch.utils.cpp_extension.load` builds extensions under:
    ``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions/py311_cpu`` (Python's version, the
    accelerator), as torch's ``_get_build_directory`` names it."""
    from torch.utils import cpp_extension

    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root)
    accelerator = (f"rocm{torch.version.hip.replace('.', '')}" if torch.version.hip else
                   f"cu{torch.version.cuda.replace('.', '')}" if torch.version.cuda else "cpu")
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path(cpp_extension.get_default_build_root()) / f"{python}_{accelerator}"


def _import_built(name: str, library: Path):
    """The extension module in ``library``, imported as torch's loader does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, library)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build_and_import():
    """The module: imported from the cache when a build of this content is there, else compiled first.

    Why not just :func:`torch.utils.cpp_extension.load` each time: torch writes its ``build.ninja``
    with the absolute paths of the source and of the venv's torch, and ninja rebuilds whenever that
    file changes, so two checkouts (or a pip install and a dev checkout) sharing one cache folder
    rebuilt each other's module at every switch, 35-40 s each. So the source is copied into the build
    folder (written only when missing, so that its time stamp stays), the folder is named by the
    content alone, and a finished library there is imported directly, without ninja; only a missing
    (or unreadable) library, or a build under way in another process (torch's ``lock`` file), goes
    through ``load``, which compiles, after one line on stderr.

    torch's ``lock`` file holds no process id, and its wait has no end: a builder killed with SIGKILL (the
    OOM killer, a Slurm time limit) left it behind, and every later run on that cache waited forever. So a
    build also holds an OS lock (``flock`` on ``vdm3d-build.lock`` in the folder), which goes with its
    process: a second process waits for that lock, not for torch's file, then imports what the first built;
    torch's file found with nobody holding the lock is a dead builder's, and is removed."""
    sources = _source_files()
    name = f"vdm3d_cpu_raster_{cpu_tag()}_{_build_tag(sources)}"
    folder = _extensions_root() / name
    library = folder / f"{name}.so"
    if library.is_file() and not (folder / "lock").exists():
        try:
            return _import_built(name, library)
        except ImportError:  # a truncated file from an interrupted build: build it again
            pass
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in sources.items():
        copy = folder / file_name
        if not copy.is_file() or copy.read_bytes() != text:
            partial = folder / f".{file_name}.{os.getpid()}"
            partial.write_bytes(text)
            os.replace(partial, copy)
    from torch.utils.cpp_extension import load

    sys.stdout.flush()
    print(COMPILE_NOTICE, file=sys.stderr, flush=True)
    with _building(folder):
        if library.is_file() and not (folder / "lock").exists():  # built by the process we waited for
            try:
                return _import_built(name, library)
            except ImportError:
                pass
        return load(name=name, sources=[str(folder / source) for source in SOURCES], extra_cflags=CFLAGS,
                    extra_ldflags=LDFLAGS, build_directory=str(folder), verbose=False)


@contextlib.contextmanager
def _building(folder: Path):
    """Hold the build lock of ``folder`` (waiting while another process builds there), and remove torch's
    ``lock`` file when it is left over from a builder that died (see :func:`_build_and_import`). Where there
    is no ``flock`` (Windows), torch's own lock alone."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(folder / "vdm3d-build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            (folder / "lock").unlink(missing_ok=True)  # every live builder holds the lock we now hold
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load():
    """The compiled module, building it on first use (:func:`_build_and_import`); ``None`` (with the
    reason in ``_state``) where it cannot be built. Tried once per process."""
    if "module" in _state:
        return _state["module"]
    module, reason = None, ""
    if os.environ.get("VDM3D_NO_CPP", "") not in ("", "0"):
        reason = "VDM3D_NO_CPP is set"
    else:
        try:
            module = _build_and_import()
        except Exception as exc:  # no compiler, no ninja, a read-only cache: the numba kernels do the job
            reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            # one line, once (a Python warning echoed a source line of vdm3d's): what happened and the fix
            print(f"vdm3d: the C++ rasterizer could not be built ({reason}); using the slower numba backend. "
                  f"Its build folder is {_extensions_root()}: set TORCH_EXTENSIONS_DIR to a writable folder if "
                  "that one is not, or install a C++ compiler.", file=sys.stderr, flush=True)
    _state["module"], _state["reason"] = module, reason
    return module


def available() -> tuple[bool, str]:
    """Whether the C++ kernels are in use (building them if needed), and if not, why."""
    return _load() is not None, str(_state.get("reason", ""))


def _ptrs(*tensors: Tensor, camera: int = 0) -> list[int]:
    """The addresses of contiguous CPU tensors' data, each at the slice ``[camera]`` of its leading axis
    when ``camera`` is given: the kernels take raw addresses. ``Tensor.data_ptr`` costs 0.05 us where
    numpy's ``ctypes.data`` costs 0.8 us, and a pass passes about 70 of them."""
    assert all(t.is_contiguous() for t in tensors), "the kernels read C-contiguous arrays"
    return [t.data_ptr() + camera * t.stride(0) * t.element_size() for t in tensors]


def _empty(shape: tuple[int, ...], dtype: type) -> Tensor:
    return torch.from_numpy(np.empty(shape, dtype))


_spare: dict[str, np.ndarray] = {}


def _reused(key: str, like: Tensor) -> Tensor:
    """An uninitialized float32 tensor shaped like ``like`` for the gradient ``key``: the array handed out
    for it last time if nothing outside this cache refers to it any more (its tensor, the ``.grad`` that
    took it over and every view of it are gone: a tensor from :func:`torch.from_numpy` holds a reference
    to its array), else a fresh one, which is kept for next time. Why: glibc returns the freed top of its
    heap to the system, so that a fresh array of several MB is fresh pages, zeroed by the kernel on first
    touch; at 20k Gaussians of SH degree 3, ``v_sh`` (3.8 MB) was 937 page faults a pass, 0.9 of the
    projection backward's 2.2 ms. The kernels write every entry, so what the array held before cannot
    show. The cost: one array per gradient (the size of the last pass's gradients) stays allocated for the
    process's life, or until a pass with other shapes replaces it."""
    a, shape = _spare.get(key), tuple(like.shape)
    if a is None or a.shape != shape or sys.getrefcount(a) > 3:  # _spare's, a's and getrefcount's argument
        a = _spare[key] = np.empty(shape, np.float32)
    return torch.from_numpy(a)


class ProjectCpp(torch.autograd.Function):
    """``(means, quats, log_scales, opacity_logits, sh) -> (means2d, conics, depths, opacities, colors)`` for
    ``B`` cameras, plus the non-differentiable ``extents``, ``visible`` and ``radii``: the C++ twin of
    :class:`.numba_projection.ProjectNumba` (float32 parameters and arithmetic)."""

    @staticmethod
    def forward(ctx, means, quats, log_scales, opacity_logits, sh, cameras: Cameras, degree: int, near: float,
                eps2d: float):
        module = _load()
        params = [t.detach().contiguous() for t in (means, quats, log_scales, opacity_logits, sh)]
        # numpy's vectorized transcendentals in float32: 0.06 ms at 20k against 0.17 ms in float64
        per_gaussian = _per_gaussian(params[2].numpy(), params[3].numpy(), np.float32)
        scales, opac, r_exts = (torch.from_numpy(a) for a in per_gaussian)
        cams = torch.from_numpy(_camera_table(cameras))
        B, N, K = cams.shape[0], params[0].shape[0], params[4].shape[1]
        f32 = np.float32
        means2d, conics, depths = _empty((B, N, 2), f32), _empty((B, N, 3), f32), _empty((B, N), f32)
        opacs, colors, extents = _empty((B, N), f32), _empty((B, N, 3), f32), _empty((B, N, 2), f32)
        visible_array = np.empty((B, N), np.bool_)
        visible, radii = torch.from_numpy(visible_array), _empty((B, N), np.int32)
        inputs = _ptrs(params[0], params[1], scales, opac, r_exts, params[4], cams)
        outputs = _ptrs(means2d, conics, depths, opacs, colors, extents, visible, radii)
        module.project_forward(B, N, K, degree, *inputs, cameras.width, cameras.height, near, eps2d, ALPHA_MIN,
                               *outputs)
        # ctx keeps the array, not the tensor: an output kept on its own ctx is a reference cycle (tensor ->
        # node -> ctx -> tensor) that only the garbage collector frees
        ctx.params, ctx.per_gaussian, ctx.cams, ctx.visible = params, (scales, opac), cams, visible_array
        ctx.consts = (degree, cameras.width, cameras.height, near, eps2d)
        ctx.mark_non_differentiable(extents, visible, radii)
        return means2d, conics, depths, opacs, colors, extents, visible, radii

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_depths, v_opac, v_colors, *_):
        module = _load()
        params = ctx.params
        degree, width, height, near, eps2d = ctx.consts
        cot = [t.to(torch.float32).contiguous() for t in (v_means2d, v_conics, v_depths, v_opac, v_colors)]
        N, K = params[0].shape[0], params[4].shape[1]
        grads = [_reused(f"project{i}", p) for i, p in enumerate(params)]  # the kernel writes every entry
        inputs = _ptrs(params[0], params[1], *ctx.per_gaussian, params[4], ctx.cams)
        module.project_backward(ctx.cams.shape[0], N, K, degree, *inputs, width, height, near, eps2d,
                                *_ptrs(torch.from_numpy(ctx.visible), *cot, *grads))
        return (*grads, None, None, None, None)


def project_gaussians_cpp(gaussians: Gaussians, cameras: Cameras, sh_degree: int, near: float = NEAR_PLANE,
                          eps2d: float = EPS_2D) -> Projected:
    """:func:`vdm3d.splat.projection.project_gaussians` in C++ (``cameras.shape == (B,)``); numba's for float64
    Gaussians or where the kernels cannot be built."""
    num_sh_bases(sh_degree)
    if gaussians.dtype != torch.float32 or _load() is None:
        return project_gaussians_numba(gaussians, cameras, sh_degree, near, eps2d)
    g = gaussians
    means2d, conics, depths, opac, colors, extents, visible, radii = ProjectCpp.apply(
        g.means, g.quats, g.log_scales, g.opacity_logits, g.sh, cameras, sh_degree, near, eps2d)
    return Projected(means2d, conics, depths, opac, colors, extents, visible, radii)


def tile_size(width: int, height: int) -> int:
    """The rasterizer's square tile, in pixels: 32 where the image holds at least 16 such tiles (from
    128 x 128 px), else 16. Larger tiles split fewer Gaussians' boxes at tile edges: at 20k Gaussians,
    128 px, 8 % fewer 8-pixel steps and a third fewer (tile, Gaussian) pairs, whose setup and lane sums
    are per-pair costs (a pass 4-8 % faster, both kernels). Smaller images keep 16-pixel tiles so that
    threads still have 16 tiles to share. It depends on the image alone, never on the thread count, so
    results stay the same whatever the threads."""
    return 32 if (width // 32) * (height // 32) >= 16 else 16


class RasterizeCpp(torch.autograd.Function):
    """``(means2d, conics, opacities, colors, depths [B, N, ...] float32, background [B, 3]) -> (rgb [B, H, W, 3],
    depth [B, H, W], alpha [B, H, W])``, the finished images of every camera, with the analytic
    backward (``extents`` and ``visible`` are constants), as :class:`.numba.RasterizeNumba`."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, depths, background, extents, visible, width: int,
                height: int):
        module = _load()
        arrays = [t.contiguous() for t in (means2d, conics, opacities, colors, depths)]
        bg = background.to(torch.float32).contiguous()
        ext, vis = extents.contiguous(), visible.contiguous()
        B, H, W, N = arrays[0].shape[0], height, width, arrays[0].shape[1]
        alpha_array, depth_array = np.empty((B, H, W), np.float32), np.empty((B, H, W), np.float32)
        alpha, depth = torch.from_numpy(alpha_array), torch.from_numpy(depth_array)
        rgb, T_final = _empty((B, H, W, 3), np.float32), _empty((B, H, W), np.float32)
        last = _empty((B, H, W), np.int32)
        threads, tile = torch.get_num_threads(), tile_size(W, H)
        lists = []
        for b in range(B):
            bins = module.bin(*_ptrs(arrays[0], ext, arrays[4], vis, camera=b), N, W, H, tile)
            lists.append(bins)
            module.forward(*_ptrs(*arrays, camera=b), bins, ALPHA_MAX, ALPHA_MIN, T_MIN, *_ptrs(bg, camera=b),
                           *_ptrs(rgb, depth, alpha, T_final, last, camera=b), threads)
        # the arrays behind the returned alpha and depth, not those tensors (see ProjectCpp.forward)
        ctx.lists, ctx.arrays, ctx.bg, ctx.saved = lists, arrays, bg, (alpha_array, depth_array, T_final, last)
        return rgb, depth, alpha

    @staticmethod
    def backward(ctx, v_rgb, v_depth, v_alpha):
        module = _load()
        arrays, bg = ctx.arrays, ctx.bg
        alpha, depth, T_final, last = ctx.saved
        alpha, depth = torch.from_numpy(alpha), torch.from_numpy(depth)
        cot = [t.to(torch.float32).contiguous() for t in (v_rgb, v_depth, v_alpha)]
        # means2d, conics, opacities, colors, depths; the kernel writes every entry
        grads = [_reused(f"raster{i}", a) for i, a in enumerate(arrays)]
        threads, N = torch.get_num_threads(), arrays[0].shape[1]
        for b, bins in enumerate(ctx.lists):
            module.backward(*_ptrs(*arrays, camera=b), bins, ALPHA_MAX, ALPHA_MIN, T_MIN, *_ptrs(bg, camera=b),
                            *_ptrs(alpha, depth, T_final, last, *cot, camera=b), N, *_ptrs(*grads, camera=b),
                            threads)
        v_background = None
        if ctx.needs_input_grad[5]:  # rgb = ... + (1 - A) background
            v_background = torch.einsum("bhwc,bhw->bc", v_rgb, 1.0 - alpha.to(v_rgb.dtype))
        return (*grads, v_background, None, None, None, None)


def render_backend(gaussians: Gaussians, cameras: Cameras, sh_degree: int, background: Tensor) -> RenderOutput:
    """Render a flat batch of cameras ``(B,)``; see :func:`vdm3d.splat.render.render`. Float64 Gaussians,
    or a machine where the kernels cannot be built, go to the ``numba`` backend (same rules)."""
    if gaussians.device.type != "cpu":
        raise ConfigError(f"render backend 'cpp' runs on the CPU but the Gaussians are on {gaussians.device}; "
                          "move them with gaussians.to('cpu') or use backend='gsplat'.")
    if gaussians.dtype != torch.float32 or _load() is None:
        return numba_backend.render_backend(gaussians, cameras, sh_degree, background)
    proj = project_gaussians_cpp(gaussians, cameras, sh_degree)
    means2d = proj.means2d
    if means2d.requires_grad:
        means2d.retain_grad()
    rgb, depth, alpha = RasterizeCpp.apply(means2d, proj.conics, proj.opacities, proj.colors, proj.depths,
                                           background, proj.extents, proj.visible, cameras.width, cameras.height)
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, means2d=means2d, radii=proj.radii)
