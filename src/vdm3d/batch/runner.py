"""Run the cases of a batch on Ray (or one after another), skipping finished ones, resuming broken ones.

Each case is one ``vdm3d <job> ...`` process with its own run folder, so a case that fails or is
killed takes nothing else with it, and a case behaves exactly as the same command typed by hand.
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
``cpus_per_case`` CPUs, and its process gets as many torch threads. The case's process dies with
the worker that runs it (Linux ``PR_SET_PDEATHSIG``), so killing the batch leaves no stray job behind.
Each case's output goes to ``<batch out>/logs/<name>.log``; ``<batch out>/batch.json`` holds the summary.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Literal

from vdm3d.batch.cases import Case
from vdm3d.io.runs import MANIFEST, atomic_write_json, partial_folder

State = Literal["done", "resume", "restart", "todo"]


@dataclasses.dataclass
class CaseResult:
    name: str
    job: str
    state: State  # where the case stood before this batch
    status: Literal["skipped", "ok", "failed"]
    seconds: float
    out: str
    returncode: int | None = None
    error: str = ""  # the last line the case printed, when it failed (a note, when a skipped case has one)


def case_state(case: Case) -> State:
    out = Path(case.out)
    if (out / MANIFEST).is_file():
        return "done"
    partial = partial_folder(out)
    if (partial / "checkpoints").is_dir():
        return "resume"
    return "restart" if partial.exists() else "todo"


def _what_it_runs(argv: list[str]) -> list[str]:
    """A job's arguments without those that say whether to resume or overwrite."""
    kept, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--resume":
            skip = i + 1 < len(argv) and not argv[i + 1].startswith("--")  # ``--resume RUN``
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


def command_for(case: Case, state: State, overwrite: bool = False) -> list[str]:
    """``vdm3d`` arguments that run ``case`` from where it stands."""
    argv = [case.job, *case.command()]
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


def run_command(argv: list[str], log: str, threads: int, driver_pid: int | None = None) -> tuple[int, float, str]:
    """Run ``vdm3d <argv>`` in a new process, appending its output to ``log``: ``(exit code, seconds, last line)``.

    ``driver_pid`` is the batch command's own process when the case runs on this machine: Ray's workers
    outlive a killed driver for a while, so the case is stopped as soon as the driver is gone (it then
    resumes or restarts on the next ``vdm3d batch``), instead of finishing unseen in the background.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ vdm3d {' '.join(argv)}\n")
        f.flush()
        proc = subprocess.Popen([sys.executable, "-m", "vdm3d.cli.main", *argv], stdout=f, stderr=subprocess.STDOUT,
                                env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        while True:
            try:
                proc.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if driver_pid is not None and not _alive(driver_pid):
                    proc.terminate()
                    proc.wait()
                    break
    last = ""
    if proc.returncode:
        last = last_words(Path(log).read_text(encoding="utf-8", errors="replace"))
    return proc.returncode, round(time.time() - start, 2), last


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


Report = Callable[[CaseResult, int, int], None]


def run_cases(cases: list[Case], logs: Path, *, use_ray: bool = True, address: str | None = None,
              num_cpus: int | None = None, cpus_per_case: int = 1, overwrite: bool = False,
              report: Report | None = None) -> list[CaseResult]:
    """Run every case that is not done; returns one result per case, in manifest order."""
    results: dict[str, CaseResult] = {}
    pending: list[tuple[Case, State, list[str]]] = []
    for case in cases:
        state = "todo" if overwrite else case_state(case)
        if state == "done":
            note = ("its options differ from those of its finished run; `vdm3d batch ... --overwrite` runs it again"
                    if options_changed(case) else "")
            results[case.name] = CaseResult(case.name, case.job, state, "skipped", 0.0, str(case.out), error=note)
        else:
            pending.append((case, state, command_for(case, state, overwrite=overwrite and Path(case.out).exists())))
    done_count = [len(results)]

    def finish(case: Case, state: State, outcome: tuple[int, float, str]) -> None:
        rc, seconds, last = outcome
        results[case.name] = CaseResult(case.name, case.job, state, "ok" if rc == 0 else "failed", seconds,
                                        str(case.out), rc, last)
        done_count[0] += 1
        if report:
            report(results[case.name], done_count[0], len(cases))

    if pending and use_ray:
        _run_on_ray(pending, logs, address, num_cpus, cpus_per_case, finish)
    else:
        for case, state, argv in pending:
            finish(case, state, run_command(argv, str(logs / f"{case.name}.log"), cpus_per_case))
    return [results[c.name] for c in cases]


def _run_on_ray(pending, logs: Path, address: str | None, num_cpus: int | None, cpus_per_case: int, finish) -> None:
    import ray

    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=cpus_per_case, max_retries=0)(run_command)
        refs = {task.remote(argv, str(logs.resolve() / f"{case.name}.log"), cpus_per_case,
                             None if address else os.getpid()): (case, state)
                for case, state, argv in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                case, state = refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # the worker died (out of memory, node lost)
                    outcome = (1, 0.0, f"ray task failed: {type(e).__name__}: {e}".splitlines()[0])
                finish(case, state, outcome)
    finally:
        ray.shutdown()


def write_summary(path: Path, results: list[CaseResult], manifest: str) -> None:
    atomic_write_json(path, {"format": "vdm3d.batch", "version": 1, "manifest": manifest,
                             "cases": [dataclasses.asdict(r) for r in results]})


def summary_table(results: list[CaseResult]) -> str:
    """A plain-text table: case, job, state before, status, seconds, folder (and the error of failures)."""
    rows = [("case", "job", "before", "status", "seconds", "run folder")]
    rows += [(r.name, r.job, r.state, r.status, f"{r.seconds:.1f}", r.out) for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    for r in results:
        if r.status == "failed":
            lines.append(f"{r.name}: exit {r.returncode}: {r.error}")
        elif r.error:  # a skipped case with a note
            lines.append(f"{r.name}: skipped: {r.error}")
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "skipped", "failed")}
    lines.append(f"{counts['ok']} ran, {counts['skipped']} already done, {counts['failed']} failed")
    return "\n".join(lines)
