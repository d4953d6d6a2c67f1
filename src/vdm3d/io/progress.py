"""Progress with an ETA that suits where it is shown: a live bar on a terminal, plain lines in a log.

A tqdm bar redraws one line with carriage returns, which fills a log file (``vdm3d ... > log``, a
batch case's log, CI) with thousands of partial lines. So both helpers here look at their stream:

* :class:`StepProgress` counts the steps of one loop: a tqdm bar (with its rate and ETA) when the
  stream is a terminal; otherwise one plain line at each tenth of the work (and at least every
  ``interval_s`` seconds), each with the elapsed time and the ETA from the mean rate so far.
* :class:`StageLog` prints a job's stage messages with the time since the start, and gives messages
  of the form ``"<stage> i/n: ..."`` (the object job's fitting reports) the stage's ETA.

The bar writes to stderr (as tqdm does); the stage messages to stdout, where jobs have always
printed them.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any, Callable  # streams are Any: file objects, StringIO, tqdm wrappers

_STEP = re.compile(r"^\s*([\w-]+) (\d+)/(\d+)\b")


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

    def __call__(self, message: str) -> None:
        now = self.clock()
        line = f"[{format_seconds(now - self.start):>10}] {message}"
        if m := _STEP.match(message):
            stage, done, total = m.group(1), int(m.group(2)), int(m.group(3))
            t0, s0 = self.stage_start.setdefault(stage, (now, done))
            eta = eta_seconds(done, total, now - t0, s0)
            if eta is not None and done < total:
                line += f" (ETA {format_seconds(eta)})"
        print(line, file=self.stream, flush=True)


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
