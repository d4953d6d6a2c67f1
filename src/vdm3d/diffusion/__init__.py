"""Video diffusion core: schedules, parameterizations, guiders, step hooks, one sampler loop, warped noise.

Samplers are four small parts (STYLE.md): a schedule of per-element noise levels
(:mod:`~vdm3d.diffusion.schedules`), the parameterization that maps each backbone's native process
to the shared VE form (:mod:`~vdm3d.diffusion.parameterizations`), a guider
(:mod:`~vdm3d.diffusion.guiders`) and one loop (:mod:`~vdm3d.diffusion.samplers`), with step hooks
(:mod:`~vdm3d.diffusion.hooks`) and flow-warped noise (:mod:`~vdm3d.diffusion.noise_warp`).
"""
