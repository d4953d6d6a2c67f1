"""Training and held-out sets for the tiny models, rendered from procedural worlds and cached.

Two kinds of sets, each a dict of numpy arrays saved as one ``.npz``:

* **object orbits** (SV3D-style): per object, ``views`` renders on a circle of constant elevation
  around the object (azimuth step ``360 / views``, random start and elevation in [0, 30] deg, the
  distance of :func:`vdm3d.data.procedural.cameras.orbit_distance`, field of view 40 deg, white
  background, 3x supersampled): ``rgb [N, V, H, W, 3] uint8``,
  ``c2w [N, V, 4, 4]``, ``K [3, 3]``;
* **room sequences** (ViewCrafter/WorldWarp/VideoFrom3D): per room, ``frames`` views along a short
  path: ``rgb``, ``depth [N, F, H, W]`` (z-depth), ``edges [N, F, H, W] uint8``, ``c2w``, ``K``, and
  the first frame forward-warped into every frame (``warped``, ``valid``; :mod:`.warp`).

Training seeds and held-out seeds come from disjoint ranges (:data:`SEED_OFFSETS`), so evaluation
never sees a training world. Sets are cached in vdm3d's cache folder (:mod:`vdm3d.io.cache`)
keyed by every parameter and by the code that renders them (:func:`render_code_hash`: a change to the
procedural worlds, the renderer or the warp renders the sets again, so two machines running the same
command score the same inputs); ``vdm3d train`` builds them on first use.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import torch

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import ConfigError
from vdm3d.geometry.warp import forward_warp
from vdm3d.options import Range
from vdm3d.train.cache import cache_dir, cached_set
from vdm3d.views import Views

Split = Literal["train", "val", "heldout"]
#: first seed of each split; training uses [0, 1e6), held-out (test) sets [1e6, 2e6), validation sets
#: (for choosing sampler settings without touching the test seeds) [2e6, ...)
SEED_OFFSETS: dict[str, int] = {"train": 0, "heldout": 1_000_000, "val": 2_000_000}
OBJECT_FOV_DEG = 40.0
ROOM_FOV_DEG = 60.0
ROOM_STEP = 0.06


def refuse_scored_split(option: str, split: str, scored: tuple[str, ...] = ("heldout",)) -> None:
    """Refuse training data drawn from a split that scores the model: ``option`` (``--objects.split``)
    names the training set's split flag. The held-out seeds are the ones every card's held-out number is
    measured on; training on them would make those numbers measure memory. A trainer that scores its own
    validation seeds at the end passes ``scored=("heldout", "val")``."""
    if split in scored:
        used = "held-out scores" if split == "heldout" else "validation scores this trainer reports"
        raise ConfigError(f"{option} {split} would train on the seeds the model's {used} are measured on; "
                          f"leave {option} at train (the default).")


@dataclasses.dataclass(frozen=True)
class ObjectSetConfig:
    """An orbit set: ``count`` objects, ``views`` azimuths each."""

    count: Annotated[int, Range(1)] = 300
    """number of objects"""
    views: Annotated[int, Range(1)] = 18
    """renders per object, evenly spaced in azimuth"""
    resolution: Annotated[int, Range(8)] = 64
    """image side in pixels"""
    split: Split = "train"
    """train, val or heldout (disjoint seed ranges)"""
    light_share: Annotated[float, Range(0, 1)] = 0.0
    """share of the objects repainted in light colours (white, cream, pastel, with dark patches half of the
    time: :func:`vdm3d.data.procedural.objects.light_palette`), which the procedural palette never draws and
    many users' meshes are; each object's draw depends on its seed only"""
    symmetric_share: Annotated[float, Range(0, 1)] = 0.0
    """share of the objects joined with their mirror image (:func:`vdm3d.data.procedural.objects.mirror_symmetric`):
    mirror-symmetric shapes, as most modelled and scanned things are and a random union of parts never is; each
    object's draw depends on its seed only, independently of the light share's draw"""


@dataclasses.dataclass(frozen=True)
class RoomSetConfig:
    """A room-sequence set: ``count`` rooms x ``paths`` paths of ``frames`` frames."""

    count: Annotated[int, Range(1)] = 150
    """number of rooms"""
    paths: Annotated[int, Range(1)] = 2
    """camera paths per room"""
    frames: Annotated[int, Range(1)] = 8
    """frames per path"""
    resolution: Annotated[int, Range(8)] = 64
    """image side in pixels"""
    split: Split = "train"
    """train, val or heldout (disjoint seed ranges)"""


#: the modules whose code makes the cached arrays: the set builders, the procedural worlds, the renderer and
#: the forward warp; :func:`render_code_hash` follows the vdm3d modules they import, too
RENDER_MODULES = ("vdm3d.train.datasets", "vdm3d.data.procedural.objects", "vdm3d.data.procedural.rooms",
                  "vdm3d.data.procedural.cameras", "vdm3d.geometry.mesh_render", "vdm3d.geometry.warp")
#: imported by those but unable to change an array (messages, option parsing, run folders): not followed, so
#: editing them does not render every set again
NOT_RENDERING = ("vdm3d.errors", "vdm3d.options", "vdm3d.option_names", "vdm3d.io.runs", "vdm3d.train.cache")


def _source(module: str) -> Path | None:
    """The file of a vdm3d module, found without importing it (None for a name that is not a module, like
    ``vdm3d.geometry.warp.forward_warp``)."""
    root = Path(__file__).resolve().parents[1]  # the vdm3d package
    base = root.joinpath(*module.split(".")[1:])
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _code(path: Path) -> tuple[str, set[str]]:
    """The code of a module file with its docstrings left out (a comment, a docstring or a reflowed line
    renders nothing new), and the vdm3d modules it imports (at the top or inside functions)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names if a.name.startswith("vdm3d.")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("vdm3d."):
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return ast.dump(tree), imported


@functools.lru_cache(maxsize=None)
def render_code_hash(modules: tuple[str, ...] = RENDER_MODULES, follow: bool = True) -> str:
    """A hash of the code of ``modules`` (and, with ``follow``, of every vdm3d module they import, but
    :data:`NOT_RENDERING`): part of every cache key, so a set is rendered again when that code changes."""
    digest, seen, todo = hashlib.sha256(), set(), list(modules)
    while todo:
        module = todo.pop()
        if module in seen or module in NOT_RENDERING:
            continue
        seen.add(module)
        path = _source(module)
        if path is None:
            continue
        code, imported = _code(path)
        digest.update(f"{module}\n{code}\n".encode())  # the walk's order depends on the code alone
        if follow:
            todo += sorted(imported, reverse=True)
    return digest.hexdigest()[:12]


def _key(cfg, builder: str | None = None, renders: tuple[str, ...] = ()) -> str:
    """The cache key of the set ``cfg``: its parameters, the rendering code (:data:`RENDER_MODULES`), the own
    code of ``builder`` (the module whose builder made the set, when that is not this one) and the code of
    ``renders`` (further modules that builder calls, followed like :data:`RENDER_MODULES`)."""
    code = [render_code_hash(), builder and render_code_hash((builder,), follow=False),
            renders and render_code_hash(renders)]
    blob = json.dumps({"type": type(cfg).__name__, **dataclasses.asdict(cfg), "code": code}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _to_np(x) -> np.ndarray:
    return x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x)


def _as_uint8(rgb) -> np.ndarray:
    rgb = _to_np(rgb)
    if rgb.dtype == np.uint8:
        return rgb
    return np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)


def build_object_set(cfg: ObjectSetConfig, progress: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Render ``cfg.count`` procedural objects on their orbits (see the module docstring)."""
    from vdm3d.data.procedural.cameras import orbit_cameras
    from vdm3d.data.procedural.objects import light_palette, make_object, mirror_symmetric
    from vdm3d.geometry.mesh_render import render_buffers

    r = cfg.resolution
    rgbs, c2ws, elevs = [], [], []
    K = None
    for i in range(cfg.count):
        seed = SEED_OFFSETS[cfg.split] + i
        rng = np.random.default_rng([seed, 7])
        scene = make_object(seed)
        if cfg.symmetric_share > 0 and np.random.default_rng([seed, 9]).random() < cfg.symmetric_share:
            scene = mirror_symmetric(scene, seed)
        if cfg.light_share > 0 and np.random.default_rng([seed, 8]).random() < cfg.light_share:
            scene = light_palette(scene, seed)
        elev = float(rng.uniform(0.0, 30.0))
        cams = orbit_cameras(cfg.views, width=r, height=r, fov_deg=OBJECT_FOV_DEG, elevation_deg=elev,
                             azimuth0_deg=float(rng.uniform(0, 360)))
        buf = render_buffers(scene, cams, ssaa=3)
        rgbs.append(_as_uint8(buf.rgb))
        c2ws.append(_to_np(cams.c2w).astype(np.float32))
        elevs.append(elev)
        K = _to_np(cams.Ks[0]).astype(np.float32)
        if progress and (i + 1) % 25 == 0:
            progress(f"objects {i + 1}/{cfg.count}")
    return {"rgb": np.stack(rgbs), "c2w": np.stack(c2ws), "K": K, "elevation_deg": np.array(elevs, np.float32)}


def build_room_set(cfg: RoomSetConfig, progress: Callable[[str], None] | None = None) -> dict[str, np.ndarray]:
    """Render ``cfg.count`` procedural rooms along ``cfg.paths`` paths each
    (the first ``frames`` of a :func:`vdm3d.data.procedural.rooms.room_path` of ``3 * frames``,
    ``ROOM_STEP`` metres per frame, field of view ``ROOM_FOV_DEG``), with the first frame of every path forward-warped into all its frames."""
    from vdm3d.data.procedural.rooms import make_room, room_path
    from vdm3d.geometry.mesh_render import render_buffers

    r = cfg.resolution
    out: dict[str, list] = {k: [] for k in ("rgb", "depth", "edges", "c2w", "warped", "valid")}
    K = None
    done, seed = 0, SEED_OFFSETS[cfg.split] - 1
    while done < cfg.count:
        seed += 1
        scene = make_room(seed)
        try:  # the first third of a path three times as long: the look-at target swings a third as far
            paths = [room_path(scene, 3 * cfg.frames, seed * 16 + p, width=r, height=r, fov_deg=ROOM_FOV_DEG,
                               step=ROOM_STEP)[: cfg.frames] for p in range(cfg.paths)]
        except ValueError:  # a cluttered room without a free path of that length: skip the seed
            continue
        done += 1
        for cams in paths:
            buf = render_buffers(scene, cams, ssaa=3)
            rgb = _as_uint8(buf.rgb)
            depth = _to_np(buf.depth).astype(np.float32)
            edges = _as_uint8(_to_np(buf.edges).astype(np.float32))
            K = _to_np(cams.Ks[0]).astype(np.float64)
            c2w_np = _to_np(cams.c2w).astype(np.float64)
            cams64 = cams.to(dtype=torch.float64)
            first = Views(torch.from_numpy(rgb[:1]).double() / 255, cams64[:1], depths=torch.from_numpy(depth[:1]))
            warp = forward_warp(first, cams64)
            warped = (warp.images * 255).round().numpy().astype(np.uint8)
            valid = warp.confidence.numpy() > 0
            for k, v in (("rgb", rgb), ("depth", depth), ("edges", edges), ("c2w", c2w_np.astype(np.float32)),
                         ("warped", warped), ("valid", valid)):
                out[k].append(v)
        if progress and done % 10 == 0:
            progress(f"rooms {done}/{cfg.count} (seed {seed})")
    data = {k: np.stack(v) for k, v in out.items()}
    data["K"] = K.astype(np.float32)
    return data


def load_or_build(cfg: ObjectSetConfig | RoomSetConfig, progress: Callable[[str], None] | None = print
                  ) -> dict[str, np.ndarray]:
    """The set described by ``cfg`` from the cache, rendering and caching it on first use."""
    kind = "objects" if isinstance(cfg, ObjectSetConfig) else "rooms"
    path = cache_dir() / f"{kind}-{cfg.split}-{cfg.count}-{cfg.resolution}-{_key(cfg)}.npz"
    r = cfg.resolution
    if kind == "objects":
        n, v = cfg.count, cfg.views
        expect = {"rgb": (n, v, r, r, 3), "c2w": (n, v, 4, 4), "K": (3, 3), "elevation_deg": (n,)}
        return cached_set(path, lambda: build_object_set(cfg, progress), expect)
    n, f = cfg.count * cfg.paths, cfg.frames
    expect = {"rgb": (n, f, r, r, 3), "depth": (n, f, r, r), "edges": (n, f, r, r), "c2w": (n, f, 4, 4),
              "warped": (n, f, r, r, 3), "valid": (n, f, r, r), "K": (3, 3)}
    return cached_set(path, lambda: build_room_set(cfg, progress), expect)


def load_object_depth(cfg: ObjectSetConfig, progress: Callable[[str], None] | None = print) -> np.ndarray:
    """Exact z-depth ``[N, V, H, W] float16`` (``inf``: background) of every view of the object set ``cfg``,
    rendered once from the same objects and cameras as :func:`load_or_build` and cached beside it.

    A separate file, so the colour sets already cached (and the models trained on them) stay as they are."""
    from vdm3d.data.procedural.objects import make_object
    from vdm3d.geometry.mesh_render import render_buffers

    path = cache_dir() / f"objects-depth-{cfg.split}-{cfg.count}-{cfg.resolution}-{_key(cfg)}.npz"

    def build() -> dict[str, np.ndarray]:
        data = load_or_build(cfg, progress)
        K = torch.from_numpy(data["K"]).double()
        depth = np.empty(data["rgb"].shape[:-1], np.float16)
        for i in range(cfg.count):
            c2w = torch.from_numpy(data["c2w"][i]).double()
            cams = Cameras(K.expand(len(c2w), 3, 3), c2w, cfg.resolution, cfg.resolution)
            z = _to_np(render_buffers(make_object(SEED_OFFSETS[cfg.split] + i), cams).depth)
            depth[i] = np.where(np.isfinite(z) & (z > 0), z, np.inf).astype(np.float16)
            if progress and (i + 1) % 100 == 0:
                progress(f"object depth {i + 1}/{cfg.count}")
        return {"depth": depth}

    r = cfg.resolution
    return cached_set(path, build, {"depth": (cfg.count, cfg.views, r, r)})["depth"]
