"""The browser viewer behind ``vdm3d view``: content loading (:mod:`.content`), the viser scene
(:mod:`.server`) and headless screenshots (:mod:`.browser`). viser is imported only when serving."""
