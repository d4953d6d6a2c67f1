"""`vdm3d batch MANIFEST [--job JOB] [--out DIR] [--address ADDR]`: run a job over many cases on Ray.

The manifest format is in :mod:`vdm3d.batch.cases`, the running rules (skip finished cases, resume
broken ones, one process and run folder per case) in :mod:`vdm3d.batch.runner`. A summary table is
printed at the end and written to ``<out>/batch.json``; the exit status is 1 when a case failed. A stopped
batch (Ctrl-C, SIGTERM, SIGHUP) writes ``batch.json`` too and says which cases are done, which was stopped
and whether its checkpoint is kept; the same command continues.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated

import tyro
from vdm3d.options import Range

HELP = "run any job over many cases from a manifest (JSON lines or YAML) on Ray; reruns skip finished cases"
EXAMPLES = """inputs: photos.jsonl holds one case a line, its options as in a --config file: {"name": "cup", "image": "cup.png", "fit_steps": 300}; scenes.yaml a YAML list of cases, or {job: fit, options: {steps: 3000}, cases: [{data: scene/}, ...]}.

examples:
  vdm3d batch photos.jsonl --job object --out runs/photos         # local Ray, one case per CPU
  vdm3d batch scenes.yaml --address ray://head:10001 --cpus-per-case 4
  vdm3d batch photos.jsonl --job object --out runs/photos --no-ray  # one after another, no Ray"""


@dataclasses.dataclass(frozen=True)
class BatchConfig:
    """Run a job over the cases of a manifest, each into its own run folder."""

    manifest: tyro.conf.Positional[Path]
    """cases, one per line (JSON lines) or a YAML list / {job, options, cases} mapping"""
    job: str | None = None
    """the job of cases that name none (object, fit, complete, explore, stylize, ...)"""
    out: Path = Path("runs/batch")
    """folder of the cases' run folders, their logs (logs/) and the summary (batch.json)"""
    address: str | None = None
    """a Ray cluster to join (e.g. ray://head:10001 or auto); default: start Ray on this machine"""
    num_cpus: Annotated[int | None, Range(1)] = None
    """CPUs of the local Ray instance (default: all of this machine's)"""
    cpus_per_case: Annotated[int, Range(1)] = 1
    """CPUs each case asks Ray for; also its torch thread count"""
    gpus_per_case: Annotated[float, Range(0)] = 0.0
    """GPUs each case asks Ray for (0.5: two cases share one); object, explore, complete, stylize and eval cases
    then run their hub backbones there (--device cuda, unless a case names a device). 0: no GPU"""
    ray: bool = True
    """run on Ray; --no-ray runs the cases one after another on this machine, without Ray"""
    overwrite: bool = False
    """run finished cases again, replacing their folders (default: skip them)"""


def main(argv, prog: str = "vdm3d batch") -> int:
    from vdm3d.batch.cases import read_cases
    from vdm3d.batch.runner import (check_address, check_batch_out, print_case, run_and_summarize,
                                     summary_table)
    from vdm3d.cli.config import cli
    from vdm3d.errors import ConfigError

    config = cli(BatchConfig, argv, prog, description=HELP, examples=EXAMPLES)
    if config.cpus_per_case < 1:
        raise ConfigError(f"--cpus-per-case is {config.cpus_per_case}; give 1 or more.")
    if config.gpus_per_case and config.address is None:  # a local Ray would wait for absent GPUs forever
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(f"--gpus-per-case {config.gpus_per_case:g}: this machine has no CUDA device for the "
                              "cases (torch.cuda.is_available() is False); pass --gpus-per-case 0, or the --address "
                              "of a Ray cluster with GPUs.")
    check_batch_out(config.out)
    cases = read_cases(config.manifest, config.out, config.job)
    if config.ray:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--ray needs the ray package, which is not installed; run pip install 'vdm3d[batch]' "
                              "or pass --no-ray.") from None
        check_address(config.address)  # a host:port where nothing answers: Ray retried it for minutes

    print(f"batch: {len(cases)} cases from {config.manifest} -> {config.out}/", flush=True)
    results = run_and_summarize(cases, config.out / "logs", config.out / "batch.json", str(config.manifest),
                                use_ray=config.ray, address=config.address, num_cpus=config.num_cpus,
                                cpus_per_case=config.cpus_per_case, gpus_per_case=config.gpus_per_case,
                                overwrite=config.overwrite, report=print_case,
                                again="the same `vdm3d batch` command")
    print(summary_table(results))
    sys.stdout.flush()
    return 1 if any(r.status == "failed" for r in results) else 0
