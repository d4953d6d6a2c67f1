"""vdm3d: video diffusion models as 3D tools.

The four types that move between stages (see DESIGN.md): :class:`~vdm3d.cameras.Cameras`,
:class:`~vdm3d.views.Views`, ``Gaussians`` (``vdm3d.splat``) and ``Trajectory``
(``vdm3d.cameras.trajectory``).
"""

__version__ = "0.1.0"
