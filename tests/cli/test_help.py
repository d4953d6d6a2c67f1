"""Every `vdm3d ... --help` page, reached through the real entry point: plain text (no Sphinx markup from the
docstrings tyro reads)."""

from __future__ import annotations

import contextlib
import io
import re

import pytest

from vdm3d.cli.main import GROUPS, main, plain_help


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, "--help"]) == 0, argv
    return out.getvalue()


def help_pages() -> dict[tuple[str, ...], str]:
    """The --help of every command and subcommand (the bullets of tyro's subcommand box, three deep)."""
    pages, todo = {}, [(g,) for g in GROUPS]
    while todo:
        argv = todo.pop()
        text = pages[argv] = _help(list(argv))
        if "subcommands" in text and len(argv) < 3:
            todo += [(*argv, s) for s in re.findall(r"•\s+([\w-]+)", text.split("subcommands", 1)[1])]
    return pages


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", "100")
        return help_pages()


def test_plain_help_converts_roles_and_literals():
    assert plain_help("see :func:`vdm3d.a.b` and :class:`~vdm3d.io.runs.RunFolder`, ``--carry`` or "
                      ":ref:`the guide <guide-label>`") == "see vdm3d.a.b and RunFolder, --carry or the guide"
    assert plain_help("a ``multi\nline`` literal") == "a multi\nline literal"


def test_no_help_page_shows_sphinx_markup(pages):
    assert len(pages) > 40 and ("eval", "object-orbit") in pages and ("trajectory", "make", "orbit") in pages
    marked = {" ".join(argv): m for argv, text in pages.items()
              for m in re.findall(r":(?:func|mod|class|meth|data|attr|ref):`|``", text)}
    assert not marked, marked


def test_preset_help_names_every_preset():
    from vdm3d.jobs.object import PRESETS

    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", _help(["object"])).split())
    entry = text.split("--preset STR", 1)[1].split("--backbone", 1)[0]
    assert all(name in entry for name in PRESETS) and "overrid" in entry


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*")


def _examples(text: str) -> list[list[str]]:
    """The example command lines at the end of ``text``, split into words (without their comments, which stand
    on lines of their own above a command too long for the terminal with its comment)."""
    block = text.rstrip().rsplit("\nexamples:\n", 1)
    lines = [line.split("#")[0].split() for line in block[1].splitlines()] if len(block) == 2 else []
    return [words for words in lines if words]


@pytest.mark.parametrize("group", ["train", "eval"])
def test_each_subcommand_page_ends_with_its_own_examples(pages, group):
    """`vdm3d train SUB --help` / `vdm3d eval SUB --help` end with examples that run SUB (not the group's
    generic ones), and every flag in an example is one its command's --help lists."""
    subs = [argv[1] for argv in pages if len(argv) == 2 and argv[0] == group]
    assert len(subs) >= 9
    for sub in subs:
        examples = _examples(pages[(group, sub)])
        assert any(e[:3] == ["vdm3d", group, sub] for e in examples), (sub, examples)
        for e in examples:
            page = pages[tuple(e[1:3])]
            accepted = set(FLAG.findall(page.rsplit("examples:", 1)[0]))
            assert {a for a in e if a.startswith("--")} <= accepted, e


def _narrow(argv: list[str], columns: int) -> tuple[int, list[str]]:
    """``vdm3d ARGV --help`` as a program in a terminal ``columns`` wide (COLUMNS); its status and lines."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    done = subprocess.run([sys.executable, "-m", "vdm3d", *argv, "--help"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(src)})
    return done.returncode, done.stdout.splitlines()


@pytest.mark.parametrize("argv", [[], ["object"]])
def test_help_fits_a_40_column_terminal(argv):
    """`COLUMNS=40 vdm3d object --help` gave 555 lines: tyro's help column was 14 letters wide, its description
    one 607-character line, and the overview's lines ran to 180 characters, for the terminal to cut mid-word.
    Now only an example's command line (never folded: a copied half would run) is wider than the terminal."""
    status, lines = _narrow(argv, 40)
    assert status == 0
    wide = [line for line in lines if len(line) > 40 and not line.startswith("  vdm3d ")]
    assert not wide, wide
    if argv:  # an option's help goes below its name, 4 in, instead of 14 letters beside it
        at = next(i for i, line in enumerate(lines) if line.startswith("│ --image PATH"))
        assert lines[at].rstrip("│ ") == "│ --image PATH"
        assert lines[at + 1].startswith("│     the input image: RGBA, RGB on a")
        assert len(lines) < 400
        examples = lines[lines.index("examples:"):]
        assert examples[1:3] == ["  # embedded tiny backbone, CPU; photos:", "  # GrabCut"]
        assert examples[3] == "  vdm3d object --image cup.png --out runs/cup"


@pytest.mark.parametrize("argv", [["object"], ["trajectory"]])
def test_help_in_a_terminal_a_few_columns_wide_finishes(argv):
    """Below about 6 columns tyro's help layout never finished (`COLUMNS=5 vdm3d object --help` hung); it is
    laid out 40 wide, for the terminal to fold."""
    status, lines = _narrow(argv, 5)
    assert status == 0 and lines[0].startswith(f"usage: vdm3d {argv[0]}")


def test_an_options_help_flows_as_one_paragraph(monkeypatch):
    """tyro kept every source line break of a field's docstring, so `vdm3d stylize --help` printed
    "any camera file explore's" alone on a line and the rest below it, and most pages had such ragged lines.
    An option's help is now one paragraph that the layout wraps at the terminal's width; blank lines and list
    items keep their breaks."""
    from vdm3d.cli.main import flowing_help

    monkeypatch.setenv("COLUMNS", "200")
    page = _help(["stylize"])
    assert any("any camera file explore's --path reads (vdm3d trajectory JSON" in line for line in page.splitlines())
    assert any("2 to 16 with tiny, 2 to 49 with hub" in line for line in page.splitlines())
    assert flowing_help("a\n  b\n\nc\n- d\n- e\n2. f") == "a b\n\nc\n- d\n- e\n2. f"
