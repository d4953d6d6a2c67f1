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
    block = text.rstrip().rsplit("\nexamples:\n", 1)
    return [line.split("#")[0].split() for line in block[1].splitlines()] if len(block) == 2 else []


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
