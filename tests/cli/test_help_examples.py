"""The examples at the end of every --help page work when copied as they are, in order, from an empty folder.

Every page of every command and subcommand (``vdm3d trajectory make orbit --help`` too) ends with
examples. Each example's flags are those of the command it runs (which may be another command than the
page's: a line that makes an input). Each file an example reads is written by an earlier example on the
same page, or the page's ``inputs:`` note says where it comes from. Two examples on a page do not write
the same run folder (their own ``--out`` or the command's default) unless the later one continues the
earlier one (``--resume`` with the same options) or replaces it (``--overwrite``). The trajectory pages'
examples are run, as written, in a temporary folder.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex

import pytest

from vdm3d.cli.main import GROUPS, main

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*")
OUTPUTS = ("--out", "--first-frame", "--screenshot")  # flags whose value an example writes
# commands that may write into the folder an earlier example wrote: a batch (or an eval over a manifest)
# skips its finished cases when run again
REUSE_OUT = (("batch",),)


@functools.lru_cache(maxsize=None)
def page(*argv: str) -> str:
    """``vdm3d ARGV --help`` as printed (200 columns: no example is folded)."""
    os.environ["COLUMNS"] = "200"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            main([*argv, "--help"])
        except SystemExit:
            pass
    return out.getvalue()


def pages() -> list[tuple[str, ...]]:
    """Every command and subcommand, the groups' pages included."""
    found, todo = [()], [(g,) for g in GROUPS]  # () : the overview, `vdm3d --help`
    while todo:
        argv = todo.pop(0)
        found.append(argv)
        text = page(*argv)
        if "subcommands" in text and len(argv) < 4:  # the bullets of tyro's subcommand box
            box = text.split("subcommands", 1)[1].split("\nexamples:\n")[0]
            todo += [(*argv, s) for s in re.findall(r"•\s+([\w-]+)", box)]
    return found


def examples(text: str) -> list[list[str]]:
    """The example commands at the end of a page, as argument lists (comments dropped)."""
    block = text.rstrip().rsplit("\nexamples:\n", 1)
    if len(block) < 2:
        return []
    lines = [line.strip() for line in block[1].splitlines()]
    return [shlex.split(line, comments=True) for line in lines if line.startswith("vdm3d ")]


def note(text: str) -> str:
    """The page's ``inputs:`` note (above its examples), or ''."""
    head = text.rstrip().rsplit("\nexamples:\n", 1)[0]
    return head.rsplit("\ninputs: ", 1)[1] if "\ninputs: " in head else ""


def command(words: list[str]) -> tuple[str, ...]:
    """The command an example runs: its leading words that name a (sub)command."""
    argv: tuple[str, ...] = ()
    for word in words[1:]:
        if word.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", word):
            break
        if not page(*argv, word).startswith(f"usage: vdm3d {' '.join((*argv, word))}"):
            break
        argv = (*argv, word)
    return argv


def options(text: str) -> str:
    """A page without its examples (their flags are checked against this)."""
    return text.rsplit("\nexamples:\n", 1)[0]


def reads(words: list[str], cmd: tuple[str, ...]) -> list[str]:
    """The files and folders an example reads: its path-like arguments that are not outputs."""
    args = words[1 + len(cmd):]
    out, skip = [], False
    positional = 0
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in OUTPUTS or (a == "--resume" and i + 1 < len(args) and not args[i + 1].startswith("-")):
            skip = True  # written, or continued (a run folder: see the test of one folder written twice)
            continue
        if a.startswith("-"):
            continue
        if cmd == ("models", "convert") and not (i and args[i - 1].startswith("-")):
            positional += 1
            if positional == 2:  # models convert CHECKPOINT OUT
                continue
        if ("/" in a and "://" not in a) or re.search(r"\.[A-Za-z][A-Za-z0-9]{1,4}$", a):
            out.append(a)
    return out


def writes(words: list[str], cmd: tuple[str, ...]) -> list[str]:
    args = words[1 + len(cmd):]
    out = [args[i + 1] for i, a in enumerate(args[:-1]) if a in OUTPUTS]
    if cmd == ("models", "convert"):
        out += [a for a in args if not a.startswith("-")][1:2]
    return out


def default_out(cmd: tuple[str, ...]) -> str | None:
    """The default of the command's --out, read from its --help ('' for none)."""
    lines = [line.strip(" │") for line in options(page(*cmd)).splitlines()]
    start = next((i for i, line in enumerate(lines) if re.match(r"--out\b", line)), None)
    if start is None:
        return None
    entry = [lines[start]] + list(__import__("itertools").takewhile(
        lambda line: line and not line.startswith("-"), lines[start + 1:]))
    match = re.search(r"\(default: ([^)\s]+)\)", " ".join(entry))
    return None if not match or match.group(1) == "None" else match.group(1)


def normalized(words: list[str]) -> tuple[list[str], str | None, bool]:
    """An example's words with ``--resume DIR`` read as ``--out DIR``; its run folder; whether it resumes."""
    words, resume = list(words), False
    if "--resume" in words:
        i = words.index("--resume")
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else None
        del words[i:i + (2 if value else 1)]
        resume = True
        if value and "--out" not in words:
            words += ["--out", value]
    out = words[words.index("--out") + 1] if "--out" in words else None
    return words, out, resume


ALL = pages()


def test_the_walk_sees_the_nested_pages():
    assert {("trajectory", "make", "orbit"), ("eval", "object"), ("train", "orbit"), ("models", "verify"),
            ("data", "make")} <= set(ALL)


@pytest.mark.parametrize("argv", ALL, ids=lambda a: " ".join(a) or "overview")
def test_every_page_ends_with_examples(argv):
    text = page(*argv)
    assert examples(text), f"`vdm3d {' '.join(argv)} --help` shows no examples:\n{text[-300:]}"
    # a comment follows two spaces: a narrow terminal moves it above its command then (help_layout)
    block = text.rsplit("\nexamples:\n", 1)[1]
    assert not [line for line in block.splitlines() if " # " in line and "  # " not in line], block
    if len(argv) > 1 or argv and argv[0] not in ("train", "eval", "trajectory", "models", "data"):
        # a command's page shows itself run; a group's page may show only its subcommands
        assert any(command(e)[:len(argv)] == argv for e in examples(text)), examples(text)


@pytest.mark.parametrize("argv", ALL, ids=lambda a: " ".join(a) or "overview")
def test_example_flags_are_those_of_the_command_they_run(argv):
    text = page(*argv)
    # the examples and the vdm3d commands the inputs note gives to run
    lines = examples(text) + [shlex.split(c) for c in re.findall(r"`(vdm3d [^`]*)`", note(text))]
    for words in lines:
        cmd = command(words)
        assert cmd, words
        accepted = set(FLAG.findall(options(page(*cmd))))
        if cmd == ("rerun",):  # the other flags go to the job the manifest ran
            accepted |= {f for job in ("object", "fit", "complete", "explore", "stylize")
                         for f in FLAG.findall(options(page(job)))}
        assert {w for w in words if w.startswith("--")} <= accepted, (words, cmd)


@pytest.mark.parametrize("argv", ALL, ids=lambda a: " ".join(a) or "overview")
def test_example_inputs_are_made_above_or_explained(argv):
    text = page(*argv)
    said, made = note(text), []
    for words in examples(text):
        cmd = command(words)
        for path in reads(words, cmd):
            parents = [path, *(path.rsplit("/", k)[0] for k in range(1, path.count("/") + 1))]
            parents = [p.rstrip("/") for p in parents if p.rstrip("/")]
            by_example = any(p == m.rstrip("/") for p in parents for m in made)
            assert by_example or any(p in said for p in parents), (
                f"`vdm3d {' '.join(argv)} --help`: {' '.join(words)!r} reads {path}, which no example above it "
                f"writes and its inputs note does not explain ({said!r})")
        made += writes(words, cmd)


@pytest.mark.parametrize("argv", ALL, ids=lambda a: " ".join(a) or "overview")
def test_examples_on_a_page_do_not_write_one_folder_twice(argv):
    text = page(*argv)
    written: dict[str, list[str]] = {}
    for words in examples(text):
        cmd = command(words)
        if cmd[:1] in [r[:1] for r in REUSE_OUT] or "--manifest" in words or "--config" in words:
            continue
        plain, out, resume = normalized(words)
        out = out or default_out(cmd)
        if out is None:
            continue
        if out in written and "--overwrite" not in words:
            assert resume, f"{' '.join(words)!r} writes {out}, which {' '.join(written[out])!r} above it wrote"
            assert plain == written[out], (
                f"{' '.join(words)!r} resumes {out} with other options than {' '.join(written[out])!r} "
                "started it with: the run would refuse")
        written[out] = plain


TRAJECTORY_PAGES = [a for a in ALL if a[:1] == ("trajectory",) and "from-video" not in a]


@pytest.mark.parametrize("argv", TRAJECTORY_PAGES, ids=" ".join)
def test_trajectory_examples_run_as_written_from_an_empty_folder(argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = 0
    for words in examples(page(*argv)):
        if "from-video" in words:  # needs COLMAP and a video of the user's
            continue
        rc = main([*words[1:], "--threads", "1"])
        out = capsys.readouterr()
        assert rc in (0, None), (words, out.err[-500:])
        for path in writes(words, command(words)):
            assert (tmp_path / path).exists(), (words, path)
        ran += 1
    assert ran


def test_eval_complete_without_fern_says_so_before_rendering_a_room(tmp_path, monkeypatch, capsys):
    """`vdm3d eval complete --rooms 5` (its page's example) away from the team's data: one sentence naming
    --data-root and --no-fern at once, not a missing-folder error after minutes of rooms."""
    import vdm3d.eval.complete as harness

    def render(*args, **kwargs):
        raise AssertionError("a room was rendered before fern was looked for")

    monkeypatch.setattr(harness, "write_room_case", render)
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "complete", "--rooms", "5", "--work", "w", "--out", "r", "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: ../shared/data/llff_fern: does not exist; give --data-root the folder that holds "
                   "llff_fern (LLFF's fern scene), or pass --no-fern to score the rooms only."), err
    assert not (tmp_path / "w").exists() and not (tmp_path / "r").exists() and not (tmp_path / ".r.partial").exists()
