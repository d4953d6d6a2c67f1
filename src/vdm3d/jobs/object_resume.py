"""Per-stage checkpoints of `vdm3d object`, so that ``--resume`` continues after the last finished stage.

The expensive stages each leave their result in the run folder's ``checkpoints/`` as safetensors
(:meth:`vdm3d.io.runs.RunFolder.save_stage`): the orbit frames and masks after ``generate_orbit``,
the Gaussians after ``fit`` and after ``refine``. A resumed run loads what is there and runs only the
stages after it; the stages are seeded from the config, so the finished run is byte-identical to
one that was never interrupted (``tests/jobs/test_object_resume.py``). The cheap stages (carving,
mesh, export) are simply run again.
"""

from __future__ import annotations

from typing import Any, Callable

from vdm3d.io.runs import RunFolder
from vdm3d.splat.gaussians import Gaussians
from vdm3d.views import Views

_GAUSSIAN_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


def orbit_stage(run: RunFolder, generate: Callable[[], tuple[Views, Any]], plan_again: Callable[[], Any],
                log: Callable[[], list], say: Callable[[str], None] = lambda _m: None, name: str = "orbit"
                ) -> tuple[Views, Any, list]:
    """The orbit (Views, plan) and the sampler's log: from the checkpoint of stage ``name``, or ``generate()``
    and save it.

    ``plan_again()`` rebuilds the orbit plan (cameras, input index) from the config alone.
    """
    saved = run.load_stage(name)
    if saved is not None:
        say(f"{name}: the interrupted run's frames (checkpoint), not sampled again")
        tensors, meta = saved
        plan = plan_again()
        orbit = Views(tensors["images"], plan.cameras, alphas=tensors["alphas"], origin=tuple(meta["origin"]),
                      fps=meta["fps"])
        return orbit, plan, meta.get("log") or []
    orbit, plan = generate()
    run.save_stage(name, {"images": orbit.images, "alphas": orbit.alphas}, origin=list(orbit.origin),
                   fps=orbit.fps, log=log())
    return orbit, plan, log()


def gaussians_stage(run: RunFolder, name: str, compute: Callable[[], Gaussians],
                    say: Callable[[str], None] = lambda _m: None) -> Gaussians:
    """Gaussians of stage ``name``: from the checkpoint, or ``compute()`` and save them."""
    saved = run.load_stage(name)
    if saved is not None:
        say(f"{name}: the interrupted run's Gaussians (checkpoint), not fitted again")
        return Gaussians(*(saved[0][f] for f in _GAUSSIAN_FIELDS))
    gaussians = compute()
    run.save_stage(name, {f: getattr(gaussians, f) for f in _GAUSSIAN_FIELDS})
    return gaussians
