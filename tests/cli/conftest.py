"""Fixtures of the `vdm3d` program tests: a fake command run through the real entry point."""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def fake_command():
    """``script(body)``: the text of a Python program (for ``python -c``) that defines ``body``'s function
    ``main(argv, prog)`` as the vdm3d command ``fake`` and runs ``vdm3d`` through :func:`vdm3d.cli.main.main`
    (``python -c SCRIPT fake ARGS``), so that signals, streams and exit statuses are the program's own."""

    def script(body: str) -> str:
        return textwrap.dedent(body).strip() + textwrap.dedent("""

            import importlib.machinery, sys, types
            from vdm3d.cli import main as cli_main

            module = types.ModuleType("vdm3d_fake_command")
            module.__spec__ = importlib.machinery.ModuleSpec("vdm3d_fake_command", None)
            module.main = main
            sys.modules["vdm3d_fake_command"] = module
            cli_main.GROUPS["fake"] = "vdm3d_fake_command"
            sys.exit(cli_main.main())
            """)

    return script
