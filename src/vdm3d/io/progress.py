"""Progress with an ETA that suits where it is shown: a live bar on a terminal, plain lines in a log.

A tqdm bar redraws one line with carriage returns, which fills a log file (``vdm3d ... > log``, a
batch case's log, CI) with thousands of partial lines. So both helpers here look at their stream:

* :class:`StepProgress` counts the steps of one loop: a tqdm bar (with its rate and ETA) when the
  stream is a terminal; otherwise one plain line at each tenth of the work (and at least every
  ``interval_s`` seconds), each with the elapsed time and the ETA from the mean rate so far.
* :class:`StageLog` prints a job's stage messages with the time since the start, and gives messages
  of the form ``"<stage> i/n: ..."`` (the object job's fitting reports, explore's chunks, stylize's
  arcs) or ``"[i/n] ..."`` (evaluation cases) the stage's ETA; a case line ending in ``(from the
  checkpoint)`` (a resumed evaluation loaded it) takes no time, so the rate counts the cases after it.
* :class:`StageBars` keeps one :class:`StepProgress` per stage for loops that report
  ``(stage, step, steps)`` (the complete job's fits).
* :func:`read_announced` says before reading a large file that it will take a while, and after how long.

The bar writes to stderr (as tqdm does); the stage messages to stdout, where jobs have always
printed them.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, TypeVar  # streams are Any: file objects, StringIO, tqdm wrappers

_STEP = re.compile(r"^\s*([\w-]+) (\d+)/(\d+)\b")  # "chunk 3/8: ..." (a stage's steps)
_COUNT = re.compile(r"^\s*\[(\d+)/(\d+)\]")  # "[3/20] case: ..." (evaluation cases, batch cases)
#: ends the line of an evaluation case that a resumed run loaded from its checkpoint (no ETA from it)
FROM_CHECKPOINT = "(from the checkpoint)"
T = TypeVar("T")

LARGE_FILE_BYTES = 20_000_000
"""files announced before they are read: trimesh reads an OBJ at about 2 MB/s (a 66 MB OBJ took 30 s)"""


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def format_seconds(seconds: float | int) -> str:
    """``42.0 s``, ``3 min 05 s``, ``1 h 02 min``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def eta_seconds(done: int, total: int, elapsed: float | int, initial: int = 0) -> float | None:
    """Time left at the mean rate of the steps done in this session (``None`` before the first)."""
    ran = done - initial
    if ran <= 0 or total <= 0:
        return None
    return elapsed / ran * max(0, total - done)


def progress_line(desc: str, done: int, total: int, elapsed: float | int, initial: int = 0, postfix: str = "") -> str:
    """``fit 40/200 (20%), 3.1 s, ETA 12.4 s: loss 0.31``."""
    eta = eta_seconds(done, total, elapsed, initial)
    pct = f" ({100 * done / total:.0f}%)" if total > 0 else ""
    tail = f", ETA {format_seconds(eta)}" if eta is not None and done < total else ""
    return f"{desc} {done}/{total}{pct}, {format_seconds(elapsed)}{tail}" + (f": {postfix}" if postfix else "")


class StepProgress:
    """Progress of ``total`` steps: a tqdm bar on a terminal, plain lines with an ETA elsewhere.

    >>> bar = StepProgress(200, "fit")            # doctest: +SKIP
    >>> bar.update(loss="0.31")                   # one step done  # doctest: +SKIP
    >>> bar.close()                               # doctest: +SKIP
    """

    def __init__(self, total: int, desc: str, *, initial: int = 0, unit: str = "step", stream: Any = None,
                 tty: bool | None = None, interval_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.initial, self.done = int(total), desc, int(initial), int(initial)
        self.stream = stream or sys.stderr
        self.tty = is_terminal(self.stream) if tty is None else tty
        self.interval_s, self.clock = interval_s, clock
        self.start = self.last_print = clock()
        self.next_tenth = self._tenth(self.done) + 1
        self.postfix = ""
        self.bar = None
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.initial, desc=desc, unit=unit, file=self.stream,
                            dynamic_ncols=True)

    def _tenth(self, done: int) -> int:
        return int(10 * done / self.total) if self.total > 0 else 0

    def update(self, n: int = 1, **postfix: Any) -> None:
        """``n`` more steps done; ``postfix`` (name=value) is shown beside the count."""
        self.done += n
        if postfix:
            self.postfix = ", ".join(f"{k} {v}" for k, v in postfix.items())
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            return
        now = self.clock()
        if self.done >= self.total or self._tenth(self.done) >= self.next_tenth or now - self.last_print >= self.interval_s:
            self.next_tenth = self._tenth(self.done) + 1
            self.last_print = now
            print(progress_line(self.desc, self.done, self.total, now - self.start, self.initial, self.postfix),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class StageLog:
    """A job's progress messages with the elapsed time, and an ETA for ``"<stage> i/n: ..."`` messages."""

    def __init__(self, stream: Any = None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stdout
        self.clock = clock
        self.start = clock()
        self.stage_start: dict[str, tuple[float, int]] = {}  # stage -> (time, step) of its first report
        self.stage_last: dict[str, int] = {}  # stage -> its last reported step (a smaller one: it runs again)

    def __call__(self, message: str) -> None:
        now = self.clock()
        line = f"[{format_seconds(now - self.start):>10}] {message}"
        step = None
        if message.endswith(FROM_CHECKPOINT) and (m := _COUNT.match(message)):
            self.stage_start[""] = (now, int(m.group(1)))  # loaded, not computed: the rate counts after it
        elif m := _COUNT.match(message):  # cases counted from the start: case 1's time is in the rate
            step = ("", int(m.group(1)), int(m.group(2)), (self.start, 0))
        elif m := _STEP.match(message):  # a stage's rate counts from its first report
            step = (m.group(1), int(m.group(2)), int(m.group(3)), (now, int(m.group(2))))
        if step is not None:
            stage, done, total, origin = step
            if done <= self.stage_last.get(stage, -1):  # the stage runs again (the object job's second fit)
                self.stage_start[stage] = origin
            self.stage_last[stage] = done
            t0, s0 = self.stage_start.setdefault(stage, origin)
            eta = eta_seconds(done, total, now - t0, s0)
            if eta is not None and done < total:
                line += f" (ETA {format_seconds(eta)})"
        print(line, file=self.stream, flush=True)


class StageBars:
    """One :class:`StepProgress` per stage of a job whose loops report ``(stage, step, steps)``: a new
    stage closes the previous stage's bar (the complete job's baseline and distillation fits)."""

    def __init__(self, stream: Any = None, tty: bool | None = None):
        self.stream, self.tty = stream, tty
        self.stage: str | None = None
        self.bar: StepProgress | None = None

    def __call__(self, stage: str, step: int, steps: int, **postfix: Any) -> None:
        """Step ``step`` (1-based) of ``steps`` of ``stage`` is done."""
        if stage != self.stage or self.bar is None:
            self.close()
            self.stage = stage
            self.bar = StepProgress(steps, stage, initial=step - 1, stream=self.stream, tty=self.tty)
        self.bar.update(1, **postfix)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


class StageClock:
    """Wall time of a job's stages, in order: ``clock.lap("fit")`` closes the stage that began at the
    previous lap (or at construction) and records its seconds in ``clock.timings``, which the jobs
    put in their manifest and result."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._tick = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._tick, 3)
        self._tick = now


class StageSteps:
    """``say("<stage> i/n: ...")`` for a stage's steps, quiet while it is quick: the first line comes once
    the stage has taken ``after_s`` or its rate after the first step (which carries the setup, e.g. a mesh
    upload) predicts more, then one at least every ``interval_s`` and the last; :class:`StageLog` gives each
    line after the first the ETA at the rate since the first."""

    def __init__(self, say: Callable[[str], None], stage: str, what: str, after_s: float = 5.0,
                 interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.say, self.stage, self.what = say, stage, what
        self.after_s, self.interval_s, self.clock = after_s, interval_s, clock
        self.start = clock()
        self.first: tuple[float, int] | None = None  # time and count of the first report
        self.last: float | None = None  # time of the last line said

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        if self.last is None:
            t0, d0 = self.first = self.first or (now, done)
            rest = (now - t0) / (done - d0) * (total - done) if done > d0 else 0.0
            if done >= total or (now - self.start <= self.after_s and now - self.start + rest <= self.after_s):
                return
            self.say(f"{self.stage} {done}/{total}: {self.what}")
            self.last = now
        elif done >= total or now - self.last >= self.interval_s:
            self.say(f"{self.stage} {done}/{total}: {self.what}")
            self.last = now


def read_announced(path: str | Path, read: Callable[[], T], say: Callable[[str], None] | None,
                   what: str = "", done: Callable[[T], str] = lambda _: "read") -> T:
    """``read()``; when ``path`` is a file over :data:`LARGE_FILE_BYTES`, ``say`` a line before (its name
    and size) and one after (``done(result)``, e.g. "1,617,920 faces", and the time), so that a command
    reading a large scene does not look hung."""
    path = Path(path)
    size = path.stat().st_size if say is not None and path.is_file() else 0
    label = f"{what}: " if what else ""
    if size > LARGE_FILE_BYTES:
        say(f"{label}reading {path.name} ({size / 1e6:.0f} MB)")
    start = time.monotonic()
    result = read()
    if size > LARGE_FILE_BYTES:
        say(f"{label}{done(result)} in {format_seconds(time.monotonic() - start)}")
    return result
