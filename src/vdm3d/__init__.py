"""vdm3d: video diffusion models as 3D tools.

The four types that move between stages (see docs/architecture.md): :class:`~vdm3d.cameras.Cameras`,
:class:`~vdm3d.views.Views`, ``Gaussians`` (``vdm3d.splat``) and ``Trajectory``
(``vdm3d.cameras.trajectory``). Each job is a config dataclass and a ``run_*`` function in
``vdm3d.jobs`` (docs/python.md shows how to call them).
"""

__version__ = "0.1.0"
