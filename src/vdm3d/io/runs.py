"""Run folders: results appear only when complete, with a manifest that says how they were made.

A command that writes results does so inside ``RunFolder(out)``. Work goes to a hidden sibling
``.<name>.partial/``; on success ``manifest.json`` is written and the folder is renamed to ``out`` in
one step, so a reader never sees half a run. On failure the partial folder is deleted, unless the run
saved a checkpoint into it (``run.checkpoint_dir``) and the failure is one a resume can get past (an
interrupt, a full disk, a crash; not a bad input or option, which the same command would raise again,
see :data:`WORTHLESS_CHECKPOINT`): then it stays, and the same command with ``--resume`` continues from
there. "The same command" is checked: the partial folder keeps the run's
options and the hashes of its input files (``start.json``), and a resume with other options, or after an
input file changed, is refused with one sentence naming the option or the file, so a resumed result is
never a mix of two runs. A partial folder with a symbolic link anywhere inside it is refused too: a resume
would write through the link, outside the run.

The manifest records the command line, the full config, the seed, the versions of the packages that
shape the numbers, the code revision of a git checkout, the CPU, the thread count and the rasterizer and
GL renderer that ran (:mod:`vdm3d.io.provenance`), and a SHA-256 of every input file, so any result can be
reproduced. A resumed run is made in legs, one per process; ``start.json`` keeps the earlier ones, and the
manifest lists every leg (``legs``: started, seconds, threads, backends, code), sums their ``seconds`` and
starts at the first. A resume at another thread count than the interrupted run's says so in one line: CPU
reductions depend on it, so the result then matches neither count's uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence

from vdm3d.errors import (ConfigError, DiskFullError, InputError, OutOfMemoryError, OutputError,
                          OutputExistsError, UnsafeCheckpointError, Vdm3dError, out_of_memory)
from vdm3d.io.cache import fingerprint_record, recorded_models
from vdm3d.io.provenance import code_revision, cpu_record, package_versions
from vdm3d.threads import current_threads

MANIFEST = "manifest.json"
START = "start.json"  # in the partial folder: what a resumed run must match (options, input hashes)
_HOW_NOT_WHAT = ("out", "resume", "overwrite")  # config fields that say where and whether, not what
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk or an exceeded quota: free space, then resume
#: failures that the same command would meet again (a bad input file or value, an option out of range or
#: inconsistent, pickle weights without trust): a resume must be run with other options or files, which
#: resuming refuses, so a checkpoint written before them is worthless and the partial folder goes. Any other
#: failure keeps it: Ctrl-C / SIGTERM, OutputError (a full disk: free space and resume), MissingWeightsError
#: (download, then resume), and crashes.
WORTHLESS_CHECKPOINT = (InputError, ConfigError, UnsafeCheckpointError)


_USED: dict[str, set[str]] = {}  # kind -> implementations that ran in the current run (note_used)


def note_used(kind: str, name: str) -> None:
    """Record that the current run computed with implementation ``name`` of ``kind`` (the rasterizer that
    actually ran: ``cpp``, or ``numba`` where the C++ kernels could not be built). The manifest lists them
    under ``backends``, since two machines with the same packages and options can differ there, and
    `vdm3d rerun` says when a rerun used others."""
    _USED.setdefault(kind, set()).add(name)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def to_jsonable(value: Any) -> Any:
    """Turn configs (dataclasses, enums, paths, tuples, numpy/torch scalars) into JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it is to set it; done once, at import, before any threads
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _umask() -> int:
    return _UMASK


def missing_path_error(path: Path, fix: str) -> InputError:
    """The refusal of a ``path`` that does not exist, naming the run that is still writing it when its
    ``.NAME.partial`` folder is there (one command's run folder passed to the next before it has finished)."""
    for missing in (path, *path.parents):  # the path itself or a run folder above it (runs/obj/mesh.glb)
        if missing.exists():
            break
        partial = partial_folder(missing)
        if partial.is_dir():
            return InputError(path=path, problem=f"does not exist yet: a run is still writing it (in {partial})",
                              fix="wait for that run to finish, or resume it with --resume if it was stopped")
    return InputError(path=path, problem="does not exist", fix=fix)


def run_place_problem(out: str | Path) -> str | None:
    """Why ``out`` cannot take an output that is written beside it and moved into place at the end (a run folder,
    :class:`RunFolder`), or None: ``.``, ``..`` or ``/`` name the folder it is in (the partial folder would be
    ``..partial`` inside it), and a mount point cannot be replaced (the rename was an EBUSY traceback after the
    whole run). A batch asks it of every case before any runs (:func:`vdm3d.batch.cases.read_cases`)."""
    if Path(out).name in ("", ".."):
        return "names the folder it is in, not a new one"
    if os.path.ismount(out):
        return "is a mount point, which cannot be replaced"
    return None


def check_run_place(out: str | Path) -> None:
    """Refuse, before any work, an ``--out`` that :func:`run_place_problem` finds fault with, in one sentence.
    Commands that write their output only at the end call it before their own checks, so that ``--out .`` is
    not answered with a sentence about an existing folder."""
    problem = run_place_problem(out)
    if problem:
        raise OutputError(f"{out}: {problem}, and an output is written beside its place and moved there at the "
                          f"end; give a new folder inside it, such as --out {Path(out) / 'run'}.")


def is_run_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds a finished vdm3d run: a ``manifest.json`` that is a vdm3d run manifest (its
    ``format``), not merely a file of that name. ``manifest.json`` is a common name (a web app's, a browser
    extension's, a dataset's), and ``--overwrite`` deletes a run folder it replaces: a project folder passed
    as ``--out`` by mistake must not be taken for a run because it has one."""
    try:
        data = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):  # none, unreadable, or not JSON
        return False
    return isinstance(data, dict) and data.get("format") == "vdm3d.run"


def check_writable(path: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, an output location that cannot be created: one of its parents is a
    file, or the nearest existing parent folder is not writable. ``option`` names the flag to change."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{path}: cannot write there, because {parent} is a file, not a folder; "
                          f"choose another {option}.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: cannot write there, because the folder {parent} is not writable; "
                          f"choose another {option} or fix the folder's permissions.")


def check_new_output(path: str | Path, overwrite: bool, option: str = "--out", file: bool = False) -> None:
    """Refuse, before any work, an output ``path`` that exists unless ``overwrite`` (outputs are never
    replaced unasked); ``file``: the option writes one file (a report, a screenshot), so a folder there is
    refused even with ``overwrite`` (the write would fail only at the end). ``option`` names the flag."""
    path = Path(path)
    if file and path.is_dir():
        raise OutputError(f"{path}: is a folder, and {option} names a file to write; give {option} a file name.")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists; choose another {option} or pass --overwrite.")


def holds_state(folder: str | Path, tensors: str = "state.safetensors", meta: str = "state.json",
                key: str = "state") -> bool:
    """Whether the checkpoint folder ``folder`` holds a complete state: a ``tensors`` file with the JSON
    state in its safetensors metadata under ``key`` (one atomic file, so a process killed before it wrote
    ``meta`` still left a readable state), or an older checkpoint's tensors beside its ``meta`` JSON."""
    from safetensors import SafetensorError, safe_open

    folder = Path(folder)
    if not (folder / tensors).is_file():
        return False
    if (folder / meta).is_file():
        return True
    try:
        with safe_open(str(folder / tensors), framework="pt") as f:
            return key in (f.metadata() or {})
    except (OSError, SafetensorError):  # torn or not safetensors: the loader names it when asked
        return False


def replace_by_writing(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Make ``path`` by ``write(file)`` into a temp file of this process in the same folder (fsynced, with the
    usual permissions), renamed over ``path`` once complete: readers see the old file or the new one, never a
    part, and several processes writing one path at once (a shared cache) each write their own temp file, the
    last rename winning. The temp file is removed on any failure; errors are raised as they come."""
    replace_all_by_writing({path: write})


def replace_all_by_writing(writes: Mapping[Path, Callable[[BinaryIO], None]]) -> None:
    """:func:`replace_by_writing` for files that belong together (an OBJ, its MTL and its texture): every
    temp file is written whole before the first rename, in the order given, so a failing write (a full disk,
    an interrupt) leaves all the old files, not a new texture under an old OBJ's uv layout. Only the renames
    themselves, which need no space, come after the point of no return."""
    temps: list[tuple[str, Path]] = []
    try:
        for path, write in writes.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps.append((tmp, path))
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
            with os.fdopen(fd, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file so that readers see either the old content or the new, never a mix
    (:func:`replace_by_writing`); a full disk or a place that cannot be written is one sentence."""
    path = Path(path)
    check_writable(path, "output path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_by_writing(path, lambda f: f.write(data))
    except OSError as e:  # a full disk, a read-only mount: say where, not errno's traceback
        if e.errno in DISK_FULL:  # the old content stays; a run folder adds what it kept (RunFolder)
            raise DiskFullError(f"{path}: the disk is full ({e.strerror}); free space and run it again.") from e
        raise OutputError(f"{path}: cannot write there ({e.strerror or type(e).__name__}); "
                          "choose another output location.") from None


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=2) + "\n").encode())


def resume_target(out: Path | None, resume: Path | None, default: Path) -> Path:
    """The run folder of a job whose ``--resume RUN`` names the run it continues: ``resume``, else ``out``,
    else ``default``; an ``--out`` naming another folder than ``--resume`` is refused (it would be ignored)."""
    if resume is not None and out is not None and Path(out).resolve() != Path(resume).resolve():
        raise ConfigError(f"--out {out} and --resume {resume} name two runs; --resume continues the run in its "
                          "folder, so drop --out.")
    return Path(resume or out or default)


PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""the installed ``vdm3d`` package (its shipped weights are inputs of the runs that load them)"""
PACKAGE_PREFIX = "vdm3d:"


def input_name(path: Path) -> str:
    """How a manifest names an input file: as given, or ``vdm3d:models/tiny/weights/orbit.json`` for a file of
    the installed package, so that the same weights are the same input wherever vdm3d is installed (a
    resume after moving or reinstalling it, a rerun on another machine), and an upgrade that changes them
    is named as such."""
    try:
        inside = path.resolve().relative_to(PACKAGE_DIR)
    except (ValueError, OSError):
        return str(path)
    return PACKAGE_PREFIX + inside.as_posix()


def partial_folder(out: str | Path) -> Path:
    """Where a run that will end in ``out`` is written until it finishes: the hidden sibling
    ``.<name>.partial`` (its ``checkpoints/`` hold the state a resumed run continues from)."""
    out = Path(out)
    return out.parent / f".{out.name}.partial"


def check_name_length(out: Path, option: str = "--out") -> None:
    """Refuse a run folder name that the file system cannot hold with the partial folder's ``.`` and
    ``.partial`` around it (255 bytes on most file systems), before any work."""
    parent = out.parent if str(out.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:
        limit = os.pathconf(parent, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows) or no answer: the usual limit
        limit = 255
    size = len(os.fsencode(partial_folder(out).name))
    if size > limit:
        room = limit - (size - len(os.fsencode(out.name)))
        raise OutputError(f"{out}: the folder name is {len(os.fsencode(out.name))} bytes, and the run is written "
                          f"first to {partial_folder(out).name[:12]}...partial beside it, which this file system "
                          f"limits to {limit}; choose a {option} name of at most {room} bytes.")



_DISK_FULL_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "os error 122")


def disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or the error it was raised from) is a full disk or an exceeded quota: an ``OSError``
    with that errno, or a library's own error that says so (safetensors raises ``SafetensorError: ... No space
    left on device (os error 28)``)."""
    while exc is not None:
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in DISK_FULL):
            return True
        if not isinstance(exc, OSError) and any(text in str(exc) for text in _DISK_FULL_TEXT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


#: config fields (leaf names) whose value sets how much memory a run needs, in the order they are named:
#: a smaller value needs less; ``downscale`` is the one where a larger value needs less
MEMORY_FIELDS = ("resolution", "frames", "views", "max_gaussians", "num_points", "max_init_points", "batch",
                 "batch_size", "chunk", "mesh_resolution", "carve_resolution", "texture_size", "turntable_frames")


def memory_options(config: Any, most: int = 3) -> str:
    """The advice of an out-of-memory sentence: ``ask for less (a smaller --resolution, --frames or
    --max-gaussians)``, naming the options of ``config`` that set the run's memory as the command spells them
    (``--fit.downscale`` is "a larger")."""
    from vdm3d.option_names import options_of

    # a dataclass config, or a function command's dict of them (vdm3d train: {"task": ..., "loop": ...}, whose
    # options are --task.batch, ...)
    parts_of = config.items() if isinstance(config, dict) else [("", config)]
    by_leaf: dict[str, str] = {}
    changed: set[str] = set()  # those the user set: named first (the --resolution 1024 just typed)
    for key, part in parts_of:
        try:
            options = options_of(type(part))
        except Exception:  # noqa: BLE001 - not a dataclass: no flags to name
            continue
        for o in options:
            flag = "--" + (f"{key}." if key else "") + o.flag.replace("_", "-")
            by_leaf.setdefault(o.attrs[-1], flag)
            if o.attrs[-1] in MEMORY_FIELDS and not _default(part, o.attrs):
                changed.add(o.attrs[-1])
    order = sorted((f for f in MEMORY_FIELDS if f in by_leaf), key=lambda f: f not in changed)
    smaller = [by_leaf[f] for f in order][:most]
    larger = by_leaf.get("downscale")
    parts = ([f"a smaller {_or(smaller)}"] if smaller else []) + ([f"a larger {larger}"] if larger else [])
    return f"ask for less ({' or '.join(parts)})" if parts else "ask for less (a smaller size or count)"


def _default(config: Any, attrs: tuple[str, ...]) -> bool:
    """Whether the option at ``attrs`` has its field's default value (True when that cannot be told)."""
    try:
        obj = config
        for a in attrs[:-1]:
            obj = getattr(obj, a)
        field = {f.name: f for f in dataclasses.fields(obj)}[attrs[-1]]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            return True
        return getattr(obj, attrs[-1]) == default
    except Exception:  # noqa: BLE001 - not a dataclass or not comparable
        return True


def _or(flags: list[str]) -> str:
    return flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} or {flags[-1]}"


def _strerror(exc: BaseException) -> str:
    while exc.__cause__ is not None and not isinstance(exc, OSError):
        exc = exc.__cause__
    text = getattr(exc, "strerror", None)
    if text:
        return text
    return "Disk quota exceeded" if "quota" in str(exc) or "os error 122" in str(exc) else "No space left on device"


def lock_path(out: Path) -> Path:
    """The lock file of the run folder ``out`` (``.<name>.lock`` beside it; see :func:`lock_run`). ``.`` and ``..``
    are named from the folder above (``--out .`` in ``runs/cup`` locks ``runs/.cup.lock``): their own names
    would put a ``..lock`` inside the very folder, which then held a file the run had not written."""
    out = Path(out)
    if out.name in ("", ".."):
        out = Path(os.path.abspath(out))
    return out.parent / f".{out.name}.lock"


def _open_no_follow(path: str, flags: int) -> int:
    """``open``'s opener that refuses a symbolic link as the last part of ``path`` (``ELOOP``)."""
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o666)


def lock_run(out: Path) -> Any:
    """Hold an exclusive lock on writing ``out`` (the file ``.<name>.lock`` beside it, holding the pid): a
    second run into the same folder at the same time is refused instead of mixing its files into the
    first's. The lock is the operating system's (``flock``), so a killed run leaves none behind. None where
    the platform has no ``flock`` (Windows)."""
    try:
        import fcntl
    except ImportError:
        return None
    while True:
        try:  # never through a link: a planted `.NAME.lock -> ~/.bashrc` had that file truncated to our pid
            handle = open(lock_path(out), "a+", opener=_open_no_follow)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise OutputError(f"{lock_path(out)}: is a symbolic link where vdm3d keeps the lock file of "
                              f"{out} (the file it points to would be overwritten); remove the link and run "
                              "again.") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            pid = handle.read().strip()
            handle.close()
            who = f" (pid {pid})" if pid.isdigit() else ""
            error = OutputExistsError(f"{out}: another vdm3d run{who} is writing this folder now; wait for it to "
                                      "finish, or choose another --out.")
            error.pid = int(pid) if pid.isdigit() else None  # the holder, for a caller's own sentence (a batch)
            raise error from None
        # the holder may have removed the file (unlock_run) between our open and our flock: then we hold a
        # lock on a file nobody else can see, and a third run would lock a new one; lock the file there now
        try:
            same = os.path.samestat(os.fstat(handle.fileno()), os.stat(lock_path(out)))
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    try:  # the pid only names the holder in a refusal: a full disk must not fail the lock (the flock is it)
        os.write(handle.fileno(), str(os.getpid()).encode())
    except OSError:
        pass
    return handle


def unlock_run(handle: Any) -> None:
    """Release :func:`lock_run`'s lock and remove its file."""
    if handle is None:
        return
    Path(handle.name).unlink(missing_ok=True)
    handle.close()


class RunFolder:
    """Context manager for one run's output folder.

    >>> with RunFolder("runs/fern", config=cfg, seed=0, inputs=["data/fern"]) as run:  # doctest: +SKIP
    ...     save_ply(run.path / "splats.ply", gaussians)
    ...     run.record(perceptual="ms-ssim")

    Args:
        out: final folder; must not exist unless ``overwrite`` (it is replaced atomically at the end)
            or ``resume`` (an existing partial folder is continued).
        config: the frozen config dataclass of the command (stored in full).
        seed: the random seed, stored in the manifest.
        inputs: files or folders whose content determines the result; files are hashed.
        may_change: top-level config fields a resumed run may change (a trainer's ``loop``: more steps);
            any other difference from the interrupted run's options or input files refuses the resume.
        continue_from: a finished run's checkpoint folder that a resume continues (a trainer given more
            steps), copied into the partial folder once the resume has been accepted.
        resume_flag: how the command spells a resume in the messages (``--resume RUN`` for the jobs whose
            ``--resume`` names the run, fit and complete).
    """

    def __init__(self, out: str | Path, *, config: Any = None, seed: int | None = None,
                 inputs: Sequence[str | Path] = (), overwrite: bool = False, resume: bool = False,
                 command: list[str] | None = None, may_change: tuple[str, ...] = (), resume_flag: str = "--resume",
                 continue_from: str | Path | None = None):
        self.out = Path(out)
        self.partial = partial_folder(self.out)
        self.config, self.seed, self.inputs = config, seed, [Path(p) for p in inputs]
        self.overwrite, self.resume = overwrite, resume
        self.command = list(sys.argv) if command is None else command
        self.may_change = set(may_change)
        self.resume_flag = resume_flag
        self.continue_from = None if continue_from is None else Path(continue_from)
        self._made: list[Path] = []  # folders above the run that this run created (removed again on failure)
        self.extra: dict[str, Any] = {}
        self._keep_on_failure = False
        self._start = 0.0
        self._hashes: dict[str, str] | None = None
        self._started_with: Any = None  # the options in start.json (see _fingerprint)
        self._leg: dict[str, Any] = {"started": None, "threads": None, "code": None}  # this process's part
        self._earlier_legs: list[dict[str, Any]] = []  # those of the interrupted runs a resume continues
        self._start_record: dict[str, Any] = {}  # start.json without its legs
        self._lock: Any = None  # the open lock file while the run is being written

    # -- the folder being written ---------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.partial

    @property
    def checkpoint_dir(self) -> Path:
        """Where resumable state goes; saving anything here keeps the partial folder on failure."""
        self._keep_on_failure = True
        d = self.partial / "checkpoints"
        d.mkdir(parents=True, exist_ok=True)
        return d

    @property
    def resuming(self) -> bool:
        """True when a partial folder with checkpoints from an earlier attempt is being continued."""
        return self.resume and (self.partial / "checkpoints").is_dir()

    def save_stage(self, name: str, tensors: dict[str, Any], **meta: Any) -> None:
        """Checkpoint a finished stage: its tensors (safetensors) and JSON ``meta``, together with a
        fingerprint of the config, so that ``--resume`` skips the stage only for the same options."""
        from safetensors.torch import save

        meta = {"config": self._fingerprint(), **meta}
        blob = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                    metadata={"vdm3d": json.dumps(to_jsonable(meta))})
        atomic_write_bytes(self.checkpoint_dir / f"stage-{name}.safetensors", blob)

    def load_stage(self, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The tensors and meta of a stage an interrupted run finished, or ``None`` (not resuming, or
        the stage had not finished). Refuses a checkpoint made with other options."""
        path = self.partial / "checkpoints" / f"stage-{name}.safetensors"
        if not self.resuming or not path.is_file():
            return None
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("vdm3d", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception:  # noqa: BLE001 - a checkpoint cut short by a kill: redo the stage
            return None
        if meta.get("config") != self._fingerprint():
            raise ConfigError(f"{self.out}: the interrupted run there was started with other options; resume it "
                              "with the same options, or run without --resume (and --overwrite) to start again.")
        return tensors, meta

    def _fingerprint(self) -> str:
        """SHA-256 of the options the run started with (its ``start.json``; a resumed run keeps them, and
        its own were checked against them on entering, allowing paths spelled another way), without the
        fields that only say where and whether (``--out``, ``--resume``, ``--overwrite``)."""
        options = self._started_with if self._started_with is not None else self._options()
        return hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()

    def record(self, **fields: Any) -> None:
        """Add fields to the manifest (which perceptual loss ran, model hashes, timings...)."""
        self.extra.update(fields)

    # -- context protocol -----------------------------------------------------------------------
    def __enter__(self) -> "RunFolder":
        for p in self.inputs:
            if not p.exists():
                raise InputError(path=p, problem="does not exist", fix="check the path")
        if self.out.is_symlink():  # a link to a folder on another disk: the run goes there, the link stays
            self.out = self.out.resolve()
            self.partial = partial_folder(self.out)
        check_run_place(self.out)
        check_writable(self.out)
        check_name_length(self.out)
        if self.partial.is_symlink():  # vdm3d's own folder beside --out: a link would take the run (and its
            # removal on failure, a resume's writes) into the folder it points to
            raise OutputError(f"{self.partial}: is a symbolic link where vdm3d writes the run before moving "
                              f"it to {self.out}; remove the link and run again.")
        self._make_parents()
        try:
            self._lock = lock_run(self.out)
            self._enter()
        except BaseException:
            self._release()
            self._remove_made()
            raise
        return self

    def _enter(self) -> None:
        _USED.clear()  # what this run computes with, from here on
        self._check_replaceable()
        if self.resume and not self.partial.exists() and self.continue_from is None:
            raise InputError(f"{self.out}: --resume found no interrupted run to continue (no {self.partial.name} "
                             "beside it); run the same command without --resume to start one.")
        if self.resume and self.partial.is_dir():
            self._refuse_links_inside()
        if not self.resume and not self.overwrite and (self.partial / "checkpoints").is_dir():
            raise OutputExistsError(f"{self.out}: an interrupted run left its checkpoint in {self.partial}; pass "
                                    f"{self.resume_flag} to continue it, or --overwrite to discard it and start "
                                    "again.")
        start = {"options": self._options(), "inputs": self.input_hashes(), "cwd": os.getcwd()}
        if self.resume:
            self._check_same_run(start["inputs"])
        elif self.partial.exists():
            shutil.rmtree(self.partial)
        self.partial.mkdir(exist_ok=True)
        if self.resume and self.continue_from is not None and not (self.partial / "checkpoints").is_dir():
            shutil.copytree(self.continue_from, self.partial / "checkpoints")
        before = self._earlier_start()
        if before is not None and (self.partial / START).is_file():
            start = {k: v for k, v in before.items() if k != "legs"}  # the options the run started with
        self._earlier_legs = earlier_legs(before) if self.resuming else []
        self._start = time.time()
        self._leg = {"started": _local_time(self._start), "threads": current_threads(), "code": code_revision()}
        if self._earlier_legs:
            _warn_other_threads(self.out, self._earlier_legs, self._leg["threads"])
        self._start_record = start
        atomic_write_json(self.partial / START, {**start, "legs": [*self._earlier_legs, self._leg]})
        before = self._earlier_start()
        self._started_with = before.get("options") if before is not None else None

    def _refuse_links_inside(self) -> None:
        """Refuse to resume into a partial folder that holds a symbolic link anywhere inside it, before anything
        is written there: the resumed run would write through it (``checkpoints -> ~/somewhere``, a case folder
        linked elsewhere), outside ``out``. vdm3d makes no links in a run; one there was put by someone else.
        Starting again (``--overwrite``) removes the links, never what they point to."""
        links: list[Path] = []
        for root, dirs, files in os.walk(self.partial):  # a linked folder is listed, not entered
            links += [Path(root) / n for n in dirs + files if os.path.islink(os.path.join(root, n))]
        if links:
            first, more = sorted(links)[0], len(links) - 1
            others = f" (and the {_plural(more, 'other link')} there)" if more else ""
            raise OutputError(f"{first}: is a symbolic link inside the interrupted run's folder {self.partial}, "
                              f"through which the resumed run would write outside {self.out}; remove it{others}, "
                              "or run again without --resume (and with --overwrite) to start again.")

    def _make_parents(self) -> None:
        """Create the folders above the run that do not exist yet, remembering them (deepest first) so that a
        failed run removes them again."""
        parent = self.partial.parent
        while not parent.exists():
            self._made.append(parent)
            parent = parent.parent
        self.partial.parent.mkdir(parents=True, exist_ok=True)

    def _remove_made(self) -> None:
        for folder in self._made:  # deepest first: the folders made for --out, if still empty
            try:
                folder.rmdir()
            except OSError:
                break

    def _release(self) -> None:
        if self._lock is not None:
            unlock_run(self._lock)
            self._lock = None

    def _check_replaceable(self) -> None:
        """``out`` may be written: it does not exist, is an empty folder, or (with ``--overwrite``) holds a
        finished vdm3d run. ``--overwrite`` never deletes a folder vdm3d did not write: a typo in ``--out``
        must not cost a user their files."""
        if not self.out.exists() or (self.out.is_dir() and not any(self.out.iterdir())):
            return
        if not self.out.is_dir():
            raise OutputExistsError(f"{self.out}: is a file, not a run folder (and --overwrite replaces only run "
                                    "folders); choose another --out.")
        finished = is_run_folder(self.out)  # a vdm3d manifest, not any manifest.json
        if not self.overwrite and self.resume and finished:
            raise OutputExistsError(f"{self.out}: that run has finished (its {MANIFEST} is there), so there is "
                                    "nothing to resume; its results are there, and --overwrite instead of --resume "
                                    "runs it again from the start.")
        if not self.overwrite and finished:
            raise OutputExistsError(
                f"{self.out}: the output folder already exists; choose another --out or pass --overwrite.")
        if not finished:
            some = ", ".join(sorted(p.name for p in self.out.iterdir())[:2])
            if self.overwrite:
                held = (f"a {MANIFEST} that is not a vdm3d run's, and other files ({some})"
                        if (self.out / MANIFEST).is_file() else f"other files ({some})")
                raise OutputExistsError(f"{self.out}: --overwrite replaces only a folder a vdm3d run wrote (with "
                                        f"its {MANIFEST}), and this one holds {held}; choose another "
                                        "--out, or empty that folder yourself.")
            # without --overwrite, the sentence must not say it was given (a batch's case read as if it had been)
            raise OutputExistsError(f"{self.out}: the output folder already holds files that are not a vdm3d run "
                                    f"({some}); choose another --out, or empty that folder yourself (--overwrite "
                                    "replaces only a folder a vdm3d run wrote).")

    def _options(self, leave_out: tuple[str, ...] | set[str] = _HOW_NOT_WHAT) -> Any:
        """The config as JSON, without the top-level fields in ``leave_out``."""
        cfg = to_jsonable(self.config)
        return {k: v for k, v in cfg.items() if k not in leave_out} if isinstance(cfg, dict) else cfg

    def input_hashes(self) -> dict[str, str]:
        """SHA-256 of every input file (a folder's files, at most 2000), computed once, when the run starts;
        keyed by the path as given, or ``vdm3d:PATH`` for a file of the installed package (:func:`input_name`)."""
        if self._hashes is None:
            self._hashes = {}
            for p in self.inputs:
                files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
                for f in files[:2000]:
                    self._hashes[input_name(f)] = file_sha256(f)
        return self._hashes

    def _earlier_start(self) -> dict[str, Any] | None:
        """What the run being continued started with: its ``start.json``, or, for a finished run continued
        with more steps (a trainer's ``--resume``), its manifest's config and inputs; ``None`` when neither
        is there (a partial folder from before ``start.json`` existed)."""
        try:
            return json.loads((self.partial / START).read_text())
        except (OSError, ValueError):
            pass
        try:
            manifest = json.loads((self.out / MANIFEST).read_text())
        except (OSError, ValueError):
            return None
        options, now = manifest.get("config"), self._options()
        if isinstance(options, dict) and isinstance(now, dict):  # fields the command no longer has: not compared
            options = {k: v for k, v in options.items() if k in now}
        return {"options": options, "inputs": manifest.get("inputs", {}), "cwd": manifest.get("cwd"),
                "legs": manifest.get("legs") or [{k: manifest.get(k) for k in ("started", "seconds", "threads",
                                                                                "backends")}]}

    def _check_same_run(self, inputs: dict[str, str]) -> None:
        """Refuse to continue a run with other options, or input files other than ``inputs`` (their hashes now)."""
        before = self._earlier_start()
        if before is None:
            return
        leave_out = {*_HOW_NOT_WHAT, *self.may_change}
        before_options = before.get("options")
        if isinstance(before_options, dict):
            before_options = {k: v for k, v in before_options.items() if k not in leave_out}
        old_inputs, new_inputs = before.get("inputs", {}), inputs
        renamed: dict[str, str] = {}  # a path option spelled another way (from another folder) for the same thing
        for where, old, new in _differences(before_options, self._options(leave_out)):
            if _same_place(old, new, before.get("cwd"), old_inputs, new_inputs):
                renamed[old] = new
                continue
            flag = _flag(self.config, where) if where else ""
            what = f" (it had {flag} {json.dumps(old)}; this command gives {json.dumps(new)})" if where else ""
            raise ConfigError(f"{self.out}: the interrupted run there was started with other options{what}; "
                              "resume it with the same options, or run without --resume (and with --overwrite) "
                              "to start again.")
        old_inputs = {_respelled(name, renamed): h for name, h in old_inputs.items()}
        for name in sorted(set(old_inputs) | set(new_inputs)):
            if old_inputs.get(name) != new_inputs.get(name):
                what = ("changed" if name in new_inputs and name in old_inputs else
                        "is new" if name in new_inputs else "is gone")
                if name.startswith(PACKAGE_PREFIX):  # vdm3d's own weights: upgraded or retrained since
                    raise InputError(f"{self.out}: the interrupted run used other weights of vdm3d's own "
                                     f"({name[len(PACKAGE_PREFIX):]} {what}: vdm3d was upgraded or its models "
                                     "retrained since); run without --resume (and with --overwrite) to start "
                                     "again.")
                hub = fingerprint_record(name)  # a hub model's weights: name them, not the cache's record
                if hub is not None:
                    model, source = hub
                    said = {"changed": f"{model}'s weights in {source} changed since the interrupted run there "
                                       "started; put the original weights back",
                            "is new": f"{model}'s weights now load from {source}, not from where the interrupted "
                                      "run there loaded them; put them back where they were",
                            "is gone": f"the interrupted run there loaded {model}'s weights from {source}, and this "
                                       "one does not; put them back there"}[what]
                    raise InputError(f"{self.out}: {said}, or run without --resume (and with --overwrite) to "
                                     "start again.")
                raise InputError(path=name, problem=f"{what} since the interrupted run in {self.out} started",
                                 fix="put the original back, or run without --resume (and with --overwrite) "
                                     "to start again")

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            return self._exit(exc)
        finally:
            self._release()

    def _exit(self, exc: BaseException | None) -> bool:
        if exc is not None:
            # a resumed run never loses the checkpoints it started from; a new one keeps those it wrote
            # unless the same command would fail the same way again
            keep = self.resuming or (self._keep_on_failure and self._wrote_state()
                                     and not isinstance(exc, WORTHLESS_CHECKPOINT))
            if not keep:
                shutil.rmtree(self.partial, ignore_errors=True)
                self._release()  # its lock file too, so that the folders made for it are empty
                self._remove_made()
            if keep:
                self._save_leg()
            outcome = (f"the checkpoint in {self.partial} is kept; the same command with {self.resume_flag} "
                       "continues from it" if keep else
                       f"no checkpoint had been written yet, so nothing of {self.out} was kept")
            if isinstance(exc, KeyboardInterrupt):  # Ctrl-C or SIGTERM: say what is left (cli.main prints it)
                exc.outcome = outcome
            if not isinstance(exc, Vdm3dError) and (detail := out_of_memory(exc)) is not None:
                less = memory_options(self.config)
                then = (f"the checkpoint in {self.partial} is kept: close other programs and run the same command "
                        f"with {self.resume_flag}, or {less} with --overwrite to start again" if keep else
                        f"nothing of {self.out} was kept: {less}, or close other programs, and run it again")
                raise OutOfMemoryError(f"{self.out}: ran out of memory{' ' + detail if detail else ''}; "
                                       f"{then}.") from exc
            if disk_full(exc):
                then = (f"the checkpoint in {self.partial} is kept: free space, then run the same command with "
                        f"{self.resume_flag} to continue from it" if keep else
                        f"nothing of {self.out} was kept: free space and run it again")
                raise DiskFullError(f"{self.out}: the disk is full ({_strerror(exc)}); {then}.") from exc
            return False
        (self.partial / START).unlink(missing_ok=True)  # only an unfinished run needs it
        atomic_write_json(self.partial / MANIFEST, self.manifest())
        try:
            if self.out.exists():
                trash = self.out.parent / f".{self.out.name}.old"
                if trash.is_symlink():  # only the link goes (rmtree leaves it; the rename below then failed)
                    trash.unlink()
                shutil.rmtree(trash, ignore_errors=True)
                os.replace(self.out, trash)
                try:
                    os.replace(self.partial, self.out)
                except OSError:
                    os.replace(trash, self.out)  # the earlier run goes back where it was
                    raise
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(self.partial, self.out)
        except OSError as e:  # a folder that cannot be renamed (EBUSY: a mount point, in use; EXDEV): the run is
            # complete in its partial folder, which is kept, and said, instead of a traceback
            if e.errno not in (errno.EBUSY, errno.EXDEV, errno.EACCES, errno.EPERM, errno.ENOTEMPTY, errno.EEXIST):
                raise
            raise OutputError(f"{self.out}: the finished run could not be moved there ({e.strerror}); it is complete "
                              f"in {self.partial}: move that folder where you want it, or choose another --out "
                              "next time.") from None
        return False

    def _wrote_state(self) -> bool:
        """Whether the partial folder holds anything a resume continues from: a file under ``checkpoints/``, or
        what a job keeps beside it (``vdm3d data make``'s finished cases). A run whose first checkpoint did not
        get written (a full disk) has only ``start.json`` and an empty ``checkpoints/``: keeping that said "the
        checkpoint ... is kept ... --resume", and the resume started from zero."""
        try:
            for entry in self.partial.iterdir():
                if entry.name == "checkpoints":
                    if any(p.is_file() for p in entry.rglob("*")):
                        return True
                elif entry.name != START:
                    return True
        except OSError:
            return True  # cannot tell: keep what is there
        return False

    def _this_leg(self) -> dict[str, Any]:
        """This process's part of the run: when it started, its seconds, threads, rasterizer and code."""
        return {**self._leg, "seconds": round(time.time() - self._start, 3),
                "backends": {kind: sorted(names) for kind, names in sorted(_USED.items())}}

    def _save_leg(self) -> None:
        """Record this leg, complete, in ``start.json``, for the resume that continues it (a killed process
        leaves the leg's start there, with ``seconds`` null)."""
        try:
            atomic_write_json(self.partial / START, {**self._start_record,
                                                      "legs": [*self._earlier_legs, self._this_leg()]})
        except Exception:  # noqa: BLE001 - a full disk: the failure being handled is the one to report
            pass

    def manifest(self) -> dict[str, Any]:
        hashes = self.input_hashes()
        legs = [*self._earlier_legs, self._this_leg()]
        backends: dict[str, set[str]] = {}
        for leg in legs:  # every leg's: a resumed run's rasterizer may not be the interrupted one's
            for kind, names in (leg.get("backends") or {}).items():
                backends.setdefault(kind, set()).update(names)
        return {
            "format": "vdm3d.run",
            "version": 1,
            "command": self.command,
            "cwd": os.getcwd(),  # relative paths in the command and config start here (vdm3d rerun)
            "config": to_jsonable(self.config),
            "config_type": type(self.config).__qualname__ if self.config is not None else None,
            "seed": self.seed,
            "packages": package_versions(),
            "code": self._leg["code"],  # the git revision of a checkout (outputs change between commits)
            "threads": current_threads(),  # CPU results depend on it (vdm3d rerun applies it); per leg in legs
            "backends": {kind: sorted(names) for kind, names in sorted(backends.items())},
            "inputs": hashes,
            "models": recorded_models(hashes),  # where each hub model's weights were: the run folder alone says it
            "started": next((leg["started"] for leg in legs if leg.get("started")), self._leg["started"]),
            "seconds": round(sum(leg.get("seconds") or 0.0 for leg in legs), 3),  # every leg's, not the last's
            "legs": legs,  # one per process that worked on the run: an interrupted run and each resume
            "platform": platform.platform(),
            "cpu": cpu_record(),
            **to_jsonable(self.extra),
        }


def _local_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(seconds))


def earlier_legs(start: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The legs recorded by the run a resume continues (its ``start.json``, or a finished run's manifest); one
    leg of unknown settings for a partial folder from before legs were recorded."""
    legs = (start or {}).get("legs")
    if isinstance(legs, list):
        return [leg for leg in legs if isinstance(leg, dict)]
    return [{"started": None, "seconds": None, "threads": None}]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _warn_other_threads(out: Path, legs: list[dict[str, Any]], threads: int | None) -> None:
    """Say, in one line, that a resume runs at another thread count than the run it continues: CPU reductions
    (and so explore's chunks, which build on each other) come out otherwise, and the result then matches
    neither an uninterrupted run at the old count nor one at the new."""
    before = next((leg["threads"] for leg in reversed(legs) if isinstance(leg.get("threads"), int)), None)
    if before is None or threads is None or before == threads:
        return
    print(f"warning: {out}: the interrupted run used {_plural(before, 'thread')} and this resume uses {threads}, "
          f"so the result can differ from an uninterrupted run at either count (the manifest records both); "
          f"resume with `vdm3d --threads {before} ...` to continue as it started.", file=sys.stderr, flush=True)


def _differences(old: Any, new: Any, where: str = "") -> Iterator[tuple[str, Any, Any]]:
    """The places (dotted field path, old value, new value) where two JSON configs differ, in order."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            yield from _differences(old.get(key), new.get(key), f"{where}.{key}" if where else key)
    elif old != new:
        yield where, old, new


def _flag(config: Any, where: str) -> str:
    """The flag that sets the config field at the dotted path ``where``, as the command spells it (``--steps``
    for ``fit.steps`` in `vdm3d fit`, whose nested options have no prefix; ``--baseline.steps`` in complete)."""
    from vdm3d.option_names import options_of

    try:
        flags = {".".join(o.attrs): o.flag for o in options_of(type(config))}
    except Exception:  # noqa: BLE001 - not a dataclass, or hints that do not resolve: the field's own spelling
        flags = {}
    return "--" + flags.get(where, where).replace("_", "-")


def _under(name: str, root: str) -> str | None:
    """``name`` relative to ``root`` when it is ``root`` or inside it (as spelled), else None."""
    if name == root:
        return ""
    prefix = root.rstrip("/\\") + os.sep
    return name[len(prefix):] if name.startswith(prefix) else None


def _same_place(old: Any, new: Any, old_cwd: str | None, old_inputs: dict[str, str],
                new_inputs: dict[str, str]) -> bool:
    """Whether a path option's old and new spellings name the same thing: the same file or folder (the old
    spelling taken from the interrupted run's working directory), or input files of the same content (the
    project moved or copied elsewhere, or the run resumed from another folder)."""
    if not (isinstance(old, str) and isinstance(new, str)) or not old or not new:
        return False
    if old_cwd is not None and (Path(old_cwd) / Path(old).expanduser()).resolve() == Path(new).expanduser().resolve():
        return True
    files_old = {rel: h for name, h in old_inputs.items() if (rel := _under(name, old)) is not None}
    files_new = {rel: h for name, h in new_inputs.items() if (rel := _under(name, new)) is not None}
    return bool(files_old) and files_old == files_new


def _respelled(name: str, renamed: dict[str, str]) -> str:
    """An input file's name with a path option's old spelling replaced by its new one."""
    for old, new in renamed.items():
        rel = _under(name, old)
        if rel is not None:
            return new if rel == "" else os.path.join(new, rel)
    return name
