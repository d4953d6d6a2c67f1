"""A viser page for :class:`~vdm3d.viewer.content.ViewerContent`.

:func:`show` fills a ``viser.ViserServer``'s scene in vdm3d's frame (z up): the splats
(``scene.add_gaussian_splats`` with the world covariances and the SH DC colour), the mesh, points,
one camera frustum per camera with its frame as the frustum's image, the path as a polyline through
the camera centres, and a frame slider (with play) that highlights a camera, shows its frame in the
panel and, with "follow", moves the viewer's camera there. Further camera groups (a complete run's
planned paths) are frusta and polylines in their own colour, shown or hidden together from the panel.

viser's frusta use OpenCV axes (x right, y down, z forward), the same as vdm3d, so a camera's pose
is its ``c2w`` as is: ``wxyz`` from the rotation, ``position`` from the centre.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np
import torch
import trimesh

from vdm3d.viewer.content import ViewerContent

PATH_COLOR = (255, 140, 0)
FRUSTUM_COLOR = (40, 40, 40)
ACTIVE_COLOR = (230, 40, 160)
VIEW_HALF_ANGLE = float(np.deg2rad(25.0))  # the page's first view has a 50 degree vertical field of view
GROUP_COLORS = ((0, 130, 200), (60, 170, 60), (150, 80, 200))  # further camera groups, in turn
# the first view of content without cameras: from -y (front), a little above
DEFAULT_VIEW_DIR = np.array([0.0, -1.0, 0.35]) / np.linalg.norm([0.0, -1.0, 0.35])


def splat_arrays(gaussians, max_splats: int | None = None) -> dict[str, np.ndarray]:
    """The arrays ``add_gaussian_splats`` takes: centres, covariances, RGB (SH DC), opacities ``[N, 1]``."""
    from vdm3d.splat.sh import sh_to_rgb

    g = gaussians.detach().to("cpu", torch.float32)
    if max_splats is not None and len(g) > max_splats:  # keep the most opaque ones
        g = g[torch.topk(g.opacities, max_splats).indices]
    return {"centers": g.means.numpy(), "covariances": g.covariances.numpy(),
            "rgbs": sh_to_rgb(g.sh[:, 0, :]).clamp(0, 1).numpy(), "opacities": g.opacities[:, None].numpy()}


def cluster_vertices(mesh: trimesh.Trimesh, cells: int) -> trimesh.Trimesh:
    """``mesh`` with its vertices merged per cube of a grid ``cells`` cubes across its longest side
    (vertex clustering): each cluster becomes the mean of its vertices, so every vertex moves by less
    than one cube's diagonal; faces that collapse or repeat are dropped. Vertex colours are averaged."""
    v = np.asarray(mesh.vertices, np.float64)
    lo, hi = v.min(0), v.max(0)
    cell = max(float((hi - lo).max()), 1e-12) / cells
    ijk = np.minimum(np.floor((v - lo) / cell).astype(np.int64), cells - 1)  # [V, 3] cube indices
    _, inverse, counts = np.unique((ijk[:, 0] * (cells + 1) + ijk[:, 1]) * (cells + 1) + ijk[:, 2],
                                   return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)

    def mean(x: np.ndarray) -> np.ndarray:
        return np.stack([np.bincount(inverse, x[:, k], len(counts)) for k in range(x.shape[1])], 1) / counts[:, None]

    f = inverse[np.asarray(mesh.faces)]
    f = f[(f[:, 0] != f[:, 1]) & (f[:, 1] != f[:, 2]) & (f[:, 2] != f[:, 0])]
    n = np.int64(len(counts))
    key = np.sort(f, axis=1).astype(np.int64)
    if n < 2 ** 20:  # one int64 key a triangle
        _, first = np.unique((key[:, 0] * n + key[:, 1]) * n + key[:, 2], return_index=True)  # the same one twice
    else:
        _, first = np.unique(key, axis=0, return_index=True)
    f = f[np.sort(first)]
    colors = None
    if mesh.visual.kind == "vertex":
        colors = mean(np.asarray(mesh.visual.vertex_colors, np.float64)).round().astype(np.uint8)
    return trimesh.Trimesh(mean(v), f, vertex_colors=colors, process=False)


def reduce_mesh(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """``mesh`` itself when it has at most ``max_faces`` faces, else a vertex-clustered copy with at
    most ``max_faces`` (:func:`cluster_vertices`; the finest grid found in a few tries). A browser
    draws a few hundred thousand faces; 1.6 M arrived as an empty page."""
    if len(mesh.faces) <= max_faces:
        return mesh
    # on a surface, faces grow with the square of the grid; start where that predicts the budget
    v = np.asarray(mesh.vertices)
    area, extent = float(mesh.area), float((v.max(0) - v.min(0)).max())
    cells = max(2, int(np.sqrt(max_faces * extent ** 2 / max(2 * area, 1e-12))))
    while True:
        out = cluster_vertices(mesh, cells)
        if len(out.faces) <= max_faces or cells <= 2:
            return out
        cells = max(2, int(cells * 0.9 * np.sqrt(max_faces / len(out.faces))))


def camera_poses(cameras) -> tuple[np.ndarray, np.ndarray]:
    """``(wxyz [F, 4], position [F, 3])`` of OpenCV camera-to-world matrices, for viser."""
    from vdm3d.cameras.rotations import quat_from_matrix

    c2w = cameras.c2w.reshape(-1, 4, 4).double()
    return quat_from_matrix(c2w[:, :3, :3]).numpy(), c2w[:, :3, 3].numpy()


def _side_of_path(cameras) -> np.ndarray | None:
    """A view direction across a camera path: perpendicular to its longest extent (the first principal axis
    of the centres) and level (perpendicular to z as well) where it can be, on the side behind the cameras'
    mean viewing direction, a little above; None for a path that stays in one place."""
    cams = cameras.reshape(-1)
    centres = cams.centers.double().numpy()
    if len(centres) < 2:
        return None
    _, sv, axes = np.linalg.svd(centres - centres.mean(0), full_matrices=False)
    if sv[0] < 1e-6:
        return None
    up = np.array([0.0, 0.0, 1.0])
    forward = cams.c2w[:, :3, 2].double().numpy().mean(0)
    across = np.cross(up, axes[0])
    if np.linalg.norm(across) < 0.3:  # an upright path (a trajectory file's cameras look along +z): any level
        across = forward - (forward @ up) * up  # side will do; take the one the cameras turn towards
        if np.linalg.norm(across) < 1e-3:
            across = -DEFAULT_VIEW_DIR.copy()
            across[2] = 0.0
    across /= np.linalg.norm(across)
    if across @ forward > 0:  # stand behind the cameras: their frusta open away from the view
        across = -across
    direction = across + 0.35 * up
    return direction / np.linalg.norm(direction)


def initial_view(content: ViewerContent) -> dict[str, tuple[float, float, float] | float]:
    """Where the page's camera starts: looking at the content's centre from the side of the first
    camera (when there are cameras) or from the front (-y), a little above, far enough back that the
    content's radius and the first frusta fit in a 50 degree view, and every camera centre lies within
    0.8 of its half angle (a path close to the content, as stylize's, would otherwise start out of view).
    A camera path alone (no splats, mesh or points) is seen across its length instead (:func:`_side_of_path`):
    from its first camera, the view would look straight down the path and stack its frusta into one."""
    centre, radius = content.focus()
    direction = DEFAULT_VIEW_DIR
    path_only = content.gaussians is None and content.mesh is None and content.points is None
    side = _side_of_path(content.cameras) if path_only and content.cameras is not None else None
    if side is not None:
        direction = side
    elif content.cameras is not None:
        offset = content.cameras.reshape(-1).centers[0].double().numpy() - centre
        if np.linalg.norm(offset) > 1e-6:
            direction = offset / np.linalg.norm(offset) + np.array([0.0, 0.0, 0.35])
            direction = direction / np.linalg.norm(direction)
    distance = 1.5 * radius / np.tan(VIEW_HALF_ANGLE)
    if content.cameras is not None:  # stand behind the cameras so that their frusta are in view
        centres = content.cameras.reshape(-1).centers.double().numpy()
        distance = max(distance, 1.3 * float(np.linalg.norm(centres[0] - centre)))
        for _ in range(40):  # then back off, 15 % at a time, until every camera is in view
            eye = centre + direction * distance
            rays = centres - eye
            cos = rays @ (centre - eye) / (np.linalg.norm(rays, axis=1) * distance + 1e-12)
            if cos.min() >= np.cos(0.8 * VIEW_HALF_ANGLE):
                break
            distance *= 1.15
    eye = centre + direction * distance
    return {"position": tuple(eye), "look_at": tuple(centre), "fov": 2 * VIEW_HALF_ANGLE}


def show(server, content: ViewerContent, max_splats: int | None = 500_000, max_faces: int | None = 200_000,
         say: Callable[[str], None] | None = print) -> dict[str, object]:
    """Put ``content`` into ``server``'s scene and panel; returns the handles by name. Splats beyond
    ``max_splats`` are left out and a mesh over ``max_faces`` is simplified, each said in one line."""
    say = say or (lambda _line: None)
    scene, gui = server.scene, server.gui
    scene.set_up_direction("+z")
    # an opaque white background: without it the WebGL canvas keeps the splats' blended alpha (about
    # 0.43 where they overlap) and the page shows them washed out towards white (measured in Chromium 150)
    scene.set_background_image(np.full((4, 4, 3), 255, np.uint8))
    handles: dict[str, object] = {}
    if content.gaussians is not None and len(content.gaussians):
        n = len(content.gaussians)
        if max_splats is not None and n > max_splats:
            say(f"showing {max_splats:,} of {n:,} splats (the most opaque); --max-splats N shows more or fewer")
        handles["splats"] = scene.add_gaussian_splats("/splats", **splat_arrays(content.gaussians, max_splats))
    if content.mesh is not None:  # hidden behind splats by default: it would cover them (toggle in the panel)
        mesh = content.mesh
        if max_faces is not None and len(mesh.faces) > max_faces:
            t = time.monotonic()
            mesh = reduce_mesh(mesh, max_faces)
            say(f"showing the mesh simplified to {len(mesh.faces):,} of {len(content.mesh.faces):,} faces "
                f"(vertices merged on a grid, {time.monotonic() - t:.1f} s); --max-faces N shows more or fewer")
        handles["mesh"] = scene.add_mesh_trimesh("/mesh", mesh, visible="splats" not in handles)
    if content.points is not None:
        _, radius = content.focus()
        handles["points"] = scene.add_point_cloud("/points", content.points, content.point_colors,
                                                  point_size=radius / 200)
    view = initial_view(content)
    server.initial_camera.position = view["position"]
    server.initial_camera.look_at = view["look_at"]
    server.initial_camera.up = (0.0, 0.0, 1.0)
    server.initial_camera.fov = view["fov"]
    if content.cameras is not None:
        handles.update(_add_cameras(server, content))
    for k, group in enumerate(content.groups):
        handles[group.name] = _add_group(server, content, k)
    toggles = {}
    with gui.add_folder("layers"):
        for name in ("splats", "mesh", "points", *(g.name for g in content.groups)):
            if name in handles:
                toggles[name] = _toggle(gui, name, handles[name])
        for line in content.notes:
            gui.add_markdown(f"*{line}*")
        for kind, src in content.sources.items():
            gui.add_markdown(f"**{kind}**: `{src}`")
    handles["toggles"] = toggles
    return handles


def _toggle(gui, name: str, handle):
    """A panel checkbox that shows or hides one scene node, or a list of them together; returns it."""
    nodes = handle if isinstance(handle, list) else [handle]
    box = gui.add_checkbox(f"show {name}", initial_value=bool(nodes[0].visible))

    def update(_event) -> None:
        for node in nodes:
            node.visible = box.value

    box.on_update(update)
    return box


def frustum_size(steps: np.ndarray, radius: float) -> float:
    """Frustum scale: the median distance between consecutive cameras, within 3-15 % of the content's radius."""
    return float(np.clip(np.median(steps) if len(steps) else radius * 0.1, radius * 0.03, radius * 0.15))


def _add_group(server, content: ViewerContent, k: int) -> list[object]:
    """Group ``k``'s paths as frusta (no frames) and polylines in the group's colour; returns the nodes."""
    group = content.groups[k]
    color = GROUP_COLORS[k % len(GROUP_COLORS)]
    _, radius = content.focus()
    poses = [camera_poses(cams.reshape(-1)) for cams in group.paths]
    size = frustum_size(np.concatenate([np.linalg.norm(np.diff(pos, axis=0), axis=1) for _, pos in poses]), radius)
    nodes: list[object] = []
    for name, cams, (wxyz, pos) in zip(group.path_names, group.paths, poses):
        cams = cams.reshape(-1)
        fov_y = np.deg2rad(cams.fov_y_deg.double().numpy())
        root = f"/{group.name}/{name}"
        nodes += [server.scene.add_camera_frustum(f"{root}/{i:04d}", fov=float(fov_y[i]),
                                                  aspect=cams.width / cams.height, scale=size, color=color,
                                                  wxyz=wxyz[i], position=pos[i], thickness=size * 0.02)
                  for i in range(len(cams))]
        if len(cams) > 1:
            segments = np.stack([pos[:-1], pos[1:]], axis=1).astype(np.float32)
            nodes.append(server.scene.add_line_segments(f"{root}/path", segments, color, thickness=size * 0.05))
    return nodes


def _add_cameras(server, content: ViewerContent) -> dict[str, object]:
    scene, gui = server.scene, server.gui
    cams = content.cameras.reshape(-1)
    wxyz, pos = camera_poses(cams)
    _, radius = content.focus()
    size = frustum_size(np.linalg.norm(np.diff(pos, axis=0), axis=1), radius)
    fov_y = np.deg2rad(cams.fov_y_deg.double().numpy())
    aspect = cams.width / cams.height
    frusta = []
    for i in range(len(cams)):
        image = content.frames[i] if content.frames is not None else None
        frusta.append(scene.add_camera_frustum(f"/cameras/{i:04d}", fov=float(fov_y[i]), aspect=aspect, scale=size,
                                               color=FRUSTUM_COLOR, image=image, wxyz=wxyz[i], position=pos[i],
                                               thickness=size * 0.02))
    out: dict[str, object] = {"frusta": frusta}
    if len(cams) > 1:
        segments = np.stack([pos[:-1], pos[1:]], axis=1).astype(np.float32)  # [F-1, 2, 3]
        out["path"] = scene.add_line_segments("/path", segments, PATH_COLOR, thickness=size * 0.05)
    slider = gui.add_slider("frame", min=0, max=max(len(cams) - 1, 1), step=1, initial_value=0,
                            disabled=len(cams) < 2)
    follow = gui.add_checkbox("follow camera", initial_value=False)
    play = gui.add_checkbox("play", initial_value=False)
    panel = gui.add_image(content.frames[0], label="frame") if content.frames is not None else None
    state = {"active": 0}

    def select(i: int) -> None:
        frusta[state["active"]].color = FRUSTUM_COLOR
        frusta[i].color = ACTIVE_COLOR
        state["active"] = i
        if panel is not None:
            panel.image = content.frames[i]
        if follow.value:
            look = pos[i] + cams.forward[i].double().numpy()
            for client in server.get_clients().values():
                with client.atomic():
                    client.camera.position = pos[i]
                    client.camera.look_at = look
                    client.camera.fov = float(fov_y[i])

    slider.on_update(lambda _: select(int(slider.value)))

    def player() -> None:  # advances the slider at the video's frame rate while "play" is on
        while True:
            time.sleep(1.0 / max(content.fps, 1.0))
            if play.value and len(cams) > 1:
                slider.value = (int(slider.value) + 1) % len(cams)

    threading.Thread(target=player, daemon=True).start()
    select(0)
    out.update(slider=slider, follow=follow, play=play)
    return out
