"""`vdm3d rerun RUN/manifest.json [--out NEW] [--overwrite] [JOB FLAGS...]`: repeat a run from its manifest.

A run's ``manifest.json`` records the command and the full config (every field, defaults included); a run
made from Python (a job's ``run_*``) is repeated by the job its recorded config type belongs to.
A job whose CLI takes ``--config`` (:mod:`vdm3d.cli.config`) is started as
``vdm3d JOB --config RUN/manifest.json --out NEW [JOB FLAGS...]``: the recorded config, not today's
defaults, so a changed default cannot change the result; any job flags given after the manifest
override single fields ("the same run with --fit-steps 500"). Other commands (``eval``, ``data``,
``train``) replay their recorded arguments with ``--out`` replaced. Relative paths start from the
folder the run was started in (the manifest's ``cwd``). At the end the new manifest's config is
compared with the old one and every differing field is listed, as are package versions, the code
revision, the CPU, the rasterizer or GL renderer, and input files that differ (:func:`comparison`). A run
resumed at another thread count than it started with cannot be repeated: rerun says so, before and after.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from vdm3d.io.runs import PACKAGE_PREFIX

HELP = "repeat a run exactly from its manifest.json (the recorded config), into a new folder"
REPLAYED = ("data", "eval", "train", "trajectory")  # groups that write run folders: their arguments replayed
EXAMPLES = """inputs: runs/cup is the run of `vdm3d object --image cup.png --out runs/cup`, runs/fern the run of `vdm3d fit ../shared/data/llff_fern --downscale 8 --out runs/fern`.

examples:
  vdm3d rerun runs/cup/manifest.json                        # into runs/cup-rerun/
  vdm3d rerun runs/cup/manifest.json --out runs/cup-500 --fit-steps 500
  vdm3d rerun runs/fern/manifest.json --out runs/fern --overwrite"""
IGNORED = ("out", "overwrite", "resume")
#: the job a run made from Python (``run_object(ObjectConfig(...))`` in a script) is repeated with, by the
#: config type its manifest records: its command is the script's, which names no vdm3d command
JOB_OF_CONFIG = {"ObjectConfig": "object", "CompleteConfig": "complete", "ExploreConfig": "explore",
                 "StylizeConfig": "stylize", "FitJobConfig": "fit"}


def read_manifest(path: Path) -> dict:
    from vdm3d.cameras.io_transforms import read_json
    from vdm3d.errors import InputError

    if path.is_dir():
        path = path / "manifest.json"
    data = read_json(path)
    if not isinstance(data, dict) or data.get("format") != "vdm3d.run":
        raise InputError(path=path, problem="is not a vdm3d run manifest", fix="pass RUN/manifest.json of a vdm3d run")
    command = data.get("command")
    if not isinstance(command, list) or (len(command) < 2 and data.get("config_type") not in JOB_OF_CONFIG):
        raise InputError(path=path, field="command", problem="does not name a vdm3d command",
                         fix="pass the manifest of a run made by the vdm3d command or a job's run_* function")
    return data


def job_argv(manifest: Path, data: dict, out: Path, overwrite: bool, extra: list[str]) -> list[str]:
    """The ``vdm3d`` arguments that repeat the run in ``manifest`` into ``out``."""
    from vdm3d.errors import InputError

    from vdm3d.cli.main import GROUPS

    command = [str(a) for a in data["command"]]
    at = next((i for i, a in enumerate(command[1:], 1) if a in GROUPS), None)  # after the program's path
    tail = ["--overwrite"] if overwrite else []
    if at is None and data.get("config_type") in JOB_OF_CONFIG:  # made from Python: its recorded config
        return [JOB_OF_CONFIG[data["config_type"]], "--config", str(manifest), "--out", str(out), *tail, *extra]
    if at is None:
        raise InputError(path=manifest, field="command", problem=f"{' '.join(command[:3])!r} names no vdm3d command",
                         fix="pass the manifest of a run made by the vdm3d command or a job's run_* function")
    job = command[at]
    if job not in (*JOB_OF_CONFIG.values(), *REPLAYED):  # `rerun` recursed until a RecursionError; `models`
        # (which writes no run) replayed a recorded --trust-pickle, a trust this command line never gave
        raise InputError(path=manifest, field="command",
                         problem=f"names `vdm3d {job}`, which writes no run folder to repeat",
                         fix="pass the manifest of a run made by a vdm3d job, eval, train, data or "
                             "trajectory command")
    if job in REPLAYED:
        recorded = _without_out(command[at + 1:])
        return [job, *recorded, "--out", str(out), *tail, *extra]
    return [job, "--config", str(manifest), "--out", str(out), *tail, *extra]


def recorded_device(data: dict, extra: Sequence[str]) -> list[str]:
    """``["--device", D]`` when the original run put its hub backbones on ``D`` (its command gave ``--device``)
    and this rerun names none: a GPU run's rerun runs there too (on the CPU, a full-size model takes hours).
    Where that device is missing the job says so in one sentence, and ``--device cpu`` given to rerun wins."""
    from vdm3d.cli.config import pop_flag

    if pop_flag(extra, "--device")[1] is not None:
        return []
    _, device = pop_flag([str(a) for a in data.get("command") or []], "--device")
    return ["--device", device] if device else []


def _without_out(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--out", "--resume"):
            skip = True
            continue
        if a.startswith(("--out=", "--resume=")) or a == "--overwrite":
            continue
        out.append(a)
    return out


def differences(old: dict, new: dict, prefix: str = "", old_cwd: str | None = None) -> list[str]:
    """Config fields that differ between two recorded configs (``out``/``overwrite``/``resume`` aside).

    A relative path of the old run and the absolute path it became (from the old ``cwd``) are equal.
    """
    diffs = []
    for key in sorted(set(old) | set(new)):
        if not prefix and key in IGNORED:
            continue
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += differences(a, b, f"{prefix}{key}.", old_cwd)
        elif a != b and not _same_path(a, b, old_cwd):
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


def _same_path(a, b, old_cwd: str | None) -> bool:
    if not (isinstance(a, str) and isinstance(b, str) and old_cwd) or Path(a).is_absolute() or not a:
        return False
    return (Path(old_cwd) / a).resolve() == Path(b).resolve()


def main(argv, prog: str = "vdm3d rerun") -> int:
    import os

    from vdm3d.cli.help_layout import wrap_help_text
    from vdm3d.cli.main import main as vdm3d_main

    parser = argparse.ArgumentParser(prog=prog, description=f"{HELP}.",
                                     epilog=wrap_help_text(EXAMPLES, examples=True),  # a narrow terminal
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, help="RUN/manifest.json (or the run folder)")
    parser.add_argument("--out", type=Path, default=None, help="new run folder (default: RUN-rerun beside the run)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args, extra = parser.parse_known_args(list(argv))
    manifest = args.manifest / "manifest.json" if args.manifest.is_dir() else args.manifest
    data = read_manifest(manifest)
    run = manifest.resolve().parent
    out = args.out or run.parent / f"{run.name}-rerun"
    command = job_argv(manifest.resolve(), data, out.resolve(), args.overwrite, extra)
    command += recorded_device(data, extra)
    print(f"rerun: vdm3d {' '.join(command)}", flush=True)
    apply_threads(data.get("threads"))
    legs = leg_threads(data)
    if legs:
        print(f"threads: the original run was resumed at another thread count ({_then(legs)}), which a rerun "
              "cannot repeat: it runs at one count throughout, so its results can differ from the original's",
              file=sys.stderr)
    cwd = os.getcwd()
    try:
        if command[0] in REPLAYED and data.get("cwd") and Path(data["cwd"]).is_dir():
            os.chdir(data["cwd"])  # relative paths of the recorded arguments mean what they meant then
        code = vdm3d_main(command)
    finally:
        os.chdir(cwd)
    new_manifest = out / "manifest.json"
    if code == 0 and new_manifest.is_file():
        for line in comparison(data, json.loads(new_manifest.read_text()), extra):
            print(line)
    return code


def comparison(old: dict, new: dict, extra: Sequence[str] = ()) -> list[str]:
    """What a rerun says at the end, one line each: whether the config is the original's (and, for a run
    resumed at another thread count, that the run is not), then package versions, code revision, CPU,
    rasterizer or GL renderer, and input files that differ. A manifest from before a field was recorded
    (no ``legs``) is compared on what it recorded: a library or backend it did not list is not a difference."""
    diffs = differences(old.get("config") or {}, new.get("config") or {}, old_cwd=old.get("cwd"))
    flags = [a for a in extra if a.startswith("--")]
    legs = leg_threads(old)
    if diffs:
        lines = [f"config: {len(diffs)} field(s) differ ({', '.join(flags) or 'no flags given'}): " + "; ".join(diffs)]
    elif legs:
        lines = [f"config: identical to the original, but the original ran in legs at {_then(legs)}, which a rerun "
                 "cannot repeat (its numbers may differ)"]
    else:
        lines = ["config: identical to the original"]
    recent = "legs" in old  # recorded since the manifest lists legs, code, CPU and every backend
    versions = differences(_recorded(old, new, "packages", recent), new.get("packages") or {})
    if versions:
        lines.append("packages differ from the original run (numbers may differ): " + "; ".join(versions))
    if "code" in old and old.get("code") != new.get("code"):
        lines.append(f"code differs from the original run (numbers may differ): {old.get('code')} -> {new.get('code')}")
    if "cpu" in old and old.get("cpu") != new.get("cpu"):
        lines.append("CPU differs from the original run (the C++ rasterizer is built for each CPU; numbers may "
                     f"differ): {(old.get('cpu') or {}).get('model')} -> {(new.get('cpu') or {}).get('model')}")
    backends = (differences(_recorded(old, new, "backends", recent), new.get("backends") or {})
                if "backends" in old else [])
    if backends:
        lines.append("backends differ from the original run (numbers may differ): " + "; ".join(backends))
    changed = input_differences(old, new)
    if changed:
        lines.append(f"inputs differ from the original run (numbers may differ): {'; '.join(changed)}")
    return lines


def _recorded(old: dict, new: dict, field: str, recent: bool) -> dict:
    """``old[field]``, where an older manifest's unlisted entries take the new run's value (not recorded then)."""
    before = old.get(field) or {}
    return before if recent else {**(new.get(field) or {}), **before}


def leg_threads(manifest: dict) -> list[int]:
    """The thread count of each leg of a run resumed at another count than it started with (the manifest's
    ``legs``; unknown counts left out); empty for a run in one leg, or whose legs all used one count."""
    counts = [leg.get("threads") for leg in manifest.get("legs") or [] if isinstance(leg, dict)]
    counts = [n for n in counts if isinstance(n, int)]
    return counts if len(set(counts)) > 1 else []


def _then(counts: list[int]) -> str:
    """``2 threads, then 1`` (``2, then 1, then 2 threads`` for more legs)."""
    if len(counts) == 2:
        return f"{counts[0]} thread{'s' * (counts[0] != 1)}, then {counts[1]}"
    return ", then ".join(map(str, counts)) + " threads"


def apply_threads(recorded: int | None) -> None:
    """Run with the original run's thread count (CPU reductions, and so the results, depend on it: explore's
    chunks build on each other and drift apart along the path), unless this command asked for one (``vdm3d --threads N rerun``, or ``OMP_NUM_THREADS``); say which."""
    from vdm3d.threads import chosen_explicitly, current_threads, set_threads

    now = current_threads()
    if not isinstance(recorded, int) or recorded < 1 or recorded == now:
        return
    if chosen_explicitly():
        print(f"threads: {now} as asked; the original run used {recorded} (numbers may differ: explore's video "
              "most, see docs/ecosystem.md, Reproducibility)", file=sys.stderr)
    else:
        set_threads(recorded)
        print(f"threads: {recorded}, as the original run (the global --threads N, given before `rerun`, chooses "
              "another count)", file=sys.stderr)


def input_differences(old: dict, new: dict) -> list[str]:
    """Input files whose hashes differ between two manifests (relative paths from each run's ``cwd``). A hub
    model's fingerprint (:func:`vdm3d.models.registry.hub_fingerprint_file`) is named as that model's
    weights, with where they were loaded from."""
    def by_path(manifest: dict) -> dict[str, str]:  # vdm3d's own files are named the same everywhere
        cwd = Path(manifest.get("cwd") or ".")
        return {k if k.startswith(PACKAGE_PREFIX) else str((cwd / k).resolve()): v
                for k, v in (manifest.get("inputs") or {}).items()}

    from vdm3d.io.cache import fingerprint_record

    a, b = by_path(old), by_path(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key):
            continue
        hub = fingerprint_record(key)
        if hub is None:
            out.append(f"{key} {'changed' if key in a and key in b else 'is new' if key in b else 'is gone'}")
        elif key in a and key in b:
            out.append(f"{hub[0]}'s weights in {hub[1]} changed")
        elif key in b:  # the old record of another place is "gone": said once, with the new place
            before = ((old.get("models") or {}).get(hub[0]) or {}).get("source")  # manifests since stop 33 say
            where = f"from {before}, where the original run loaded them" if before else \
                "from where the original run loaded them"
            out.append(f"{hub[0]}'s weights were loaded from {hub[1]}, not {where}")
    return out
