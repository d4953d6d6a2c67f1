"""Training the embedded tiny models (``vdm3d train vae|video|depth``) on procedural worlds.

:mod:`.loop` is the shared accelerate loop (EMA, checkpoints, resume); :mod:`.datasets` renders and
caches the training and held-out sets; :mod:`.vae`, :mod:`.video`, :mod:`.depth` hold each model's
config, batch sampler and loss.
"""
