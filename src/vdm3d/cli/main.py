"""Entry point of the ``vdm3d`` command.

Each subcommand lives in its own module under ``vdm3d.cli`` and is imported only when used, so
``vdm3d trajectory ...`` never pays for importing diffusers. A module exposes ``HELP`` (one line for
the overview) and ``main(argv, prog)``. Flags are generated from the config dataclasses by tyro
(:func:`dispatch`), so an option is declared exactly once, with its docstring as help.

Errors: a :class:`~vdm3d.errors.Vdm3dError` is printed as one sentence and exits with status 2;
``--debug`` (anywhere on the line) shows the traceback as well.

Threads: ``--threads N`` (anywhere on the line) sets the threads of torch, OpenMP, numba and OpenCV
for the whole command; without it they default to the cores this process may use, with idle OpenMP
threads sleeping instead of spinning (see :mod:`vdm3d.threads`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib
import importlib.util
import itertools
import os
import re
import shutil
import signal
import sys
import textwrap
import threading
import traceback
from typing import Callable, Sequence

from vdm3d import errors
from vdm3d.cli.help_layout import BESIDE_MIN, examples_text, help_width, wrap_help_text
from vdm3d.errors import STOP_SIGNALS, ConfigError, Interrupted, OutOfMemoryError, Vdm3dError, out_of_memory
from vdm3d.threads import set_threads

# name -> module; the order is the order of the overview.
GROUPS: dict[str, str] = {
    "object": "vdm3d.cli.object",
    "complete": "vdm3d.cli.complete",
    "explore": "vdm3d.cli.explore",
    "stylize": "vdm3d.cli.stylize",
    "fit": "vdm3d.cli.fit",
    "trajectory": "vdm3d.cli.trajectory",
    "data": "vdm3d.cli.data",
    "train": "vdm3d.cli.train",
    "eval": "vdm3d.cli.eval",
    "models": "vdm3d.cli.models",
    "view": "vdm3d.cli.view",
    "batch": "vdm3d.cli.batch",
    "rerun": "vdm3d.cli.rerun",
    "doctor": "vdm3d.cli.doctor",
}


def _available() -> dict[str, str]:
    out = {}
    for name, module in GROUPS.items():
        if importlib.util.find_spec(module) is not None:
            out[name] = module
    return out


#: the end of `vdm3d --help`: the main use, from an empty folder, on the CPU with the embedded models
START_HERE = """examples:
  vdm3d data make objects --count 1 --resolution 128 --out cup  # an object to try (or a photo of yours)
  vdm3d object --image cup/case_000000/images/000.png --out runs/cup  # orbit video, splats, mesh
  vdm3d view runs/cup                                           # splats, mesh and orbit frames in a browser"""


def _overview() -> str:
    lines = ["usage: vdm3d COMMAND [...] [--debug] [--threads N]", "",
             "Video diffusion models as 3D tools. Commands:", ""]
    width = help_width()
    for name, module in _available().items():
        help_line = getattr(importlib.import_module(module), "HELP", "")
        lines += textwrap.wrap(f"  {name:<11} {help_line}", width, subsequent_indent=" " * 14,
                               break_long_words=False, break_on_hyphens=False)
    lines += ["", "Run `vdm3d COMMAND --help` for the options of a command.",
              "--debug shows the full traceback when a command fails.",
              "--threads N sets the CPU threads (default: all cores this process may use)."]
    return wrap_help_text("\n".join(lines), width) + "\n" + examples_text(START_HERE)


# Sphinx markup in the docstrings that become --help: a role (:func:`a.b`, :class:`~a.B` -> B,
# :ref:`text <target>` -> text) and ``literal`` are shown as plain text.
_ROLE = re.compile(r":(?:[a-z]+:)+`(~?)([^`]*?)(?:\s*<[^`>]*>)?`")
_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


# a line break inside a paragraph of an option's help, unless the next line starts a list item ("- ", "* ", "2. ")
_SOFT_BREAK = re.compile(r"[ \t]*\n[ \t]*(?![-*\u2022] |\d+[.)] )")
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


def plain_help(text: str) -> str:
    """``text`` (a docstring) with its reST roles and double-backtick literals as plain text, for --help."""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), text)
    return _LITERAL.sub(r"\1", text)


def flowing_help(text: str) -> str:
    """An option's help as paragraphs for the terminal to wrap: the line breaks of its docstring's source are
    spaces, blank lines and list items ("- ", "2. ") stay.

    tyro keeps them: it joins a docstring's lines only where the next one starts with a letter, and does so
    before it removes their indentation, so every source line of a field's docstring was a line of --help
    (``any camera file explore's`` alone on a line of ``vdm3d stylize --help``, the rest below it)."""
    return "\n\n".join(_SOFT_BREAK.sub(" ", paragraph) for paragraph in _BLANK_LINES.split(text))


def _plain_help_in_tyro() -> None:
    """Make tyro show every option's help and every command's and group's description through
    :func:`plain_help`, and an option's help as flowing paragraphs (:func:`flowing_help`).

    tyro reads them from docstrings and has no hook for it, so the two functions it passes that text
    through are wrapped (once): ``_strings.remove_single_line_breaks`` (descriptions and field docstrings)
    and ``_arguments.generate_argument_helptext`` (also a function's ``Args:``, which skip the first).
    tests/cli/test_help.py checks every --help page for markup, so a tyro that moves them fails there."""
    try:
        from tyro import _arguments, _strings

        argument_help, line_breaks = _arguments.generate_argument_helptext, _strings.remove_single_line_breaks
    except (ImportError, AttributeError):  # a tyro that moved them: help keeps the markup, commands still run
        return
    if getattr(_arguments, "_vdm3d_plain_help", False):
        return

    def generate_argument_helptext(arg, lowered, *args, **kwargs):
        text = arg.field.helptext
        text = text() if callable(text) else text
        if isinstance(text, str):
            arg.field.helptext = flowing_help(plain_help(text))
        return argument_help(arg, lowered, *args, **kwargs)

    def remove_single_line_breaks(text: str) -> str:
        return line_breaks(plain_help(text))

    _arguments.generate_argument_helptext = generate_argument_helptext
    _strings.remove_single_line_breaks = remove_single_line_breaks
    _arguments._vdm3d_plain_help = True


def _narrow_help_in_tyro() -> None:
    """Lay tyro's --help page out for a narrow terminal (``COLUMNS=40``, a split pane): at least
    :data:`~vdm3d.cli.help_layout.MIN_HELP_WIDTH` columns wide, an option's help below its name when fewer
    than 30 columns would be left beside it, and the description wrapped at spaces.

    tyro reads the terminal's width itself: below about 6 columns its layout looped forever, at 20
    ``vdm3d object --help`` was 5,000 lines of one or two letters, at 40 its help column was 14 letters wide,
    and its description came out as one line of 600 characters for the terminal to cut mid-word. Wrapped once, like
    :func:`_plain_help_in_tyro`: ``_tyro_help_formatting.format_help`` (the page) and ``_fmtlib._Cols.render``
    (a name with its help beside it); a tyro that moved them keeps its own layout."""
    try:
        from tyro import _fmtlib
        from tyro._backends import _tyro_help_formatting as formatting

        format_help, render_cols = formatting.format_help, _fmtlib._Cols.render
    except (ImportError, AttributeError):
        return
    if getattr(formatting, "_vdm3d_narrow_help", False):
        return

    def render(self, width: int) -> list[str]:  # (name, its width)... then the help, of no set width
        contents = getattr(self, "_contents", ())
        head = contents[:-1]
        beside = width - sum(w for _, w in head if isinstance(w, int))
        if not head or contents[-1][1] is not None or not all(isinstance(w, int) for _, w in head) \
                or beside >= BESIDE_MIN:
            return render_cols(self, width)
        indent = min(width - beside, 4 * len(head))  # an option's help 4 in, a subcommand's (after "  • ") 8
        name = render_cols(_fmtlib._Cols(*head[:-1], (head[-1][0], None)), width)
        return ([line for line in name if line.strip()]  # no line for tyro's empty name ("" beside the help)
                + [" " * indent + line for line in contents[-1][0].render(width - indent)])

    def narrow_format_help(*args, **kwargs) -> list[str]:
        width = help_width()
        columns = os.environ.get("COLUMNS")
        if shutil.get_terminal_size().columns < width:  # tyro asks shutil, which reads COLUMNS first
            os.environ["COLUMNS"] = str(width)
        try:
            lines = format_help(*args, **kwargs)
        finally:
            if columns is None:
                os.environ.pop("COLUMNS", None)
            else:
                os.environ["COLUMNS"] = columns
        return [wrap_help_text(line, width) if isinstance(line, str) else line for line in lines]

    _fmtlib._Cols.render = render
    formatting.format_help = narrow_format_help
    formatting._vdm3d_narrow_help = True


_TYRO_ANSI: list[bool] = []  # tyro's own setting (PYTHON_TYRO_ANSI_CODES), read once


def _tyro_colours(argv: Sequence[str]) -> None:
    """Let tyro colour its --help page and its usage-error boxes only where colour is wanted: never with
    ``NO_COLOR`` set (https://no-color.org), and an error box only when stderr is a terminal.

    tyro decides from ``sys.stdout.isatty()`` alone, for the help page and for errors on stderr alike, and
    ignores ``NO_COLOR``: ``NO_COLOR=1 vdm3d object --help`` was coloured on a terminal, and
    ``vdm3d object --bogus 2>err.txt`` wrote escape codes into err.txt. Set on every command (``main`` also
    runs in-process, with other streams); PYTHON_TYRO_ANSI_CODES=0 still turns colour off."""
    try:
        from tyro import _settings

        options = _settings._experimental_options
    except (ImportError, AttributeError):  # a tyro that moved it: its own choice
        return
    if not _TYRO_ANSI:
        _TYRO_ANSI.append(bool(options.get("ansi_codes", True)))
    from vdm3d.io.progress import is_terminal

    asked_help = "-h" in argv or "--help" in argv  # the page goes to stdout, which tyro checks itself
    options["ansi_codes"] = (_TYRO_ANSI[0] and not os.environ.get("NO_COLOR")
                             and (asked_help or is_terminal(sys.stderr)))


def dispatch(commands: dict[str, Callable] | Callable, argv: Sequence[str], prog: str,
             description: str | None = None, memory: bool = False, examples: str | dict[str, str] | None = None):
    """Parse ``argv`` with tyro against one function or a dict of subcommand functions, and call it.

    ``examples`` (a few command lines) are printed at the end of ``--help``: one text, or, for subcommands,
    ``{subcommand: text}`` with ``""`` for the group's own page; ``memory``: see :func:`vdm3d.cli.config.cli`."""
    import tyro

    from vdm3d.cli.config import cli as config_cli

    _plain_help_in_tyro()
    _narrow_help_in_tyro()

    if dataclasses.is_dataclass(commands):  # a job's config dataclass: --config FILE gives its defaults
        return config_cli(commands, argv, prog, description=description, memory=memory, examples=examples)
    from vdm3d.options import check_options, checked_command, expand_home

    # Every declared option range is checked before the command runs (vdm3d.options): a function
    # command checks its arguments when tyro calls it; a parsed dataclass is checked here.
    def checked(fn):
        return fn if isinstance(fn, type) else checked_command(fn)

    try:
        if callable(commands):
            result = tyro.cli(checked(commands), args=list(argv), prog=prog, description=description)
        else:
            commands = {name: checked(fn) for name, fn in commands.items()}
            result = tyro.extras.subcommand_cli_from_dict(commands, args=list(argv), prog=prog,
                                                          description=description)
    except SystemExit as e:
        if isinstance(examples, dict):  # the page of the subcommand asked for, else the group's
            sub = next((a for a in argv if not a.startswith("-")), "")
            examples = examples.get(sub if isinstance(commands, dict) and sub in commands else "")
        if examples and e.code in (0, None) and ("-h" in argv or "--help" in argv):
            print(examples_text(examples))
        raise
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        result = check_options(expand_home(result))
    return result


_KINDS = {"INT": "a whole number", "FLOAT": "a number", "PATH": "a path", "STR": "a string"}
_PLURAL = {"INT": "whole numbers", "FLOAT": "numbers", "PATH": "paths", "STR": "strings"}


def _given(argv: Sequence[str], flags: Sequence[str]) -> str | None:
    """The value(s) typed after one of ``flags`` (``--flag V [V ...]`` or ``--flag=V``), as typed."""
    for i, a in enumerate(argv):
        name, eq, value = a.partition("=")
        if name in flags:
            if eq:
                return value
            rest = list(itertools.takewhile(lambda t: not t.startswith("--"), argv[i + 1:]))
            return " ".join(rest) if rest else None
    return None


def _value_after(argv: Sequence[str], flags: Sequence[str]) -> str | None:
    """The token after one of ``flags`` when it starts with one '-' and is not an option of its own (a file
    named ``-dash.png``, a negative number), else None."""
    for i, a in enumerate(argv[:-1]):
        following = argv[i + 1]
        if a in flags and following.startswith("-") and not following.startswith("--") and len(following) > 2:
            return following
    return None


def _metavar(arg) -> str:
    """What an option takes, as its --help shows it, without the ``{None}|`` of an optional one."""
    return re.sub(r"\{None\}\||\|\{None\}", "", str(arg.lowered.metavar or "")) or "a value"


def _parse_error_sentence(event, argv: Sequence[str]) -> str | None:
    """tyro's rejection of the command line (a value of the wrong type, not one of the choices, a missing
    value or option) as one sentence naming the option, the value and what it takes; None for the others
    (an unknown flag keeps tyro's "did you mean" box)."""
    from tyro import _errors

    if isinstance(event, _errors.InstantiationFailure) and event.argument is not None:
        arg = event.argument
        metavar = _metavar(arg)
        element = re.findall(r"[A-Z]+", metavar)
        if "..." in metavar and element:  # several values: say what each must be
            kind = _PLURAL.get(element[0], metavar)
        else:
            kind = _KINDS.get(metavar, metavar)
        value = _given(argv, tuple(arg.lowered.name_or_flags))
        default = arg.field.default
        example = (f", e.g. {arg.display_name()} {default}" if isinstance(default, (int, float, str, os.PathLike))
                   and "..." not in metavar
                   and not isinstance(default, bool) and not arg.is_positional() else "")
        got = f"{value!r}" if value is not None else "what was given"
        return f"{arg.display_name()} takes {kind} ({metavar}), not {got}; pass {kind}{example}."
    if isinstance(event, _errors.InvalidChoice):
        return (f"{event.argument.display_name()} takes one of {', '.join(event.choices)}, not {event.value!r}; "
                "pass one of them.")
    if isinstance(event, _errors.BadValue) and event.reason == "too_few_values":
        arg = event.argument
        dashed = _value_after(argv, tuple(arg.lowered.name_or_flags))
        if dashed is not None:  # `--image -dash.png`: a value that starts with '-' reads as a flag
            return (f"{arg.display_name()} {dashed}: a value that starts with '-' is read as a flag; write "
                    f"{arg.display_name()}={dashed} or {arg.display_name()} ./{dashed}.")
        return f"{arg.display_name()} takes {_metavar(arg)} but none was given; put it after {arg.display_name()}."
    if isinstance(event, _errors.MissingArgs) and not event.unrecognized_tokens:
        names = [a.arg.display_name() for a in event.missing_arguments]
        progs = event._help_progs()
        prog = progs[0] if isinstance(progs, list) and progs else event.prog
        return f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} required; see `{prog} --help`."
    return None


@contextlib.contextmanager
def _one_sentence_parse_errors(argv: Sequence[str]):
    """While a command parses its flags, turn tyro's rejections (:func:`_parse_error_sentence`) into a
    :class:`~vdm3d.errors.ConfigError`: the one-sentence error of every other bad input. Uses tyro's
    experimental parse-error hook; a tyro without it keeps its own boxes (still exit status 2)."""
    try:
        from tyro._errors import on_parse_error
    except ImportError:
        yield
        return

    def hook(event) -> None:
        sentence = _parse_error_sentence(event, argv)
        if sentence is not None:
            raise ConfigError(sentence)

    with on_parse_error(hook):
        yield


def _pop_threads(argv: list[str]) -> tuple[list[str], int | None]:
    """Remove the global ``--threads N`` / ``--threads=N`` from ``argv``; return the rest and ``N``."""
    rest, threads, i = [], None, 0
    while i < len(argv):
        a = argv[i]
        if a == "--threads" or a.startswith("--threads="):
            value = a.partition("=")[2] if "=" in a else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if "=" in a else 2
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--threads needs a whole number of threads, 1 or more, got {value!r}; "
                                  "leave it out to use all cores.")
            threads = int(value)
            continue
        rest.append(a)
        i += 1
    return rest, threads


def _terminate_as_interrupt() -> Callable[[], None]:
    """Turn SIGTERM, SIGINT and SIGHUP (:data:`STOP_SIGNALS`) into :class:`~vdm3d.errors.Interrupted` (a
    KeyboardInterrupt) for the command's duration, so that a run folder keeps its checkpoint or removes
    itself, and says which (exit status 128 + the signal's number). The
    signal is also remembered, so that a loop's :func:`~vdm3d.errors.raise_if_interrupted` ends the run
    when the exception was raised inside a C callback and dropped. Only the first signal raises: a second
    one (a batch's worker and its driver both stopping the job, say) would otherwise cut short the run
    folder's cleanup and leave a partial folder without its checkpoint; SIGKILL still ends a run that hangs.
    A signal this process was started with ignored (SIG_IGN: ``nohup`` for SIGHUP, SIGINT for a ``cmd &``
    of a non-interactive shell, a scheduler's choice) stays ignored, as POSIX tools and Python's own SIGINT
    handling do: the parent said that signal must not stop the run.
    Returns the function that puts the previous handlers back. A no-op off the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum, frame):
        if errors.pending_signal is not None:  # already stopping: let the unwinding finish
            return
        errors.pending_signal = signum
        raise Interrupted(signum)

    def unraisable(report) -> None:  # C code dropped our exception: no traceback, the next step raises it
        if not isinstance(report.exc_value, Interrupted):
            previous_hook(report)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS
                if signal.getsignal(sig) is not signal.SIG_IGN}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable

    def restore() -> None:
        errors.pending_signal = None
        sys.unraisablehook = previous_hook
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore


class _DroppingStream:
    """``sys.stdout`` / ``sys.stderr`` of the ``vdm3d`` program: once the reader has gone (``vdm3d ... | head``,
    a ``tee`` that was stopped), what the command writes there is dropped instead of raising BrokenPipeError
    from whichever print came next. A job's progress line must not end the run (and remove its run folder)
    because nobody reads it any more; the command runs to its end and exits with its own status.

    The stream's file descriptor is pointed at ``/dev/null``, so what its buffer still holds (and the flush
    at exit) goes nowhere without an error. Everything else is the wrapped stream's (``isatty``,
    ``fileno``, ``encoding``: rich and tqdm look at them)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _guard_streams() -> None:
    """Make stdout and stderr safe to write for the rest of the program: a descriptor the program was started
    without (``vdm3d ... >&-``) is opened on ``/dev/null``, so the command's output is discarded (as asked)
    and no file the command opens takes descriptor 1 or 2, where a library's or a child process's output
    would land in it (Python otherwise sets ``sys.stdout`` to None, and ``print(file=None)`` writes an error
    meant for a closed stderr to stdout); then each stream is wrapped in :class:`_DroppingStream`."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            setattr(sys, name, open(fd, "w", closefd=False))
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _DroppingStream):
            setattr(sys, name, _DroppingStream(stream))


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:  # the program, not a library call or a test: its own streams are its to wrap
        _guard_streams()
    try:
        code = _main(argv)
        if argv is None and code - 128 in STOP_SIGNALS:  # the `vdm3d` program, stopped: it is exiting now
            for sig in STOP_SIGNALS:  # a second Ctrl-C must not break the exit handlers (Ray's) with a traceback
                signal.signal(sig, signal.SIG_IGN)
        return code
    except BrokenPipeError:  # a write past the guarded streams (their binary buffer) met a reader that went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's flush must not raise again
        return 128 + signal.SIGPIPE


def _debug_in_environment(debug: bool) -> Callable[[], None]:
    """``--debug`` as ``VDM3D_DEBUG=1`` while the command runs, so that the processes it starts (`vdm3d batch`'s
    cases) and the code that asks (:func:`vdm3d.batch.runner.debugging`) see the flag main took off the
    arguments, also when main is called in-process; returns what puts the environment back."""
    if not debug or os.environ.get("VDM3D_DEBUG") == "1":
        return lambda: None
    before = os.environ.get("VDM3D_DEBUG")
    os.environ["VDM3D_DEBUG"] = "1"

    def undo() -> None:
        if before is None:
            os.environ.pop("VDM3D_DEBUG", None)
        else:
            os.environ["VDM3D_DEBUG"] = before
    return undo


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("VDM3D_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network unless asked to
    try:
        argv, threads = _pop_threads(argv)
        set_threads(threads, cap=threads is not None)  # a typed count is capped to the cores; a rerun's is not
    except Vdm3dError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code

    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_overview())
        return 0
    if argv[0] in ("--version", "version"):
        from vdm3d import __version__
        print(f"vdm3d {__version__}")
        return 0
    available = _available()
    name = argv[0]
    if name not in available:
        print(f"vdm3d: unknown command {name!r}; choose one of: {', '.join(available)}.", file=sys.stderr)
        return 2
    restore = _terminate_as_interrupt()
    undebug = _debug_in_environment(debug)
    try:
        _plain_help_in_tyro()  # here too: some commands call tyro through vdm3d.cli.config, not dispatch
        _narrow_help_in_tyro()
        _tyro_colours(argv)
        module = importlib.import_module(available[name])
        with _one_sentence_parse_errors(argv[1:]):
            result = module.main(argv[1:], prog=f"vdm3d {name}")
        # A command may return its result (a metrics dict, a run folder) for library use; only an int
        # is an exit status.
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except Vdm3dError as e:
        if debug:
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):  # anything else is a bug: its traceback
            raise
        if debug:  # a write outside any run folder (a run folder says what it kept: DiskFullError)
            traceback.print_exc()
        print(f"error: {e.filename or 'an output file'}: the disk is full ({e.strerror}); free space and run it "
              "again.", file=sys.stderr)
        return 2
    except (MemoryError, RuntimeError) as e:  # an allocation that failed outside any run folder (which says
        detail = out_of_memory(e)              # what it kept: OutOfMemoryError); any other RuntimeError is a bug
        if detail is None:
            raise
        if debug:
            traceback.print_exc()
        print(f"error: vdm3d {name} ran out of memory{' ' + detail if detail else ''}; ask for less (a smaller "
              "--resolution, fewer frames, views or Gaussians), or close other programs, and run it again.",
              file=sys.stderr)
        return OutOfMemoryError.exit_code
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM/SIGHUP turned into Interrupted by _terminate_as_interrupt
        signum = getattr(e, "signum", signal.SIGINT)
        outcome = getattr(e, "outcome", "no run folder was being written, so nothing was kept")
        try:
            print(f"interrupted by {signal.Signals(signum).name}: {outcome}.", file=sys.stderr)
        except OSError:  # SIGHUP: the terminal is gone, and writing to it fails; the exit status still says it
            pass
        return 128 + int(signum)
    except SystemExit as e:  # argparse/tyro usage errors already printed their message
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:  # a job's --memory and --device act on this command's backbones only (main also runs in-process)
        restore()
        undebug()
        for module in ("vdm3d.models.hub.memory", "vdm3d.models.device"):  # --memory, --device
            if module in sys.modules:
                sys.modules[module].configure(None)


if __name__ == "__main__":
    sys.exit(main())
