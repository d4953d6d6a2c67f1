"""Procedural objects: 1 to 4 textured primitives joined into one shape, normalised to the unit sphere.

``make_object(seed)`` is a pure function of the seed (a ``numpy`` generator seeded with
``[seed, OBJECT_STREAM]``), so the same seed gives the same arrays bit for bit and different seeds
give different objects.

Recipe:

1. draw the number of parts (uniform in 1..4);
2. the first part sits at the origin; every further part is attached to a random surface point of
   an earlier part, its centre pushed out along the surface normal by 0-60 % of its own size, so the
   parts overlap and read as one shape (the union is what the z-buffer shows; interiors are hidden);
3. every part gets a random rotation, a random primitive (:mod:`.shapes`), a random colour and a
   random texture (checker, stripes or noise, :mod:`.textures`), and its own instance id (1..4);
4. the whole object is moved and scaled so its bounding sphere is the unit sphere;
5. a random light (:meth:`Light.random`), white background.

Its palette (saturation 0.3-0.9) never draws the white, cream and pastel objects that many real meshes are;
:func:`light_palette` repaints an object's patterns in such colours (training sets mix them in with
``ObjectSetConfig.light_share``; evaluation cases ask for them with ``"palette": "light"``).

Nor is a random union of parts ever mirror-symmetric, while most things people model or scan are (animals,
figurines, vehicles, furniture): :func:`mirror_symmetric` joins an object with its mirror image through an
upright plane, so that the back of such an object is the front's outline mirrored (training sets mix them in
with ``ObjectSetConfig.symmetric_share``; evaluation cases ask for them with ``"shape": "symmetric"``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial.transform import Rotation

from vdm3d.geometry.mesh_scene import Light, MeshScene, Part
from vdm3d.data.procedural.shapes import random_primitive
from vdm3d.data.procedural.textures import light_colors, random_texture, repaint

OBJECT_STREAM = 0x0B7EC7
LIGHT_STREAM = 0x11647E
MIRROR_STREAM = 0x5E1F51
TEXTURE_SIZE = 128


def random_part(rng: np.random.Generator, size: float, instance_id: int, texture_size: int = TEXTURE_SIZE
                ) -> tuple[Part, dict]:
    """One randomly shaped, rotated and textured primitive at the origin."""
    surf, kind = random_primitive(rng, size=size)
    rot = Rotation.random(random_state=rng).as_matrix()
    texture, tex_kind = random_texture(rng, size=texture_size)
    verts = surf.vertices.astype(np.float64) @ rot.T
    normals = surf.normals.astype(np.float64) @ rot.T
    part = Part(verts, surf.faces, normals, surf.uv, texture, np.ones((len(verts), 3), np.float32),
                instance_id=instance_id, name=kind)
    return part, {"primitive": kind, "texture": tex_kind}


def make_object(seed: int, *, max_parts: int = 4, texture_size: int = TEXTURE_SIZE) -> MeshScene:
    """A random object of 1..``max_parts`` textured parts inside the unit sphere (see module doc)."""
    rng = np.random.default_rng([int(seed), OBJECT_STREAM])
    n_parts = int(rng.integers(1, max_parts + 1))
    parts: list[Part] = []
    info = []
    for k in range(n_parts):
        size = 1.0 if k == 0 else float(rng.uniform(0.35, 0.8))
        part, meta = random_part(rng, size, instance_id=k + 1, texture_size=texture_size)
        if k > 0:
            host = parts[int(rng.integers(len(parts)))]
            i = int(rng.integers(len(host.vertices)))
            anchor, normal = host.vertices[i].astype(np.float64), host.normals[i].astype(np.float64)
            m = np.eye(4)
            m[:3, 3] = anchor + normal * size * float(rng.uniform(0.0, 0.6))
            part = part.transformed(m)
        parts.append(part)
        info.append(meta)
    scene = MeshScene(parts=parts, light=Light.random(rng), background=(1.0, 1.0, 1.0), kind="object",
                  seed=int(seed), meta={"parts": info}, closed=True)
    return scene.normalized(1.0)


def light_palette(scene: MeshScene, seed: int) -> MeshScene:
    """``scene`` with every part's pattern repainted in the light palette (:func:`light_colors`); half of the
    objects get one palette for all their parts (one material, like a glazed figurine). A pure function of
    ``seed``; the geometry and light are unchanged."""
    rng = np.random.default_rng([int(seed), LIGHT_STREAM])
    shared = light_colors(rng) if rng.random() < 0.5 else None
    parts = [dataclasses.replace(p, texture=repaint(p.texture, *(shared or light_colors(rng)))) for p in scene.parts]
    return dataclasses.replace(scene, parts=parts, meta={**scene.meta, "palette": "light"})


def mirror_symmetric(scene: MeshScene, seed: int) -> MeshScene:
    """``scene`` joined with its mirror image through an upright plane (containing the z axis, the orbit's up),
    renormalised to the unit sphere: a mirror-symmetric object. The object is first moved off the plane by
    0-45 % of its radius along the plane's normal, so parts far from the plane come out as pairs (legs, ears,
    handles) and parts near it merge with their image (a body, a head). A pure function of ``seed``; the
    textures, instance ids and the light are the object's (an image keeps its part's), the mirrored faces wound
    again so that they still face outwards;
    ``meta["mirror_plane"]`` is the plane ``[nx, ny, nz, d]``, the points with ``n . x = d`` (``d`` small: the
    centre of the bounds, which normalising moves to the origin, need not lie on the plane)."""
    rng = np.random.default_rng([int(seed), MIRROR_STREAM])
    angle = float(rng.uniform(0.0, np.pi))
    normal = np.array([np.cos(angle), np.sin(angle), 0.0])
    shift = np.eye(4)
    shift[:3, 3] = normal * float(rng.uniform(0.0, 0.45))
    reflect = np.eye(4)
    reflect[:3, :3] -= 2.0 * np.outer(normal, normal)
    moved = [p.transformed(shift) for p in scene.parts]
    mirrored = [dataclasses.replace(p.transformed(reflect), faces=p.faces[:, ::-1].copy()) for p in moved]
    joined = dataclasses.replace(scene, parts=moved + mirrored, meta={**scene.meta, "shape": "symmetric"})
    centre, radius = joined.bounding_sphere()  # the normalisation below moves the plane off the origin a little
    plane = [*normal.tolist(), float(-normal @ centre.astype(np.float64) / radius)]
    normalized = joined.normalized(1.0)
    return dataclasses.replace(normalized, meta={**normalized.meta, "mirror_plane": plane})
