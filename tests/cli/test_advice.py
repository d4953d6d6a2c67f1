"""Advice that works: every `--flag` an error message (or a printed hint) names is a flag some
vdm3d command accepts, and the missing-weights sentence names the `hf download` command that the
installed huggingface_hub ships.

The messages are read from the source with :mod:`ast`: the string literals (and the module-level
string constants they use) inside ``raise`` statements, calls of ``...Error``/``...error``
constructors and helpers, functions named ``*_error`` and ``print`` calls. The accepted flags are
read from the ``--help`` of every command and subcommand, through the real CLI. Flags inside a
backticked command of another program (```hf download ... --local-dir ...```) are that program's.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vdm3d.cli.main import GROUPS, main

SRC = Path(__file__).resolve().parents[2] / "src" / "vdm3d"
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:[-.][a-z0-9]+)*")
BROKEN: set[str] = set()  # commands whose --help does not import
FOREIGN = re.compile(r"`(?!vdm3d )[a-z][\w.-]* [^`]*`")  # a backticked command of another program


def _callee(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


def _text(node: ast.AST, constants: dict[str, str]) -> str | None:
    """The text of a string literal, an f-string (placeholders as ``{}``) or a module string constant."""
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    return None


def message_flags() -> dict[str, set[str]]:
    """flag -> {"file:line"} for every flag named in an error message or printed hint."""
    found: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        constants = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                     for t in n.targets if isinstance(t, ast.Name)
                     and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
        roots = [n for n in ast.walk(tree)
                 if isinstance(n, ast.Raise)
                 or (isinstance(n, ast.Call) and (_callee(n).lower().endswith("error") or _callee(n) == "print"))
                 or (isinstance(n, ast.FunctionDef) and n.name.endswith("_error"))]
        for root in roots:
            parts = {id(v) for j in ast.walk(root) if isinstance(j, ast.JoinedStr) for v in j.values}
            for n in ast.walk(root):
                text = None if id(n) in parts else _text(n, constants)
                if not text:
                    continue
                for flag in FLAG.findall(FOREIGN.sub("", text)):
                    found.setdefault(flag, set()).add(f"{path.relative_to(SRC.parent)}:{root.lineno}")
    return found


def _help(argv: list[str]) -> str:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            main([*argv, "--help"])
    except ImportError:  # a job mid-integration: its own tests report it; its flags are unknown here
        BROKEN.add(argv[0])
    return out.getvalue()


def accepted_flags() -> set[str]:
    """Every flag of every command and subcommand, read from their --help."""
    os.environ.setdefault("COLUMNS", "200")
    flags, todo = set(FLAG.findall(_help([]))), [[g] for g in GROUPS]  # the overview: global --debug, --threads
    while todo:
        argv = todo.pop()
        text = _help(argv)
        flags |= set(FLAG.findall(text))
        if "subcommands" in text and len(argv) < 4:  # the bullets of tyro's subcommand box
            box = text.split("subcommands", 1)[1]
            todo += [[*argv, s] for s in re.findall(r"•\s+([\w-]+)", box)]
    return flags


@pytest.mark.slow
def test_every_flag_in_a_message_exists():
    accepted = accepted_flags()
    assert {"--image", "--resume", "--config", "--out", "--overwrite", "--procedural"} <= accepted
    missing = {flag: sorted(where) for flag, where in message_flags().items() if flag not in accepted}
    # the messages of a command that does not import cannot be checked against its flags
    own = tuple(f"vdm3d/{pkg}/{job}" for job in BROKEN for pkg in ("jobs", "cli", "eval"))
    missing = {f: w for f, w in missing.items() if not all(loc.startswith(own) for loc in w)}
    assert not missing, f"messages name flags no command accepts: {missing}"
    if BROKEN:
        pytest.skip(f"checked every command but {', '.join(sorted(BROKEN))}, whose --help does not import")


OWN = re.compile(r"`vdm3d ([^`]*)`")  # a backticked vdm3d command: its flags must be that command's


def message_commands() -> dict[tuple[str, ...], dict[str, set[str]]]:
    """(command words) -> {flag: {"file:line"}} for every backticked ``vdm3d ...`` command that an error
    message or printed hint gives to run."""
    found: dict[tuple[str, ...], dict[str, set[str]]] = {}
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(SRC.rglob("*.py"))}
    own = {path: {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
                  for t in n.targets if isinstance(t, ast.Name)
                  and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}
           for path, tree in trees.items()}
    shared = {k: v for c in own.values() for k, v in c.items() if k.isupper()}  # imported ones (CONVERT, TRUST_FLAG)
    for path, tree in trees.items():
        constants = {**shared, **own[path]}
        for root in ast.walk(tree):
            if not (isinstance(root, ast.Raise) or (isinstance(root, ast.Call) and (
                    _callee(root).lower().endswith("error") or _callee(root) == "print"))):
                continue
            # the message as one string: the pieces of an f-string joined, constants spelled out
            pieces = [_text(n, constants) or ("{}" if isinstance(n, ast.FormattedValue) else "")
                      for j in ast.walk(root) if isinstance(j, ast.JoinedStr) for n in [j]]
            pieces += [t for n in ast.walk(root) if isinstance(n, (ast.Constant, ast.Name))
                       for t in [_text(n, constants)] if t]
            for text in pieces:
                for command in OWN.findall(_expand(text, root, constants)):
                    words = tuple(w for w in command.split()[:2] if re.fullmatch(r"[a-z][a-z0-9_-]*", w))
                    for flag in FLAG.findall(command):
                        found.setdefault(words, {}).setdefault(flag, set()).add(
                            f"{path.relative_to(SRC.parent)}:{root.lineno}")
    return found


def _expand(text: str, root: ast.AST, constants: dict[str, str]) -> str:
    """An f-string's text with the module constants it interpolates spelled out (``{CONVERT}``)."""
    for j in ast.walk(root):
        if isinstance(j, ast.JoinedStr) and _text(j, constants) == text:
            return "".join(v.value if isinstance(v, ast.Constant) else
                           constants.get(getattr(v.value, "id", ""), "{}") for v in j.values)
    return text


def test_flags_of_a_vdm3d_command_in_a_message_are_that_commands():
    """A message that gives a vdm3d command to run (``vdm3d models convert A B --trust-pickle``) names
    only flags that this very command accepts: a flag of another command would be refused."""
    os.environ.setdefault("COLUMNS", "200")
    commands = message_commands()
    assert ("models", "convert") in commands and "--trust-pickle" in commands[("models", "convert")]
    wrong = {}
    for words, flags in commands.items():
        argv = list(words)
        while argv and not _help(argv):
            argv.pop()  # the second word was an argument, not a subcommand
        # no words left: the command gives options of vdm3d itself (`vdm3d --threads 2 ...`)
        accepted = set(FLAG.findall(_help(argv)))
        bad = {f: sorted(w) for f, w in flags.items() if f not in accepted}
        if bad:
            wrong[" ".join(words)] = bad
    assert not wrong, f"messages give vdm3d commands with flags those commands do not accept: {wrong}"


def test_the_scan_sees_the_messages_it_should():
    found = message_flags()
    assert "vdm3d/io/runs.py:" in " ".join(found["--resume"])  # --resume on a folder that never ran
    assert "--local-dir" not in found  # inside `hf download ...`: hf's own flag


def test_missing_weights_sentence_names_the_installed_hf_command():
    from vdm3d.models.weights import missing_weights_error

    text = str(missing_weights_error("sv3d-p", "stabilityai/sv3d", hub_id="stabilityai/sv3d",
                                     folder="~/models/sv3d", files=("sv3d_p.safetensors",)))
    assert "`hf download stabilityai/sv3d --local-dir ~/models/sv3d`" in text and "sv3d_p.safetensors" in text
    assert "huggingface-cli" not in text and "--allow-download" not in text
    hf = shutil.which("hf") or str(Path(os.sys.executable).with_name("hf"))
    if not Path(hf).is_file():
        pytest.skip("huggingface_hub's hf command is not installed")
    usage = subprocess.run([hf, "download", "--help"], capture_output=True, text=True, timeout=120).stdout
    # as the sentence uses it: a repo id, then --local-dir (huggingface_hub 0.34, the floor, prints argparse's
    # "usage: hf <command> [<args>] download ... repo_id", 1.x typer's "Usage: hf download [OPTIONS] REPO_ID")
    assert re.search(r"\bhf\b.*\bdownload\b", usage, re.I) and "repo_id" in usage.lower(), usage
    assert "--local-dir" in usage, usage


@pytest.mark.parametrize("job", ["object", "fit", "explore", "complete", "stylize", "train", "eval"])
def test_help_ends_with_examples_whose_flags_exist(job):
    """Every job's --help ends with three examples; each flag in them is one the command (for the
    train/eval groups: the subcommand the example runs) lists in its own --help."""
    os.environ.setdefault("COLUMNS", "200")
    text = _help([job])
    block = text.rstrip().rsplit("\nexamples:\n", 1)
    assert len(block) == 2, text[-400:]
    # an example's comment stands on a line of its own above a command too long for the terminal with it
    examples = [words for words in (line.split("#")[0].split() for line in block[1].splitlines()) if words]
    assert len(examples) == 3 and all(e[:2] == ["vdm3d", job] for e in examples), block[1]
    for example in examples:
        command = [job] if job not in ("train", "eval") else [job, example[2]]
        accepted = set(FLAG.findall((text if len(command) == 1 else _help(command)).rsplit("examples:", 1)[0]))
        assert {a for a in example if a.startswith("--")} <= accepted, example


@pytest.mark.parametrize("job", ["fit", "complete"])
def test_help_examples_on_fern_split_the_views_as_written(job):
    """An example that runs on the bundled fern scene parses to a split that fern allows: no train view is
    also held out (every 8th view from 0 is, by default), so it runs as written."""
    import importlib

    import numpy as np

    from vdm3d.cli.config import cli, pop_memory_flag
    from vdm3d.data.readers import split_indices

    fern = "../shared/data/llff_fern"
    views = len(np.load(Path(fern) / "poses_bounds.npy"))
    cls = {"fit": "vdm3d.jobs.fit:FitJobConfig", "complete": "vdm3d.jobs.complete:CompleteConfig"}[job]
    module, name = cls.split(":")
    config_cls = getattr(importlib.import_module(module), name)
    examples = [line for line in importlib.import_module(f"vdm3d.cli.{job}").EXAMPLES.splitlines()
                if line.strip().startswith("vdm3d ")]  # not the inputs note, which names fern too
    on_fern = [line.split("#")[0].split()[2:] for line in examples if fern in line]
    assert on_fern
    for argv in on_fern:
        argv, _ = pop_memory_flag(argv)  # --memory configures the hub backbones, not the split
        config = cli(config_cls, argv, f"vdm3d {job}")
        train, test = split_indices(views, config.split, fern)
        assert train and not set(train) & set(test), argv
