"""Procedural rooms: textured walls, floor and ceiling, one opening, 3-10 pieces of furniture.

``make_room(seed)`` is a pure function of the seed. The room is an axis-aligned box
``[-Lx/2, Lx/2] x [-Ly/2, Ly/2] x [0, Hc]`` in metres (z up), with:

* floor, ceiling and four walls, each its own part with a repeating texture (tiles or planks on the
  floor, wallpaper or plaster on the walls); every wall is a 3x3 grid of quads so that the opening
  (a door or a window, cut from one wall and lined with a reveal as deep as the wall is thick) leaves
  no T-junctions, hence no false mesh boundaries for the edge renderer;
* furniture built from the primitives of :mod:`.shapes`: tables, chairs, cabinets, sofas, lamps,
  round tables and small procedural objects (:func:`make_object`) standing on the floor; each piece
  is one instance id; pieces are placed by rejection so their footprints (circles) do not overlap
  each other, the walls, or the space in front of a door;
* a random light from above and a sky-coloured background seen through the opening.

``scene.meta`` keeps the facts a camera planner needs (room size, footprints, opening), and
:func:`room_path` uses them: it plans a smooth path at eye height through free floor space, at least
``clearance`` from walls and footprints, looking at points across the room.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from vdm3d.cameras.camera import Cameras, look_at
from vdm3d.data.procedural.objects import make_object
from vdm3d.geometry.mesh_scene import Light, MeshScene, Part
from vdm3d.data.procedural.shapes import Surface, cone, cylinder, rounded_box
from vdm3d.data.procedural.textures import random_color, random_texture

ROOM_STREAM = 0x2003
PATH_STREAM = 0x9A7
SKY = (0.62, 0.76, 0.93)
FURNITURE = ("table", "chair", "cabinet", "sofa", "lamp", "round_table", "decor")
AGAINST_WALL = ("cabinet", "sofa")


def _pose(x, y, z, yaw) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("z", yaw).as_matrix()
    m[:3, 3] = (x, y, z)
    return m


def _part(surf: Surface, m: np.ndarray, texture: np.ndarray, instance_id: int, name: str) -> Part:
    p = Part(surf.vertices, surf.faces, surf.normals, surf.uv, texture, np.ones((len(surf.vertices), 3), np.float32),
             instance_id=instance_id, name=name)
    return p.transformed(m)


def _quad_grid(xs: np.ndarray, zs: np.ndarray, skip: set[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``[(x, z)]`` and faces of a grid of quads over ``xs x zs`` minus the cells in ``skip``."""
    gx, gz = np.meshgrid(xs, zs)  # [nz, nx]
    verts = np.stack([gx.reshape(-1), gz.reshape(-1)], 1)
    nx = len(xs)
    faces = []
    for j in range(len(zs) - 1):
        for i in range(nx - 1):
            if (i, j) in skip:
                continue
            a, b, c, d = j * nx + i, j * nx + i + 1, (j + 1) * nx + i + 1, (j + 1) * nx + i
            faces += [[a, b, c], [a, c, d]]
    return verts, np.array(faces, np.int32)


def _orient(verts: np.ndarray, faces: np.ndarray, normals: np.ndarray) -> np.ndarray:
    """Flip faces whose winding disagrees with their vertex normals (so back faces can be culled)."""
    v = verts[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    flip = (n * normals[faces].sum(1)).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def _wall(length: float, height: float, opening: tuple[float, float, float, float] | None, thickness: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A wall in its local frame: x along the wall (0..length), z up, y = 0 inside face, y < 0 outside.

    ``opening = (x0, x1, z0, z1)`` is cut out and lined with a reveal of depth ``thickness``.
    Returns vertices ``[V, 3]``, faces (wound so their normals face the room or the hole), normals,
    and uv in metres (x along, z up).
    """
    if opening is None:
        v2, f = _quad_grid(np.array([0.0, length]), np.array([0.0, height]), set())
        verts = np.stack([v2[:, 0], np.zeros(len(v2)), v2[:, 1]], 1)
        normals = np.tile([0.0, 1.0, 0.0], (len(verts), 1))
        return verts, _orient(verts, f, normals), normals, v2.copy()
    x0, x1, z0, z1 = opening
    xs = np.array([0.0, x0, x1, length])
    zs = np.unique(np.array([0.0, z0, z1, height]))
    j_hole = int(np.searchsorted(zs, z0))  # the row whose bottom is z0
    v2, f = _quad_grid(xs, zs, {(1, j_hole)})
    verts = [np.stack([v2[:, 0], np.zeros(len(v2)), v2[:, 1]], 1)]
    normals = [np.tile([0.0, 1.0, 0.0], (len(v2), 1))]
    uvs = [v2.copy()]
    faces = [f]
    n = len(v2)
    hole = np.array([(x0 + x1) / 2, (z0 + z1) / 2])
    # reveal: 4 quads from the hole's rim (y = 0) to the outside face (y = -thickness)
    rim = [(x0, z0), (x1, z0), (x1, z1), (x0, z1)]
    for k in range(4):
        (ax, az), (bx, bz) = rim[k], rim[(k + 1) % 4]
        if az == bz == 0.0:  # a door has no sill
            continue
        q = np.array([[ax, 0, az], [bx, 0, bz], [bx, -thickness, bz], [ax, -thickness, az]])
        verts.append(q)
        to_hole = hole - np.array([(ax + bx) / 2, (az + bz) / 2])  # the reveal faces the hole's centre
        normals.append(np.tile([to_hole[0], 0.0, to_hole[1]] / np.linalg.norm(to_hole), (4, 1)))
        along = np.hypot(bx - ax, bz - az)
        uvs.append(np.array([[0, 0], [along, 0], [along, thickness], [0, thickness]]))
        faces.append(np.array([[n, n + 1, n + 2], [n, n + 2, n + 3]], np.int32))
        n += 4
    verts, normals = np.concatenate(verts), np.concatenate(normals)
    return verts, _orient(verts, np.concatenate(faces), normals), normals, np.concatenate(uvs)


def _surface_texture(rng, kinds, light: bool, size: int = 256) -> np.ndarray:
    base = random_color(rng, saturation=(0.05, 0.4), value=(0.6, 0.95) if light else (0.3, 0.7))
    kind = kinds[int(rng.integers(len(kinds)))]
    return random_texture(rng, size=size, kind=kind, base=base)[0]


def _shell(rng, lx, ly, hc, opening_wall, opening) -> tuple[list[Part], float]:
    """Floor (id 1), ceiling (id 2) and walls (ids 3-6) as parts."""
    parts = []
    tile = float(rng.uniform(0.4, 1.2))
    floor_tex = _surface_texture(rng, ("checker", "stripes", "noise"), light=False)
    ceil_tex = _surface_texture(rng, ("noise",), light=True)
    wall_tex = _surface_texture(rng, ("stripes", "noise", "checker"), light=True)
    for z, iid, name, tex in ((0.0, 1, "floor", floor_tex), (hc, 2, "ceiling", ceil_tex)):
        v2, f = _quad_grid(np.array([-lx / 2, lx / 2]), np.array([-ly / 2, ly / 2]), set())
        verts = np.stack([v2[:, 0], v2[:, 1], np.full(len(v2), z)], 1)
        normals = np.tile([0.0, 0.0, 1.0 if z == 0 else -1.0], (len(verts), 1))  # into the room
        parts.append(Part(verts, _orient(verts, f, normals), normals, v2 / tile, tex,
                          np.ones((len(verts), 3), np.float32), instance_id=iid, name=name))
    # walls: (start corner, direction along, length, inward normal)
    corners = [((-lx / 2, -ly / 2), 0.0, lx), ((lx / 2, -ly / 2), np.pi / 2, ly),
               ((lx / 2, ly / 2), np.pi, lx), ((-lx / 2, ly / 2), -np.pi / 2, ly)]
    thickness = 0.15
    for k, ((cx, cy), ang, length) in enumerate(corners):
        verts, faces, normals, uv = _wall(length, hc, opening if k == opening_wall else None, thickness)
        m = _pose(cx, cy, 0.0, ang)  # local x along the wall, local +y points into the room
        p = Part(verts, faces, normals, uv / tile, wall_tex, np.ones((len(verts), 3), np.float32),
                 instance_id=3 + k, name=f"wall{k}")
        parts.append(p.transformed(m))
    return parts, thickness


def _furniture(rng, kind: str, iid: int, seed: int) -> tuple[list[tuple[Surface | Part, np.ndarray, str]], float, float]:
    """Parts in the piece's local frame (floor at z = 0, front towards -y), footprint radius, height."""
    out = []
    if kind == "table":
        w, d, h = rng.uniform(0.8, 1.6), rng.uniform(0.6, 1.0), rng.uniform(0.7, 0.78)
        out.append((rounded_box(w / 2 - 0.01, d / 2 - 0.01, 0.01, 0.01), _pose(0, 0, h - 0.02, 0), "top"))
        for sx in (-1, 1):
            for sy in (-1, 1):
                out.append((cylinder(0.03, h - 0.04, nu=12, nv=1), _pose(sx * (w / 2 - 0.08), sy * (d / 2 - 0.08),
                                                                          (h - 0.04) / 2, 0), "leg"))
        return out, float(np.hypot(w, d) / 2), h
    if kind == "chair":
        s, h = rng.uniform(0.4, 0.5), rng.uniform(0.42, 0.48)
        out.append((rounded_box(s / 2 - 0.01, s / 2 - 0.01, 0.01, 0.01), _pose(0, 0, h, 0), "seat"))
        for sx in (-1, 1):
            for sy in (-1, 1):
                out.append((cylinder(0.02, h, nu=12, nv=1), _pose(sx * (s / 2 - 0.04), sy * (s / 2 - 0.04), h / 2, 0),
                            "leg"))
        back = rng.uniform(0.35, 0.5)
        out.append((rounded_box(s / 2 - 0.01, 0.01, back / 2 - 0.01, 0.01), _pose(0, s / 2 - 0.02, h + back / 2, 0),
                    "back"))
        return out, float(s / np.sqrt(2)), h + back
    if kind == "cabinet":
        w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.35, 0.55), rng.uniform(0.8, 2.0)
        r = 0.02
        out.append((rounded_box(w / 2 - r, d / 2 - r, h / 2 - r, r), _pose(0, 0, h / 2, 0), "body"))
        return out, float(np.hypot(w, d) / 2), h
    if kind == "sofa":
        w, d = rng.uniform(1.4, 2.0), rng.uniform(0.8, 1.0)
        r = 0.08
        out.append((rounded_box(w / 2 - r, d / 2 - r, 0.22 - r, r), _pose(0, 0, 0.22, 0), "base"))
        out.append((rounded_box(w / 2 - r, 0.12 - r, 0.25 - r, r), _pose(0, d / 2 - 0.12, 0.65, 0), "back"))
        return out, float(np.hypot(w, d) / 2), 0.9
    if kind == "lamp":
        h = rng.uniform(1.3, 1.7)
        out.append((cylinder(0.15, 0.03, nu=24, nv=1), _pose(0, 0, 0.015, 0), "base"))
        out.append((cylinder(0.015, h - 0.2, nu=12, nv=1), _pose(0, 0, (h - 0.2) / 2, 0), "pole"))
        out.append((cone(0.22, 0.25, r_top=0.1, nu=24, nv=2), _pose(0, 0, h - 0.125, 0), "shade"))
        return out, 0.25, h
    if kind == "round_table":
        r, h = rng.uniform(0.35, 0.6), rng.uniform(0.7, 0.76)
        out.append((cylinder(r, 0.04, nu=36, nv=1), _pose(0, 0, h - 0.02, 0), "top"))
        out.append((cylinder(0.04, h - 0.04, nu=12, nv=1), _pose(0, 0, (h - 0.04) / 2, 0), "leg"))
        out.append((cylinder(0.25 * r + 0.1, 0.03, nu=24, nv=1), _pose(0, 0, 0.015, 0), "foot"))
        return out, float(r), h
    if kind == "decor":
        obj = make_object(seed)
        size = rng.uniform(0.2, 0.4)
        lowest = min(float(p.vertices[:, 2].min()) for p in obj.parts)
        m = np.eye(4)
        m[:3, :3] *= size
        m[2, 3] = -lowest * size
        return [(p, m, "decor") for p in obj.parts], float(size), float(2 * size)
    raise ValueError(kind)  # pragma: no cover


def make_room(seed: int, *, min_furniture: int = 3, max_furniture: int = 10) -> MeshScene:
    """A furnished room (see the module docstring); ``scene.meta`` holds the layout."""
    rng = np.random.default_rng([int(seed), ROOM_STREAM])
    lx, ly, hc = float(rng.uniform(3.5, 6.5)), float(rng.uniform(3.5, 6.5)), float(rng.uniform(2.5, 3.1))
    opening_wall = int(rng.integers(4))
    wall_len = lx if opening_wall % 2 == 0 else ly
    is_door = bool(rng.random() < 0.5)
    width = float(rng.uniform(0.8, 1.1) if is_door else rng.uniform(0.8, 2.0))
    x0 = float(rng.uniform(0.3, wall_len - 0.3 - width))
    z0, z1 = (0.0, float(rng.uniform(2.0, 2.2))) if is_door else (float(rng.uniform(0.7, 1.0)), 0.0)
    if not is_door:
        z1 = min(z0 + float(rng.uniform(1.0, 1.5)), hc - 0.2)
    opening = (x0, x0 + width, z0, z1)
    parts, _ = _shell(rng, lx, ly, hc, opening_wall, opening)
    # opening centre in world (for the door's keep-out zone)
    corner = [(-lx / 2, -ly / 2), (lx / 2, -ly / 2), (lx / 2, ly / 2), (-lx / 2, ly / 2)][opening_wall]
    ang = [0.0, np.pi / 2, np.pi, -np.pi / 2][opening_wall]
    along, inward = np.array([np.cos(ang), np.sin(ang)]), np.array([-np.sin(ang), np.cos(ang)])
    door_xy = np.array(corner) + along * (x0 + width / 2)

    n_target = int(rng.integers(min_furniture, max_furniture + 1))
    footprints: list[tuple[float, float, float, float, str]] = []  # x, y, radius, height, kind
    iid = 7
    attempts = 0
    while len(footprints) < n_target and attempts < 400:
        attempts += 1
        kind = FURNITURE[int(rng.integers(len(FURNITURE)))] if attempts < 300 else "decor"
        sub_seed = int(rng.integers(2**31))
        pieces, radius, height = _furniture(np.random.default_rng([sub_seed, 1]), kind, iid, sub_seed)
        if kind in AGAINST_WALL:
            k = int(rng.integers(4))
            c = [(-lx / 2, -ly / 2), (lx / 2, -ly / 2), (lx / 2, ly / 2), (-lx / 2, ly / 2)][k]
            a = [0.0, np.pi / 2, np.pi, -np.pi / 2][k]
            length = lx if k % 2 == 0 else ly
            t = rng.uniform(radius, length - radius) if length > 2 * radius else length / 2
            xy = np.array(c) + np.array([np.cos(a), np.sin(a)]) * t + np.array([-np.sin(a), np.cos(a)]) * (radius + 0.02)
            yaw = a + np.pi  # local front (-y) faces into the room; local +y (back) to the wall
            if k == opening_wall and abs(t - (x0 + width / 2)) < radius + width / 2 + 0.1:
                continue
        else:
            xy = np.array([rng.uniform(-lx / 2 + radius + 0.05, lx / 2 - radius - 0.05),
                           rng.uniform(-ly / 2 + radius + 0.05, ly / 2 - radius - 0.05)])
            yaw = rng.uniform(0, 2 * np.pi)
            if abs(xy[0]) > lx / 2 - radius or abs(xy[1]) > ly / 2 - radius:
                continue
        if any(np.hypot(xy[0] - fx, xy[1] - fy) < radius + fr + 0.1 for fx, fy, fr, _, _ in footprints):
            continue
        if is_door and np.linalg.norm(xy - (door_xy + inward * 0.6)) < radius + 0.9:
            continue
        m_world = _pose(float(xy[0]), float(xy[1]), 0.0, float(yaw))
        tex_rng = np.random.default_rng([sub_seed, 2])
        for surf, m_local, name in pieces:
            if isinstance(surf, Part):  # a decor object: keeps its own textures, takes the piece's id
                p = Part(surf.vertices, surf.faces, surf.normals, surf.uv, surf.texture, surf.colors, iid, name)
                parts.append(p.transformed(m_world @ m_local))
            else:
                tex = random_texture(tex_rng, size=128)[0]
                parts.append(_part(surf, m_world @ m_local, tex, iid, f"{kind}_{name}"))
        footprints.append((float(xy[0]), float(xy[1]), float(radius), float(height), kind))
        iid += 1
    meta = {"size": (lx, ly, hc), "opening": {"wall": opening_wall, "door": is_door, "x0": x0, "x1": x0 + width,
                                              "z0": z0, "z1": z1},
            "furniture": footprints, "instance_names": {1: "floor", 2: "ceiling", 3: "wall0", 4: "wall1",
                                                        5: "wall2", 6: "wall3"}}
    light = Light.random(rng)
    return MeshScene(parts=parts, light=light, background=SKY, kind="room", seed=int(seed), meta=meta, closed=True)


def free_space(scene: MeshScene, clearance: float, cell: float = 0.05) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean grid ``[Ny, Nx]`` of floor positions at least ``clearance`` from walls and furniture,
    with the cell-centre coordinates ``xs [Nx]``, ``ys [Ny]``."""
    lx, ly, _ = scene.meta["size"]
    xs = np.arange(-lx / 2 + cell / 2, lx / 2, cell)
    ys = np.arange(-ly / 2 + cell / 2, ly / 2, cell)
    gx, gy = np.meshgrid(xs, ys)
    free = (np.abs(gx) <= lx / 2 - clearance) & (np.abs(gy) <= ly / 2 - clearance)
    for fx, fy, fr, _, _ in scene.meta["furniture"]:
        free &= np.hypot(gx - fx, gy - fy) > fr + clearance
    return free, xs, ys


def _is_free(points: np.ndarray, free: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> bool:
    cell = xs[1] - xs[0]
    i = np.clip(np.round((points[:, 0] - xs[0]) / cell).astype(int), 0, len(xs) - 1)
    j = np.clip(np.round((points[:, 1] - ys[0]) / cell).astype(int), 0, len(ys) - 1)
    inside = (points[:, 0] >= xs[0] - cell) & (points[:, 0] <= xs[-1] + cell)
    inside &= (points[:, 1] >= ys[0] - cell) & (points[:, 1] <= ys[-1] + cell)
    return bool((inside & free[j, i]).all())


def room_path(scene: MeshScene, n_frames: int, seed: int, *, width: int = 256, height: int = 256,
              fov_deg: float = 70.0, clearance: float = 0.4, step: float = 0.05) -> Cameras:
    """A smooth camera path inside a room from :func:`make_room`, batch shape ``[n_frames]``.

    The eye moves at a constant height (1.2-1.7 m) along a smoothed polyline through 3-4 random
    waypoints in free space (every point at least ``clearance`` from walls and furniture footprints,
    checked densely after smoothing), about ``step`` metres per frame, and looks at a target that
    glides between two points on the far walls.
    """
    if scene.kind != "room" or "furniture" not in scene.meta:
        raise ValueError("room_path needs a scene from make_room (its meta holds the layout)")
    rng = np.random.default_rng([int(seed), PATH_STREAM])
    lx, ly, hc = scene.meta["size"]
    free, xs, ys = free_space(scene, clearance)
    cells = np.argwhere(free)
    if len(cells) == 0:
        raise ValueError("room_path: the room has no free floor space for the camera")
    cell_xy = np.stack([xs[cells[:, 1]], ys[cells[:, 0]]], 1)
    path_len = max(step * (n_frames - 1), 1e-3)
    for _ in range(200):
        pts = [cell_xy[int(rng.integers(len(cell_xy)))]]
        length = 0.0
        while length < path_len:
            d = np.linalg.norm(cell_xy - pts[-1], axis=1)
            cand = np.nonzero((d > 0.5) & (d < 2.5))[0]
            if len(cand) == 0:
                break
            ok = False
            for c in rng.choice(cand, size=min(20, len(cand)), replace=False):
                seg = pts[-1] + np.linspace(0, 1, 50)[:, None] * (cell_xy[c] - pts[-1])
                if _is_free(seg, free, xs, ys):
                    pts.append(cell_xy[c])
                    length += d[c]
                    ok = True
                    break
            if not ok:
                break
        if length < path_len:
            continue
        poly = np.array(pts)
        dense = _resample(poly, 400)
        smooth = dense.copy()
        for _ in range(30):  # Laplacian smoothing with fixed ends
            smooth[1:-1] = 0.25 * smooth[:-2] + 0.5 * smooth[1:-1] + 0.25 * smooth[2:]
        if not _is_free(smooth, free, xs, ys):
            smooth = dense
        cum = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(smooth, axis=0), axis=1))])
        s = np.linspace(0, path_len, n_frames)
        eye_xy = np.stack([np.interp(s, cum, smooth[:, 0]), np.interp(s, cum, smooth[:, 1])], 1)
        break
    else:
        raise ValueError("room_path: could not find a free path; lower clearance or n_frames")
    z = float(rng.uniform(1.2, 1.7))
    eye = np.concatenate([eye_xy, np.full((n_frames, 1), z)], 1)
    targets = []
    for anchor in (eye[0], eye[-1]):
        for _ in range(100):
            side = int(rng.integers(4))
            t = rng.uniform(-0.45, 0.45)
            p = {0: (t * lx, -ly / 2), 1: (lx / 2, t * ly), 2: (t * lx, ly / 2), 3: (-lx / 2, t * ly)}[side]
            p = np.array([p[0], p[1], rng.uniform(0.6, 1.6)])
            if np.linalg.norm(p[:2] - anchor[:2]) > 1.5:
                break
        targets.append(p)
    w = np.linspace(0, 1, n_frames)[:, None]
    target = (1 - w) * targets[0] + w * targets[1]
    c2w = look_at(torch.tensor(eye, dtype=torch.float64), torch.tensor(target, dtype=torch.float64),
                  torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(n_frames, 3))
    return Cameras.from_fov(fov_deg, width, height, c2w.float())


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    cum = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
    s = np.linspace(0, cum[-1], n)
    return np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], 1)
