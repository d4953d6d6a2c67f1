"""Ground-truth buffers of textured meshes for any batch of :class:`~vdm3d.cameras.camera.Cameras`.

``render_buffers(scene, cameras)`` returns, per camera, the shaded colour (texture x vertex colour x
(ambient + diffuse Lambert) under the scene's directional light), alpha, z-depth, world normals,
geometric edges and instance ids. Everything is sampled at pixel centres (+0.5), with the exact
OpenCV pinhole model of ``Cameras``, so depth unprojected with ``Cameras.unproject`` lands on the mesh.

Backend: OpenGL 3.3 through ``moderngl`` on a headless EGL context (Mesa llvmpipe on CPU machines,
the GPU driver where there is one); no display is needed. Chosen by a measured comparison
(``benchmarks/procedural.py``, 2 shared cores at load average ~11, a 4-part object of 8.7k triangles,
21 views, best of 3):

=========  ======================================  ===========================================
size       moderngl/EGL, every buffer              trimesh + Embree (embreex), first hit only
=========  ======================================  ===========================================
64x64      0.19 s                                  0.04 s
256x256    0.74 s                                  0.58 s
=========  ======================================  ===========================================

Embree finds the first triangle faster at 64x64, but that is all it does: a ray-casting renderer
would still need texture lookups with filtering, shading, normals and, hardest, geometric edge
lines with visibility, all in numpy, and ``embreex`` is an extra binary dependency. Rasterisation
gives all of it in one pass with mipmapped textures, runs unchanged on a GPU driver, and its cost
(~0.23 CPU-seconds per 21-view object case including files) keeps 1,000 x 21 views at 64x64 inside
10 minutes on two free cores. pyrender needs PyOpenGL over its pin, and Open3D's offscreen renderer
is not available here (``ENVIRONMENT.md``).

Design points:

* one GL context per process (:func:`get_renderer`, re-created after ``fork``); uploaded scenes are
  cached by identity, so rendering the same scene again costs only the draw. Each use notes the GL
  renderer and version (``note_used("gl", ...)``) for the run's manifest: another driver draws other
  last bits of edges, depth and flow;
* any thread may render: an EGL context is current in one thread at a time, so each
  :meth:`MeshRenderer.render` holds a lock, makes the context current in the calling thread and
  releases it at the end (it used to stay current in the thread that created it, and a render from
  another thread, say a notebook's background thread, failed or came back as NaN images). A GL
  context of your own that is current in that thread is no longer current afterwards;
* cameras travel in a uniform block; an atlas of tiles (one per camera) is filled by one instanced
  draw per part, each tile clipped with ``gl_ClipDistance`` so nothing bleeds between tiles;
* depth is the camera-space z written by the fragment shader (float32), not the non-linear depth
  buffer; normals are the interpolated shading normals turned to face the camera;
* edges come from the geometry, not from image gradients: mesh edges that are silhouettes for the
  camera (one adjacent face towards it, one away), creases (dihedral angle over ``crease_deg``) and
  open boundaries are drawn as 1-pixel lines, kept where no surface at the pixel or its 8 neighbours
  is more than 1 % nearer (tested in the fragment shader against the surface pass's z, so surfaces need
  no polygon offset and keep an exact depth test); pixels where two different instances meet (part
  intersections, occlusions between objects) are added from the instance map;
* back faces are culled when ``scene.closed`` (procedural objects and rooms): the same pictures for
  half the rasterisation;
* ``ssaa`` (odd) renders at ``ssaa`` times the size: colour and alpha are box-filtered, the centre
  sub-sample gives depth, normals and instance ids exactly at the pixel centre, edges are OR-ed.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import weakref

import numpy as np
import torch
import trimesh
from jaxtyping import Float, Int
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.geometry.mesh_scene import Light, MeshScene, load_mesh_scene
from vdm3d.errors import Vdm3dError
from vdm3d.io.runs import note_used
from vdm3d.geometry.edges import instance_boundaries, mesh_edges
from vdm3d.geometry.flow import flow_from_depth

MAX_CAMERAS_PER_DRAW = 256
MAX_ATLAS = 2048
CAMERA_VEC4 = 6  # per camera in the uniform block: 3 rows of w2c, K, tile/near/far, centre
EDGE_DEPTH_TOL = 0.01  # an edge line is hidden when a surface is more than 1 % nearer
NEAR_FAR_RATIO = 1e-3  # near plane for cameras inside the scene: 24-bit depth keeps ~0.1 mm at 1 m


class RenderBackendError(Vdm3dError):
    """OpenGL (EGL) could not be started."""


_VERTEX_COMMON = """
#version 330
layout(std140) uniform Cameras { vec4 cam[%d]; };
uniform vec2 u_size;   // tile width, height in pixels
uniform vec2 u_atlas;  // atlas width, height in pixels
out float gl_ClipDistance[4];

// OpenCV camera (x right, y down, z forward) -> GL clip coordinates inside this camera's tile.
vec4 project(vec3 p, int c, out float z) {
    vec3 pc = vec3(dot(cam[c], vec4(p, 1.0)), dot(cam[c + 1], vec4(p, 1.0)), dot(cam[c + 2], vec4(p, 1.0)));
    vec4 K = cam[c + 3];
    vec4 T = cam[c + 4];
    z = pc.z;
    float W = u_size.x, H = u_size.y;
    // u = fx x/z + cx maps to x_ndc = 2u/W - 1; v = fy y/z + cy maps to y_ndc = 1 - 2v/H (GL y is up)
    float xc = (2.0 * K.x / W) * pc.x + (2.0 * K.z / W - 1.0) * z;
    float yc = -(2.0 * K.y / H) * pc.y + (1.0 - 2.0 * K.w / H) * z;
    float n = T.z, f = T.w;
    float zc = (f + n) / (f - n) * z - 2.0 * f * n / (f - n);
    gl_ClipDistance[0] = z + xc;
    gl_ClipDistance[1] = z - xc;
    gl_ClipDistance[2] = z + yc;
    gl_ClipDistance[3] = z - yc;
    // tile NDC -> atlas NDC (T.xy: tile origin in atlas pixels, GL window coordinates)
    float xa = ((xc + z) * 0.5 * W + T.x * z) * 2.0 / u_atlas.x - z;
    float ya = ((yc + z) * 0.5 * H + T.y * z) * 2.0 / u_atlas.y - z;
    return vec4(xa, ya, zc, z);
}
""" % (CAMERA_VEC4 * MAX_CAMERAS_PER_DRAW)

_MESH_VS = _VERTEX_COMMON + """
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
out vec3 v_world;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
out float v_z;
flat out vec3 v_center;
void main() {
    int c = gl_InstanceID * %d;
    float z;
    gl_Position = project(in_pos, c, z);
    v_world = in_pos;
    v_normal = in_normal;
    v_uv = in_uv;
    v_color = in_color;
    v_z = z;
    v_center = cam[c + 5].xyz;
}
""" % CAMERA_VEC4

_MESH_FS = """
#version 330
uniform sampler2D u_tex;
uniform vec3 u_light_dir;
uniform vec2 u_light;     // ambient, diffuse
uniform float u_instance;
in vec3 v_world;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
in float v_z;
flat in vec3 v_center;
layout(location = 0) out vec4 o_color;
layout(location = 1) out vec4 o_geom;
layout(location = 2) out vec4 o_id;
void main() {
    vec3 n = normalize(v_normal);
    if (dot(n, v_world - v_center) > 0.0) n = -n;  // two-sided: the normal faces the camera
    vec3 albedo = texture(u_tex, v_uv).rgb * v_color;  // uv v-up; the image was uploaded bottom row first
    float shade = u_light.x + u_light.y * max(dot(n, u_light_dir), 0.0);
    o_color = vec4(albedo * shade, 1.0);
    o_geom = vec4(n, v_z);
    o_id = vec4(u_instance, float(gl_PrimitiveID + 1), 0.0, 1.0);
}
"""

_EDGE_VS = _VERTEX_COMMON + """
in vec3 in_pos;
in vec3 in_n1;
in vec3 in_n2;
in float in_cos;        // cosine of the dihedral angle; -2 for open boundaries
uniform float u_crease_cos;
out float v_z;
void main() {
    int c = gl_InstanceID * %d;
    float z;
    vec4 p = project(in_pos, c, z);
    v_z = z;
    vec3 to_cam = cam[c + 5].xyz - in_pos;
    bool silhouette = dot(in_n1, to_cam) * dot(in_n2, to_cam) <= 0.0;
    if (!(silhouette || in_cos < u_crease_cos)) {
        gl_ClipDistance[0] = -1.0;  // not an edge for this camera: clip the whole line
    }
    gl_Position = p;
}
""" % CAMERA_VEC4

_EDGE_FS = """
#version 330
uniform sampler2D u_geom;  // the surface pass: (normal, z) per pixel, z = 0 where empty
uniform float u_tol;       // relative depth tolerance
in float v_z;
out vec4 o_edge;
void main() {
    // Visible if the line is not behind the surface seen at this pixel or at one of its 8
    // neighbours (a silhouette line lies on the boundary between them); 0 means background.
    ivec2 p = ivec2(gl_FragCoord.xy);
    ivec2 size = textureSize(u_geom, 0);
    bool visible = false;
    for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
            float zs = texelFetch(u_geom, clamp(p + ivec2(dx, dy), ivec2(0), size - 1), 0).w;
            visible = visible || zs <= 0.0 || v_z <= zs * (1.0 + u_tol);
        }
    }
    if (!visible) discard;
    o_edge = vec4(1.0);
}
"""


@dataclasses.dataclass(frozen=True)
class Buffers:
    """Ground-truth buffers for ``B`` cameras (batch flattened in order).

    ``rgb`` is composited over the background; ``depth`` is camera z (0 where empty); ``normals``
    are world-frame unit vectors facing the camera (0 where empty); ``edges`` are 1 on silhouette,
    crease, boundary and instance-boundary pixels; ``instance`` is the part id (0 = background).
    """

    rgb: Float[Tensor, "B H W 3"]
    alpha: Float[Tensor, "B H W"]
    depth: Float[Tensor, "B H W"]
    normals: Float[Tensor, "B H W 3"]
    edges: Float[Tensor, "B H W"]
    instance: Int[Tensor, "B H W"]
    cameras: Cameras

    def to_views(self):
        """The renders as :class:`vdm3d.views.Views` (origin ``rendered``)."""
        from vdm3d.views import Views

        return Views(self.rgb, self.cameras, alphas=self.alpha, depths=self.depth,
                     origin=("rendered",) * self.rgb.shape[0])


class _GpuScene:
    """GL objects of one scene: per part a vertex array and texture; one line array for all edges."""

    def __init__(self, renderer: "MeshRenderer", scene: MeshScene):
        ctx = renderer.ctx
        self.ref = weakref.ref(scene)
        self.parts = []
        self._objects = []
        for part in scene.parts:
            data = np.concatenate([part.vertices, part.normals, part.uv, part.colors], 1).astype("f4")
            vbo = ctx.buffer(data.tobytes())
            ibo = ctx.buffer(part.faces.astype("i4").tobytes())
            vao = ctx.vertex_array(renderer.mesh_prog, [(vbo, "3f 3f 2f 3f", "in_pos", "in_normal", "in_uv",
                                                         "in_color")], index_buffer=ibo, index_element_size=4)
            tex_img = np.ascontiguousarray(part.texture[::-1])  # GL's first row is the bottom (t = 0)
            tex = ctx.texture((tex_img.shape[1], tex_img.shape[0]), 3, tex_img.tobytes(), alignment=1)
            tex.build_mipmaps()
            tex.filter = (renderer.mgl.LINEAR_MIPMAP_LINEAR, renderer.mgl.LINEAR)
            tex.repeat_x = tex.repeat_y = True
            self.parts.append((vao, tex, float(part.instance_id)))
            self._objects += [vbo, ibo, vao, tex]
        segs, n1s, n2s, coss = zip(*(mesh_edges(p) for p in scene.parts))
        seg, n1, n2, cos = (np.concatenate(a) for a in (segs, n1s, n2s, coss))
        per_vertex = np.concatenate([seg.reshape(-1, 3), np.repeat(n1, 2, 0), np.repeat(n2, 2, 0),
                                     np.repeat(cos, 2)[:, None]], 1).astype("f4")
        self.edge_vbo = ctx.buffer(per_vertex.tobytes())
        self.edge_vao = ctx.vertex_array(renderer.edge_prog, [(self.edge_vbo, "3f 3f 3f 1f", "in_pos", "in_n1",
                                                               "in_n2", "in_cos")])
        self._objects += [self.edge_vbo, self.edge_vao]
        self.center, self.radius = scene.bounding_sphere()

    def release(self) -> None:
        for o in self._objects:
            o.release()
        self._objects = []


class MeshRenderer:
    """One headless GL context with the programs; use :func:`get_renderer` for the process singleton."""

    def __init__(self):
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise RenderBackendError("moderngl is not installed; run: pip install moderngl.") from e
        self.mgl = moderngl
        try:
            self.ctx = moderngl.create_standalone_context(backend="egl", require=330)
        except Exception as e:
            raise RenderBackendError(
                f"mesh rendering could not start OpenGL through EGL ({e}); install the system packages "
                "libegl1 libegl-mesa0 libgl1-mesa-dri (make system-deps).") from e
        self.pid = os.getpid()
        self._lock = threading.RLock()
        # created current in this thread; the `with` leaves it current in none, so any thread can take it
        with self.ctx:
            info = self.ctx.info  # the manifest's name of it: "llvmpipe (LLVM 15.0.6, 256 bits), OpenGL 4.5 ..."
            self.name = f"{info.get('GL_RENDERER', 'unknown')}, OpenGL {info.get('GL_VERSION', '?')}"
            self.mesh_prog = self.ctx.program(vertex_shader=_MESH_VS, fragment_shader=_MESH_FS)
            self.edge_prog = self.ctx.program(vertex_shader=_EDGE_VS, fragment_shader=_EDGE_FS)
            self.ubo = self.ctx.buffer(reserve=CAMERA_VEC4 * MAX_CAMERAS_PER_DRAW * 16)
            self.mesh_prog["Cameras"].binding = 0
            self.edge_prog["Cameras"].binding = 0
            for i in range(4):
                self.ctx.enable_direct(0x3000 + i)  # GL_CLIP_DISTANCE0..3
        self._cache: dict[int, _GpuScene] = {}
        self._fbo_key = None

    # -- scene upload cache ---------------------------------------------------------------------
    def upload(self, scene: MeshScene) -> _GpuScene:
        """The scene's GL objects, uploaded on first use; call it inside :meth:`render` (context current)."""
        key = id(scene)
        hit = self._cache.get(key)
        if hit is not None and hit.ref() is scene:
            return hit
        if hit is not None:
            hit.release()
        while len(self._cache) >= 8:
            self._cache.pop(next(iter(self._cache))).release()
        gpu = _GpuScene(self, scene)
        self._cache[key] = gpu
        return gpu

    def _framebuffers(self, aw: int, ah: int):
        if self._fbo_key != (aw, ah):
            if self._fbo_key is not None:
                for o in self._fbo_objects:
                    o.release()
            ctx = self.ctx
            color = ctx.texture((aw, ah), 4, dtype="f4")
            geom = ctx.texture((aw, ah), 4, dtype="f4")
            ids = ctx.texture((aw, ah), 4, dtype="f4")
            edge = ctx.texture((aw, ah), 1, dtype="f1")
            depth = ctx.depth_renderbuffer((aw, ah))
            self._fbo = ctx.framebuffer([color, geom, ids], depth)
            self._fbo_edge = ctx.framebuffer([edge])  # no depth: lines are tested against `geom`
            self._geom_tex = geom
            self._fbo_objects = [self._fbo, self._fbo_edge, color, geom, ids, edge, depth]
            self._fbo_key = (aw, ah)
        return self._fbo, self._fbo_edge

    # -- drawing --------------------------------------------------------------------------------
    def render(self, scene: MeshScene, cameras: Cameras, light: Light | None = None, background=None,
               crease_deg: float = 30.0, ssaa: int = 1, cull: bool | None = None) -> Buffers:
        """See :func:`render_buffers`; safe from any thread (one render at a time, the context current
        in the calling thread for its duration)."""
        if ssaa < 1 or ssaa % 2 == 0:
            raise ValueError("ssaa must be an odd integer >= 1 (1, 3, 5) so a sub-sample sits at each pixel centre")
        with self._lock, self.ctx:
            return self._render(scene, cameras, light, background, crease_deg, ssaa, cull)

    def _render(self, scene, cameras, light, background, crease_deg, ssaa, cull) -> Buffers:
        flat = cameras.flatten() if len(cameras.shape) else cameras.reshape(1)
        cams_np = flat.to(dtype=torch.float64, device="cpu")
        hi = cams_np.resize(flat.width * ssaa, flat.height * ssaa) if ssaa > 1 else cams_np
        light = light or scene.light
        bg = np.asarray(scene.background if background is None else background, np.float32)
        gpu = self.upload(scene)
        w, h = hi.width, hi.height
        cull = scene.closed if cull is None else cull
        if w <= MAX_ATLAS and h <= MAX_ATLAS:  # several frames side by side in one atlas per draw
            per_chunk = min(MAX_CAMERAS_PER_DRAW, (MAX_ATLAS // w) * (MAX_ATLAS // h))
            groups = [(i, i + per_chunk) for i in range(0, len(hi), per_chunk)]
            draw = lambda c: self._render_chunk(gpu, c, light, crease_deg, cull)  # noqa: E731
        else:  # a frame larger than the atlas: drawn in tiles, one camera at a time
            groups = [(i, i + 1) for i in range(len(hi))]
            draw = lambda c: self._render_tiles(gpu, c, light, crease_deg, cull)  # noqa: E731
        parts = [self._finish(*draw(hi[a:b]), bg, ssaa, flat.width, flat.height) for a, b in groups]
        rgb, alpha, geom, inst, edge = (np.concatenate(a) for a in zip(*parts))
        t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
        return Buffers(rgb=t(np.clip(rgb, 0.0, 1.0)), alpha=t(alpha), depth=t(geom[..., 3]), normals=t(geom[..., :3]),
                       edges=t(edge), instance=torch.from_numpy(np.ascontiguousarray(inst)), cameras=flat)

    @staticmethod
    def _finish(color, geom, ids, edge, bg, ssaa: int, width: int, height: int):
        """One group's supersampled draw to its frames: colour over the background, instance boundaries added
        to the line art, then the ``ssaa`` sub-pixels averaged (colour, coverage), OR-ed (edges) or taken at the
        pixel centre (depth, normals, ids). Per group, so that only one group is held at the drawn size."""
        alpha = color[..., 3]
        rgb = color[..., :3] * alpha[..., None] + bg * (1.0 - alpha[..., None])
        inst = ids.astype(np.int64)
        edge = np.maximum(edge, instance_boundaries(inst, geom[..., 3]))
        if ssaa > 1:
            b, s = len(rgb), ssaa
            rgb = rgb.reshape(b, height, s, width, s, 3).mean((2, 4))
            alpha = alpha.reshape(b, height, s, width, s).mean((2, 4))
            edge = edge.reshape(b, height, s, width, s).max((2, 4))
            c = s // 2
            geom, inst = geom[:, c::s, c::s], inst[:, c::s, c::s]
        return rgb, alpha, geom, inst, edge

    def _render_tiles(self, gpu: _GpuScene, cam: Cameras, light: Light, crease_deg: float, cull: bool):
        """One camera whose frame is larger than the atlas, drawn as tiles of at most ``MAX_ATLAS`` a side (the
        same camera with its principal point moved, :meth:`Cameras.crop`) put side by side: the same pixels,
        since each tile is the frame's own projection moved by whole pixels."""
        w, h = cam.width, cam.height
        xs = np.linspace(0, w, -(-w // MAX_ATLAS) + 1).round().astype(int)
        ys = np.linspace(0, h, -(-h // MAX_ATLAS) + 1).round().astype(int)
        color, geom = np.empty((1, h, w, 4), np.float32), np.empty((1, h, w, 4), np.float32)
        ids, edge = np.empty((1, h, w), np.float32), np.empty((1, h, w), np.float32)
        for y0, y1 in zip(ys[:-1], ys[1:]):
            for x0, x1 in zip(xs[:-1], xs[1:]):
                tile = self._render_chunk(gpu, cam.crop(int(x0), int(y0), int(x1 - x0), int(y1 - y0)), light,
                                          crease_deg, cull)
                for whole, part in zip((color, geom, ids, edge), tile):
                    whole[:, y0:y1, x0:x1] = part
        return color, geom, ids, edge

    def _render_chunk(self, gpu: _GpuScene, cams: Cameras, light: Light, crease_deg: float, cull: bool):
        n, w, h = len(cams), cams.width, cams.height
        cols = max(1, min(n, MAX_ATLAS // w))
        rows = (n + cols - 1) // cols
        aw, ah = cols * w, rows * h
        fbo, fbo_edge = self._framebuffers(aw, ah)
        # uniform block: w2c rows, (fx, fy, cx, cy), (tile x0, tile y0, near, far), centre
        w2c = cams.w2c.numpy()
        Ks = cams.Ks.numpy()
        centers = cams.centers.numpy()
        dist = np.linalg.norm(centers - gpu.center[None].astype(np.float64), axis=1)
        far = dist + gpu.radius * 1.01 + 1e-3
        near = np.maximum(dist - gpu.radius * 1.01, far * NEAR_FAR_RATIO)
        block = np.zeros((n, CAMERA_VEC4, 4), np.float32)
        block[:, 0:3] = w2c[:, :3, :4]
        block[:, 3] = np.stack([Ks[:, 0, 0], Ks[:, 1, 1], Ks[:, 0, 2], Ks[:, 1, 2]], 1)
        idx = np.arange(n)
        block[:, 4, 0] = (idx % cols) * w
        block[:, 4, 1] = ah - (idx // cols + 1) * h  # tile rows counted from the top; GL y is up
        block[:, 4, 2], block[:, 4, 3] = near, far
        block[:, 5, :3] = centers
        self.ubo.write(block.tobytes())
        self.ubo.bind_to_uniform_block(0)
        for prog in (self.mesh_prog, self.edge_prog):
            prog["u_size"].value = (float(w), float(h))
            prog["u_atlas"].value = (float(aw), float(ah))
        ctx = self.ctx
        ctx.enable(self.mgl.DEPTH_TEST)
        if cull:
            ctx.enable(self.mgl.CULL_FACE)
            # OpenCV's y-down image becomes GL's y-up window, which keeps a face that is counter-
            # clockwise seen from its front counter-clockwise on screen: GL's default front face
            ctx.front_face = "ccw"
        else:
            ctx.disable(self.mgl.CULL_FACE)
        ctx.depth_func = "<"
        fbo.use()
        fbo.viewport = (0, 0, aw, ah)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ld = np.asarray(light.direction, np.float64)
        self.mesh_prog["u_light_dir"].value = tuple(float(x) for x in ld / np.linalg.norm(ld))
        self.mesh_prog["u_light"].value = (float(light.ambient), float(light.diffuse))
        for vao, tex, inst in gpu.parts:
            tex.use(0)
            self.mesh_prog["u_instance"].value = inst
            vao.render(self.mgl.TRIANGLES, instances=n)
        # edges: 1-pixel lines, kept where no surface is nearer (see _EDGE_FS); no depth buffer, so
        # the surfaces need no polygon offset and their own depth test stays exact
        fbo_edge.use()
        fbo_edge.viewport = (0, 0, aw, ah)
        fbo_edge.clear(0.0, 0.0, 0.0, 0.0)
        ctx.disable(self.mgl.DEPTH_TEST)
        self._geom_tex.filter = (self.mgl.NEAREST, self.mgl.NEAREST)
        self._geom_tex.use(0)
        self.edge_prog["u_geom"].value = 0
        self.edge_prog["u_tol"].value = EDGE_DEPTH_TOL
        self.edge_prog["u_crease_cos"].value = float(np.cos(np.deg2rad(crease_deg)))
        ctx.disable(self.mgl.CULL_FACE)
        gpu.edge_vao.render(self.mgl.LINES, instances=n)

        def read(fb, att, comps, dtype, np_dtype):
            # into an array allocated here: moderngl's own read() does not check its allocation, and a render
            # too large for the memory left (under a limit) crashed the process instead of a MemoryError
            a = np.empty((ah, aw, comps), np_dtype)
            fb.read_into(a, components=comps, dtype=dtype, attachment=att, alignment=1)
            a = a[::-1]  # GL rows start at the bottom
            a = a.reshape(rows, h, cols, w, comps).transpose(0, 2, 1, 3, 4).reshape(rows * cols, h, w, comps)
            return a[:n]
        color = read(fbo, 0, 4, "f4", np.float32)
        geom = read(fbo, 1, 4, "f4", np.float32)
        ids = read(fbo, 2, 4, "f4", np.float32)[..., 0]
        edge = read(fbo_edge, 0, 1, "f1", np.uint8)[..., 0].astype(np.float32) / 255.0
        return color, geom, ids, edge


_RENDERER: MeshRenderer | None = None


def get_renderer() -> MeshRenderer:
    """The process's renderer (one GL context per process, created on first use and after fork)."""
    global _RENDERER
    if _RENDERER is None or _RENDERER.pid != os.getpid():
        _RENDERER = MeshRenderer()
    note_used("gl", _RENDERER.name)  # the driver draws the last bits: the run's manifest names it
    return _RENDERER


SceneLike = MeshScene | trimesh.Trimesh | trimesh.Scene | str | os.PathLike


def as_scene(scene_or_mesh: SceneLike) -> MeshScene:
    """A :class:`MeshScene` from a scene, a trimesh mesh or scene, or a mesh file (loaded z-up by its
    format's convention, see :func:`~vdm3d.geometry.mesh_scene.load_mesh_scene`)."""
    if isinstance(scene_or_mesh, MeshScene):
        return scene_or_mesh
    if isinstance(scene_or_mesh, (trimesh.Trimesh, trimesh.Scene)):
        return MeshScene.from_trimesh(scene_or_mesh)
    if isinstance(scene_or_mesh, (str, os.PathLike)):
        return load_mesh_scene(scene_or_mesh)
    raise TypeError(f"render_buffers: expected a MeshScene, a trimesh mesh/scene or a mesh path, "
                    f"got {type(scene_or_mesh).__name__}")


def render_buffers(scene: SceneLike, cameras: Cameras, *,
                   light: Light | None = None, background: tuple[float, float, float] | None = None,
                   crease_deg: float = 30.0, ssaa: int = 1, cull: bool | None = None) -> Buffers:
    """Render ground-truth buffers of a scene (or trimesh mesh/scene) for every camera.

    Returns :class:`Buffers` of float32 (instance: int64) CPU tensors, batch ``B`` = number of cameras.

    Args:
        scene: a :class:`MeshScene` (procedural or loaded), a trimesh object or a mesh file (converted each call; keep
            a ``MeshScene`` to reuse the upload). A MeshScene is uploaded once per object identity: do not
            modify its arrays in place after rendering it; make a new MeshScene instead.
        cameras: any batch shape; the output batch ``B`` is the flattened batch (1 for one camera).
        light: overrides ``scene.light``.
        background: RGB in [0, 1] behind the geometry; defaults to ``scene.background``.
        crease_deg: dihedral angle above which a mesh edge counts as a crease.
        ssaa: odd supersampling factor for colour and alpha (geometry buffers stay exact).
        cull: cull back faces; defaults to ``scene.closed`` (same pictures, half the raster work).
    """
    return get_renderer().render(as_scene(scene), cameras, light=light, background=background,
                                 crease_deg=crease_deg, ssaa=ssaa, cull=cull)


def render_flow(scene: SceneLike, cam_a: Cameras, cam_b: Cameras, *,
                rel_tol: float = 0.02) -> tuple[Float[Tensor, "H W 2"], Float[Tensor, "H W"], Buffers]:
    """Dense correspondences from camera A to camera B: flow ``[H, W, 2]`` in pixels (A's pixel
    centre + flow = its position in B), ``valid [H, W]`` (1 where the point is seen by both: inside
    B, in front of it, and not occluded in B's depth), and the buffers of both views (batch [A, B])."""
    cams = Cameras.cat([cam_a.reshape(1), cam_b.reshape(1)])
    b = render_buffers(scene, cams)
    flow, valid = flow_from_depth(b.depth[0], cams[0], cams[1], b.depth[1], rel_tol=rel_tol)
    return flow, valid.float(), b
