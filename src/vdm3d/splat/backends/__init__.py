"""Rasterization backends: ``torch_ref`` (dense reference), ``torch`` (tiled CPU), ``numba`` (compiled CPU),
``cpp`` (numba's projection with a vectorized C++ rasterizer; the CPU default), ``gsplat`` (CUDA).

Each backend module exposes ``render_backend(gaussians, cameras, sh_degree, background) ->
RenderOutput`` for a flat batch of cameras; :func:`vdm3d.splat.render.render` picks one.
"""
