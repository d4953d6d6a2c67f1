"""Hub adapters: published video/image diffusion models through diffusers, behind the backbone protocol,
and depth estimators through transformers, behind the depth protocol (:mod:`vdm3d.models.depth`).

==================  ======================================================================  =========
module              model                                                                   process
==================  ======================================================================  =========
``svd``             SVD / SVD-XT image-to-video, V3D (an SVD fine-tune)                     EDM, v
``sv3d``            SV3D_p / SV3D_u (SVD UNet + polar/azimuth embeddings per frame)         EDM, v
``cogvideox``       CogVideoX-I2V (optionally a widened patch embed for extra map latents)  VP, v
``wan``             Wan2.1 text-to-video with per-token timesteps (WorldWarp)               flow
``flux``            FLUX + ControlNet (anchor images from edge maps)                        flow
``depth``           monocular depth through transformers (Depth Anything V2, DPT)          (depth)
==================  ======================================================================  =========

Each adapter converts the samplers' VE noise space to its native process at its own edge
(:mod:`vdm3d.diffusion.parameterizations`) and loads from a local folder or a hub id, offline by
default (:mod:`vdm3d.models.hub.base`). Importing this package does not import diffusers.
"""
