"""Mesh files read with trimesh, never reaching outside the mesh's own folder.

A glTF's buffers and images, and an OBJ's ``mtllib`` and its textures, are other files the mesh names by
a path (or a URL). trimesh before 5.0 opened whatever path was named, absolute or ``../``: loading a mesh
from somewhere else read any file the user can read (``/home/me/.ssh/id_rsa`` as a vertex buffer, a
private photo as a texture, then rendered into the outputs). pyproject allows trimesh 4, so
:func:`load_trimesh` gives trimesh a resolver of its own that opens only files inside the mesh's folder,
whatever trimesh's version: a glTF naming a file outside it is one sentence naming the mesh and the file;
an OBJ whose material file lies outside loads without it (trimesh skips a material it cannot open, as it
does a missing one). A URL is never fetched (trimesh's file resolver has no network, and remote loading
stays off).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from vdm3d.errors import InputError


def _folder_resolver(path: Path) -> Any:
    """A trimesh resolver for the files beside ``path`` and below its folder, and no others."""
    import trimesh

    class FolderResolver(trimesh.resolvers.FilePathResolver):
        def get(self, name: str) -> bytes:
            root = Path(self.parent).resolve()
            name = name.strip()
            # as named, then as if relative, then by its name alone (an OBJ exported with another machine's
            # absolute paths, its texture copied beside it): trimesh's own order
            for candidate in (name, name.lstrip("/"), os.path.basename(name)):
                found = (root / candidate).resolve()
                if found.is_relative_to(root) and found.is_file():
                    return found.read_bytes()
            if not (root / name).resolve().is_relative_to(root):
                said = f"names {name!r}, a file outside its folder, which vdm3d does not read for a mesh"
                raise InputError(path=path, problem=said,
                                 fix="copy that file beside the mesh and name it there")
            raise FileNotFoundError(name)

        def namespaced(self, namespace: str) -> Any:
            return FolderResolver(os.path.join(self.parent, namespace))

    return FolderResolver(str(path))


def load_trimesh(path: str | Path, **kwargs: Any) -> Any:
    """``trimesh.load(path, **kwargs)`` with a resolver confined to the mesh's folder (see the module
    docstring). Raises :class:`InputError` for a file the mesh names outside it; other failures are
    trimesh's, for the caller to put in its own sentence."""
    import trimesh

    return trimesh.load(str(path), resolver=_folder_resolver(Path(path)), **kwargs)
