"""Run the cases of a batch on Ray (or one after another), skipping finished ones, resuming broken ones.

Each case is one ``vdm3d --threads N <job> ...`` process with its own run folder (``N``: the CPUs each
case is given, ``cpus_per_case``), so a case that fails or is killed takes nothing else with it, and a
case behaves exactly as the same command typed by hand, which its log and manifest record (the global
``--threads N`` included: CPU results depend on the thread count, explore's video most).
Before running, every case's folder says where it stands (:func:`case_state`):

* ``done``: ``<out>/manifest.json`` exists (a run folder appears only when complete) -> skipped; when
  the case's options are no longer those its manifest recorded, the summary says so (``--overwrite``
  runs it again);
* ``resume``: the hidden partial folder ``.<name>.partial/`` holds ``checkpoints/`` -> run with the
  job's ``--resume`` (a flag, or ``--resume <out>`` where the job takes the run folder);
* ``restart``: a partial folder without checkpoints (killed before its first checkpoint) -> run again
  from the start (the job clears the partial folder);
  (a job cannot resume with other options: it refuses, and the case's error says which option differs)
* ``todo``: nothing yet.

On Ray, ``ray.init(num_cpus=...)`` starts a local instance, or ``address`` joins a cluster (every
node needs vdm3d installed and the inputs at the same paths); each case is a task asking for
``cpus_per_case`` CPUs, and its process gets as many torch threads; with ``gpus_per_case`` (fractions share
a GPU) it asks for GPUs too, Ray sets its ``CUDA_VISIBLE_DEVICES``, and a job with hub backbones
(:data:`DEVICE_JOBS`) runs them there (``--device cuda``, unless the case names a device). The case's process stops with
the worker that runs it (Linux ``PR_SET_PDEATHSIG`` sends it SIGTERM), so killing the batch leaves no
stray job behind; it stops as a stopped command does, keeping its checkpoint, because it runs in its own
process group and Ray's kill of a worker's children is turned off (Ray would SIGKILL it with the worker).
Each case's output goes to ``<batch out>/logs/<name>.log``; ``<batch out>/batch.json`` holds the summary.

Stopping the batch (Ctrl-C, SIGTERM, SIGHUP) stops its running cases the same way and waits for them to
keep their checkpoints; :func:`run_cases` then raises the interrupt with ``results`` (the finished cases,
the stopped ones with whether their checkpoint is kept, those not started) and ``outcome``, the sentence
the CLI prints: the same ``vdm3d batch`` command continues from there.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Literal, NamedTuple

from vdm3d.batch.cases import Case
from vdm3d.errors import STOP_SIGNALS, ConfigError, DiskFullError, OutputError, OutputExistsError, Vdm3dError
from vdm3d.io.runs import (MANIFEST, atomic_write_json, check_writable, disk_full, is_run_folder, lock_path, lock_run,
                           partial_folder, unlock_run)

State = Literal["done", "resume", "restart", "todo"]


@dataclasses.dataclass
class CaseResult:
    name: str
    job: str
    state: State  # where the case stood before this batch
    # interrupted: running when the batch was stopped; not run: the batch was stopped before it started
    status: Literal["skipped", "ok", "failed", "interrupted", "not run"]
    seconds: float
    out: str
    returncode: int | None = None
    # the last line the case printed, when it failed; a note, when a skipped case has one; what was kept of
    # an interrupted case ("was stopped and its checkpoint in runs/.b.partial is kept")
    error: str = ""
    # the traceback a failed case printed, under --debug (its log keeps it too; batch.json does not)
    traceback: str = ""


class Outcome(NamedTuple):
    """What :func:`run_command` returns for a case that ran."""

    returncode: int
    seconds: float
    last: str  # the line that says why it failed (:func:`last_words`), "" when it did not
    traceback: str = ""  # its traceback, when it failed under --debug (:func:`last_traceback`)


def case_state(case: Case) -> State:
    """Where a case stands: ``done`` when its folder holds a vdm3d run (:func:`~vdm3d.io.runs.is_run_folder`,
    not any ``manifest.json``: a folder of someone else's files with one is the job's to refuse, by name, rather
    than a case skipped in silence), ``resume`` / ``restart`` by its partial folder, else ``todo``."""
    out = Path(case.out)
    if is_run_folder(out):
        return "done"
    partial = partial_folder(out)
    if (partial / "checkpoints").is_dir():
        return "resume"
    return "restart" if partial.exists() else "todo"


def _what_it_runs(argv: list[str]) -> list[str]:
    """A job's arguments without those that say whether to resume or overwrite, nor the global ``--threads N``
    (the batch's ``--cpus-per-case``, recorded in the manifest's command since it is given to each case)."""
    kept, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a in ("--resume", "--threads"):
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("--")  # ``--resume RUN``, ``--threads N``
            continue
        if a.startswith("--threads="):
            continue
        if a not in ("--overwrite", "--no-resume", "--no-overwrite"):
            kept.append(a)
    return kept


def options_changed(case: Case) -> bool:
    """The case's command differs from the one its finished run recorded in its manifest."""
    try:
        recorded = json.loads((Path(case.out) / MANIFEST).read_text())["command"][1:]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return _what_it_runs(list(recorded)) != _what_it_runs([case.job, *case.command()])


@functools.lru_cache(maxsize=None)
def resume_style(job: str) -> Literal["flag", "path", "none"]:
    """How ``vdm3d <job>`` resumes, read from its ``--help``: ``--resume`` alone, ``--resume RUN``, or not."""
    proc = subprocess.run([sys.executable, "-m", "vdm3d.cli.main", job, "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=300)
    text = proc.stdout
    if re.search(r"--resume[ ,|]*--no-resume|--no-resume", text):
        return "flag"
    if re.search(r"--resume \S*PATH", text):
        return "path"
    return "none"


DEVICE_JOBS = ("object", "explore", "complete", "stylize", "eval")
"""the commands whose hub backbones ``--device`` places (a case given GPUs runs them there)"""


def command_for(case: Case, state: State, overwrite: bool = False, device: str | None = None) -> list[str]:
    """``vdm3d`` arguments that run ``case`` from where it stands; ``device``: a case given GPUs runs its hub
    backbones there (``--device``), unless its own options name a device."""
    argv = [case.job, *case.command()]
    if device and case.job in DEVICE_JOBS and not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv += ["--device", device]
    if state == "resume":
        style = resume_style(case.job)
        if style == "flag":
            argv.append("--resume")
        elif style == "path":
            argv += ["--resume", str(case.out)]
        else:  # the job cannot resume: start again, discarding the checkpoint it cannot use
            overwrite = True
    if overwrite:
        argv.append("--overwrite")
    return argv


def _die_with_parent() -> None:  # runs in the child before exec (Linux); elsewhere a no-op
    # A Ray worker runs tasks with SIGINT blocked, and a child inherits the mask: the case would never see
    # Ctrl-C (nor the batch's SIGINT when it is stopped); it runs as the same command typed by hand would.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_command(argv: list[str], log: str, threads: int, driver_pid: int | None = None,
                debug: bool = False) -> Outcome:
    """Run ``vdm3d --threads <threads> <argv>`` in a new process, appending its output to ``log``: its
    :class:`Outcome`. The thread count is given on the command line, not only in the environment, so that
    the command the case's manifest records, typed by hand, runs as the case did (the default, all cores, gave
    another explore video).

    ``driver_pid`` is the batch command's own process when the case runs on this machine: Ray's workers
    outlive a killed driver for a while, so the case is stopped as soon as the driver is gone (it then
    resumes or restarts on the next ``vdm3d batch``), instead of finishing unseen in the background.

    ``debug``: the batch was given ``--debug``, which the case gets as ``VDM3D_DEBUG=1`` (its log then holds the
    traceback of its failure, which comes back too: on a cluster the log is on the worker's machine); not on
    its command line, which its manifest records for ``vdm3d rerun``.
    """
    if (Path(log).parent / STOPPING).exists():  # the batch is being stopped: a case queued on Ray does not start
        return Outcome(128 + signal.SIGTERM, 0.0, "not started: the batch was stopped")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    if debug:
        env["VDM3D_DEBUG"] = "1"
    argv = ["--threads", str(threads), *argv]
    start = time.time()
    with _open_log(Path(log), f"\n$ vdm3d {' '.join(argv)}\n") as f:
        proc = subprocess.Popen([sys.executable, "-m", "vdm3d.cli.main", *argv], stdout=f, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                                start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if driver_pid is not None and not _alive(driver_pid):
                        proc.terminate()
                        proc.wait()
                        break
        except KeyboardInterrupt as e:  # the batch is being stopped: stop the case too, and let it keep its state
            stop_case(proc, getattr(e, "signum", signal.SIGINT))
            raise
    last = trace = ""
    if proc.returncode:
        text = Path(log).read_text(encoding="utf-8", errors="replace")
        last = last_words(text)
        trace = last_traceback(text, last) if debug else ""
    return Outcome(proc.returncode, round(time.time() - start, 2), last, trace)


def _open_log(log: Path, first: str):
    """The case's log, opened for appending with ``first`` (its command) written. A full disk is one sentence
    naming the logs folder (:class:`~vdm3d.errors.DiskFullError`; it was "an output file", and on Ray a
    RayTaskError with its traceback in colour), and stops the batch: every next case would fail the same way."""
    try:
        log.parent.mkdir(parents=True, exist_ok=True)
        f = open(log, "a", encoding="utf-8")
        try:
            f.write(first)
            f.flush()
        except OSError:
            try:
                f.close()  # flushes again, fails again, and closes the file all the same
            except OSError:
                pass
            raise
    except OSError as e:
        if not disk_full(e):
            raise
        raise DiskFullError(f"{log.parent}: the disk is full ({e.strerror}) while writing the log of case "
                            f"{log.stem}; free space there, then run the same command again: it skips the "
                            "finished cases.") from None
    return f


STOPPING = ".stopping"  # in the logs folder while a stopped batch waits for its cases: no case starts then
STOP_WAIT_S = 120.0  # how long a stopped case may take to keep its checkpoint (or remove its folder)


def stop_case(proc: subprocess.Popen, signum: int) -> None:
    """Stop a case's process with the signal that stopped the batch, and wait until it has kept its checkpoint
    (a case reached by the same Ctrl-C ignores the second signal); SIGKILL after :data:`STOP_WAIT_S`, which
    keeps whatever checkpoint was written."""
    if proc.poll() is None:
        try:
            proc.send_signal(signum)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _lock_holder(out: Path) -> int | None:
    """The process writing the run folder ``out`` now: the pid in its lock file (``.<name>.lock`` beside it,
    :func:`vdm3d.io.runs.lock_run`) while the lock is held; None when nobody holds it (or no ``flock``)."""
    try:
        import fcntl
    except ImportError:
        return None
    try:
        with open(lock_path(out), encoding="utf-8") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None  # free: the run has ended (a killed one leaves the file)
            except OSError:
                pid = f.read().strip()
                return int(pid) if pid.isdigit() else -1
    except OSError:
        return None


def signal_writer(out: Path, signum: int) -> None:
    """Send ``signum`` to the process writing the run folder ``out`` on this machine, if one is."""
    pid = _lock_holder(out)
    if pid is not None and pid > 0:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def wait_until_written(out: Path, timeout: float = STOP_WAIT_S) -> None:
    """Wait until no process holds the lock a run folder keeps while it is written (``.<name>.lock`` beside
    ``out``, :func:`vdm3d.io.runs.lock_run`), and the process that held it has exited: a case stopped on a Ray
    worker keeps its checkpoint (or removes its partial folder) and says so before that. Returns at once where
    there is no such lock or no ``flock``."""
    end, writer = time.time() + timeout, None
    while (holder := _lock_holder(out)) is not None and time.time() < end:
        writer = holder if holder > 0 else writer
        time.sleep(0.2)
    # the lock goes when the run folder is left; the process then says what it kept (its log's last line)
    # and exits: wait for that too, before Ray's shutdown ends its workers
    while writer is not None and _alive(writer) and time.time() < end:
        time.sleep(0.1)


def stopped_case(case: Case, state: State, started: bool, since: float) -> CaseResult:
    """The result of a case that had not finished when the batch was stopped, read from its folders: not
    started, finished after all, or stopped, with its checkpoint kept (``.<name>.partial/checkpoints``) or not."""
    out = Path(case.out)
    if not started:
        return CaseResult(case.name, case.job, state, "not run", 0.0, str(out))
    manifest = out / MANIFEST
    seconds = round(time.time() - since, 2)
    if manifest.is_file() and manifest.stat().st_mtime >= since:  # it finished as the batch was stopped
        return CaseResult(case.name, case.job, state, "ok", seconds, str(out), 0)
    partial = partial_folder(out)
    note = (f"was stopped and its checkpoint in {partial} is kept" if (partial / "checkpoints").is_dir() else
            "was stopped before its first checkpoint, so it starts again")
    return CaseResult(case.name, case.job, state, "interrupted", seconds, str(out), error=note)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def interrupted_outcome(results: list[CaseResult], again: str = "the same command") -> str:
    """What a stopped batch leaves, as the CLI prints it after ``interrupted by SIGINT: ``: the cases done,
    failed, stopped (and whether each kept its checkpoint), not started, and that ``again`` continues."""
    def listed(status: tuple[str, ...], one: str, many: str) -> list[str]:
        names = [r.name for r in results if r.status in status]
        return [f"{_names(names)} {one if len(names) == 1 else many}"] if names else []

    parts = listed(("ok", "skipped"), "is done", "are done") + listed(("failed",), "failed", "failed")
    parts += [f"{r.name} {r.error}" for r in results if r.status == "interrupted"]
    parts += listed(("not run",), "did not start", "did not start")
    return f"{', '.join(parts)}; {again} continues from there, skipping the finished cases"


_BOX = "│┃╭╮╰╯─━┌┐└┘├┤ "  # the frame tyro draws around a usage error


def last_words(text: str) -> str:
    """The line of a case's output that says why it failed: its last line, or, when the output ends with
    the box tyro draws around a usage error, the box's first line of text (not its bottom border)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tops = [i for i, ln in enumerate(lines) if ln.startswith("╭")]
    if tops and lines[-1].startswith("╰"):
        inside = [ln.strip(_BOX) for ln in lines[tops[-1] + 1:-1]]
        lines = [ln for ln in inside if any(c.isalnum() for c in ln)][:1] or lines
    return lines[-1] if lines else ""


def last_traceback(text: str, last: str = "") -> str:
    """The traceback in a case's log from its latest run (after the last ``$ vdm3d`` line that starts one),
    from its first ``Traceback`` line (a chained one has several) to the end, without the closing ``last``
    line the batch shows already; "" when that run printed none."""
    run = text[text.rfind("\n$ vdm3d ") + 1:]
    start = run.find("Traceback (most recent call last):")
    if start < 0:
        return ""
    lines = run[start:].rstrip().splitlines()
    if len(lines) > 1 and lines[-1].strip() == last:
        lines = lines[:-1]
    return "\n".join(lines)


Report = Callable[[CaseResult, int, int], None]


def print_case(result: CaseResult, done: int, total: int) -> None:
    """The :data:`Report` of the ``vdm3d batch`` and ``vdm3d eval --manifest`` commands: one line a case on stdout
    (``[3/20] cup: ok in 41.2 s``, a failure's reason in brackets) and, under ``--debug``, the failed case's
    traceback on stderr, each line under the case's name, as a command's own ``--debug`` shows it."""
    print(f"[{done}/{total}] {result.name}: {result.status} in {result.seconds:.1f} s"
          + (f" ({result.error})" if result.status == "failed" else ""), flush=True)
    if result.traceback:
        first, *rest = result.traceback.splitlines()
        print("\n".join([f"{result.name}: {first}", *(f"  {line}" for line in rest)]), file=sys.stderr, flush=True)


def debugging() -> bool:
    """Whether the batch was given ``--debug`` (or ``VDM3D_DEBUG=1``): ``vdm3d``'s main takes the flag off the
    arguments before the command sees them and sets ``VDM3D_DEBUG=1`` while it runs (reading ``sys.argv``
    missed a ``main([..., "--debug"])`` called in-process, and took another program's ``--debug`` for it)."""
    return os.environ.get("VDM3D_DEBUG") == "1"


def _name_the_signal(e: KeyboardInterrupt) -> None:
    """Give ``e`` the number of the signal that stopped the batch: Ray's wait raises a plain KeyboardInterrupt
    in place of the handler's :class:`~vdm3d.errors.Interrupted`, and the CLI would report SIGTERM as SIGINT."""
    from vdm3d import errors

    if getattr(e, "signum", None) is None:
        e.signum = errors.pending_signal or signal.SIGINT


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def run_cases(cases: list[Case], logs: Path, *, use_ray: bool = True, address: str | None = None,
              num_cpus: int | None = None, cpus_per_case: int = 1, gpus_per_case: float = 0.0,
              overwrite: bool = False, report: Report | None = None,
              again: str = "the same command") -> list[CaseResult]:
    """Run every case that is not done; returns one result per case, in manifest order.

    When the batch is stopped (KeyboardInterrupt, or :class:`~vdm3d.errors.Interrupted`), the running cases
    are stopped and waited for, and the interrupt is raised again with ``results`` (one per case, in manifest
    order) and ``outcome`` (:func:`interrupted_outcome`, saying that ``again`` continues) set on it."""
    results: dict[str, CaseResult] = {}
    pending: list[tuple[Case, State, list[str]]] = []
    debug = debugging()
    for case in cases:
        state = "todo" if overwrite else case_state(case)
        if state == "done":
            note = ("its options differ from those of its finished run; `vdm3d batch ... --overwrite` runs it again"
                    if options_changed(case) else "")
            results[case.name] = CaseResult(case.name, case.job, state, "skipped", 0.0, str(case.out), error=note)
        else:
            pending.append((case, state, command_for(case, state, overwrite=overwrite and Path(case.out).exists(),
                                                     device="cuda" if gpus_per_case else None)))
    done_count = [len(results)]

    def finish(case: Case, state: State, outcome: tuple) -> None:
        rc, seconds, last, trace = Outcome(*outcome)  # a worker's death is (1, 0.0, why): no traceback
        results[case.name] = CaseResult(case.name, case.job, state, "ok" if rc == 0 else "failed", seconds,
                                        str(case.out), rc, last, trace)
        done_count[0] += 1
        if report:
            report(results[case.name], done_count[0], len(cases))

    (logs / STOPPING).unlink(missing_ok=True)  # left by a batch killed while it stopped
    batch_start = time.time()
    began: dict[str, float] = {}  # when each case started (on Ray: when the batch did)
    logged = {case.name: _log_size(logs / f"{case.name}.log") for case, _, _ in pending}  # a case that starts logs
    def started(case: Case) -> bool:
        return _log_size(logs / f"{case.name}.log") > logged[case.name]

    def stopping(signum: int) -> None:  # on a local Ray: stop the running cases, let them keep their checkpoints
        logs.mkdir(parents=True, exist_ok=True)
        (logs / STOPPING).touch()  # Ray would start the next queued case as soon as a worker is free
        running = [Path(case.out) for case, _, _ in pending if case.name not in results and started(case)]
        for out in running:
            signal_writer(out, signum)
        for out in running:
            wait_until_written(out)

    try:
        if pending and use_ray:
            _run_on_ray(pending, logs, address, num_cpus, cpus_per_case, finish, stopping, debug, gpus_per_case)
        else:
            for case, state, argv in pending:
                began[case.name] = time.time()
                finish(case, state, run_command(argv, str(logs / f"{case.name}.log"), cpus_per_case, debug=debug))
    except KeyboardInterrupt as e:
        _name_the_signal(e)
        for case, state, _ in pending:
            if case.name in results:
                continue
            results[case.name] = stopped_case(case, state, started(case), began.get(case.name, batch_start))
        (logs / STOPPING).unlink(missing_ok=True)
        e.results = [results[c.name] for c in cases]
        e.outcome = interrupted_outcome(e.results, again)
        raise
    return [results[c.name] for c in cases]


ADDRESS_TIMEOUT_S = 5.0  # how long --address host:port may take to answer before the batch gives up


def check_address(address: str | None) -> None:
    """Refuse, in one sentence and within seconds, a ``host:port`` ``--address`` where nothing answers: Ray
    itself retried for minutes, printing its connection warnings. ``ray://`` and ``auto`` are left to Ray
    (a client server, a cluster found from this machine's own Ray files)."""
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as e:
        why = f"no answer within {ADDRESS_TIMEOUT_S:g} s" if isinstance(e, TimeoutError) else e.strerror or str(e)
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({why}); start one on that machine "
                          "(`ray start --head`) and give its address, or leave --address out to start Ray on this "
                          "machine.") from None


def _run_on_ray(pending, logs: Path, address: str | None, num_cpus: int | None, cpus_per_case: int, finish,
                stopping: Callable[[int], None] | None = None, debug: bool = False,
                gpus_per_case: float = 0.0) -> None:
    import ray

    # ray.init puts its own handlers on SIGTERM (Python's sys.exit, then its core worker's crash reporter,
    # which printed a stack dump and ended the batch by SIGABRT): vdm3d's go back on after it, so that
    # SIGTERM stops the batch as Ctrl-C does. Ray has no option to leave a driver's signals alone.
    main_thread = threading.current_thread() is threading.main_thread()
    handlers = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS} if main_thread else {}
    # Ray's own INFO and WARNING lines ("Started a local Ray instance", its token-authentication notice) are
    # not the user's business: only its errors reach the terminal. The cases' output is in their logs
    # (log_to_driver off), and a failed case's last line comes back as the task's result.
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address:
        ray.init(address=address, **quiet)
    else:
        # A worker that exits (Ray's shutdown, its raylet stopped by the same signal) kills its child, the
        # case, at once, by default: the case would lose its last words and the checkpoint it was writing.
        # Off, the case gets SIGTERM from the worker's death instead (_die_with_parent) and stops as it should.
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **quiet,
                 _system_config={"kill_child_processes_on_worker_exit": False})
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)
    refs: dict = {}
    try:
        # a case given GPUs gets them from Ray, which sets its CUDA_VISIBLE_DEVICES: its "cuda" is its own GPU
        task = ray.remote(num_cpus=cpus_per_case, num_gpus=gpus_per_case, max_retries=0)(run_command)
        refs = {task.remote(argv, str(logs.resolve() / f"{case.name}.log"), cpus_per_case,
                             None if address else os.getpid(), debug=debug): (case, state)
                for case, state, argv in pending}
        while refs:
            # a timeout: back in Python every second, where a signal's handler runs (a wait in Ray's C++
            # would leave SIGTERM unhandled while Ray's own processes, stopped by the same signal, are gone)
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
            for ref in ready:
                case, state = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # the worker died (out of memory, node lost)
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, Vdm3dError):  # run_command's own sentence (a full disk): as without Ray
                        raise cause from None
                    outcome = (1, 0.0, _ANSI.sub("", f"ray task failed: {type(e).__name__}: {e}").splitlines()[0])
                finish(case, state, outcome)
    except KeyboardInterrupt as e:
        _name_the_signal(e)
        # Stop the running cases and wait until they have kept their checkpoints before shutting Ray down,
        # which kills the workers and, with them, the cases' processes. On this machine each case's process
        # is signalled directly (through Ray the call would wait on Ray's own processes, which the same
        # Ctrl-C or SIGTERM to the process group has stopped); on a cluster its task is cancelled.
        if address:
            for ref in refs:
                try:
                    ray.cancel(ref)
                except Exception:  # noqa: BLE001 - shutting down below stops them anyway
                    pass
        elif stopping is not None:
            stopping(getattr(e, "signum", signal.SIGINT))
        raise
    finally:
        ray.shutdown()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the colours Ray puts in an error's text


def write_summary(path: Path, results: list[CaseResult], manifest: str) -> None:
    atomic_write_json(path, {"format": "vdm3d.batch", "version": 1, "manifest": manifest,
                             "cases": [{k: v for k, v in dataclasses.asdict(r).items() if k != "traceback"}
                                       for r in results]})


def _who(pid: int | None) -> str:
    """The process holding a batch folder's lock, as a refusal names it: a batch (``vdm3d batch``, ``vdm3d eval
    --manifest``) or a single run, from its command line where ``/proc`` shows it."""
    if not pid:
        return "another vdm3d command"
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return f"another vdm3d command (pid {pid})"
    return f"another vdm3d {'batch' if 'batch' in args or '--manifest' in args else 'run'} (pid {pid})"


def check_batch_out(out: Path) -> None:
    """Refuse, in one sentence and before any case runs, a batch folder that cannot be written: a file in its
    path (a NotADirectoryError traceback from the logs folder), a read-only folder (a PermissionError one)."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is a file, not a folder; choose another --out.")
    check_writable(out / "batch.json" if out.is_dir() else out, "--out")


def lock_batch(out: Path):
    """Check that the batch folder ``out`` can be written, then hold its lock (:func:`vdm3d.io.runs.lock_run`,
    ``.<name>.lock`` beside it) for the whole batch: a second batch into the same folder at the same time is
    refused before it starts any case (both would run the same cases into the same run folders). Where the
    folder above ``out`` cannot be written (a mount point, a shared folder), the lock is ``out/.batch.json.lock``.
    Returns the handle for :func:`vdm3d.io.runs.unlock_run`."""
    check_batch_out(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        try:
            return lock_run(out)
        except OSError as e:  # the folder above is not ours to write: lock inside the batch folder
            if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            return lock_run(out / "batch.json")
    except OutputExistsError as e:
        raise OutputExistsError(f"{out}: {_who(getattr(e, 'pid', None))} is running into this folder now; wait for "
                                "it to finish, or choose another --out.") from None


def run_and_summarize(cases: list[Case], logs: Path, summary: Path, manifest: str, **options) -> list[CaseResult]:
    """:func:`run_cases`, then its summary written to ``summary`` (batch.json); a stopped batch writes it too,
    with the interrupted and the not-run cases, and its message names the file (`vdm3d batch`, `vdm3d eval
    --manifest`). The batch folder (``summary``'s) is locked while it runs (:func:`lock_batch`)."""
    if options.get("use_ray", True):
        check_address(options.get("address"))  # before the batch folder is made: nothing is left behind
    lock = lock_batch(summary.parent)
    try:
        return _run_and_summarize(cases, logs, summary, manifest, **options)
    finally:
        unlock_run(lock)


def _run_and_summarize(cases: list[Case], logs: Path, summary: Path, manifest: str, **options) -> list[CaseResult]:
    try:
        results = run_cases(cases, logs, **options)
    except KeyboardInterrupt as e:  # stopped: the summary says what is done, stopped (checkpoint kept?), not run
        if getattr(e, "results", None) is not None:
            try:
                write_summary(summary, e.results, manifest)
                e.outcome = f"{getattr(e, 'outcome', '')} ({summary} lists every case)".lstrip()
            except OSError:
                pass
        raise
    write_summary(summary, results, manifest)
    return results


def _folder(r: CaseResult) -> str:
    """The folder a case's table row names: its run folder, or for a stopped case its kept partial folder;
    ``-`` when neither exists (a case that failed or was stopped before writing one)."""
    if Path(r.out).exists():
        return r.out
    partial = partial_folder(r.out)
    return str(partial) if r.status == "interrupted" and partial.exists() else "-"


def summary_table(results: list[CaseResult]) -> str:
    """A plain-text table: case, job, state before, status, seconds, folder (and the error of failures)."""
    rows = [("case", "job", "before", "status", "seconds", "run folder")]
    rows += [(r.name, r.job, r.state, r.status, f"{r.seconds:.1f}", _folder(r)) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.status == "failed":
            lines.append(f"{r.name}: exit {r.returncode}: {r.error}")
        elif r.status == "interrupted":
            lines.append(f"{r.name} {r.error}")
        elif r.error:  # a skipped case with a note
            lines.append(f"{r.name}: skipped: {r.error}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed", "interrupted", "not run")}
    lines.append(f"{counts['ok']} ran, {counts['skipped']} already done, {counts['failed']} failed"
                 + "".join(f", {counts[s]} {s}" for s in ("interrupted", "not run") if counts[s]))
    return "\n".join(lines)
