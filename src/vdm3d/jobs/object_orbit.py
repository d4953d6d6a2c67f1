"""Orbit views for the object job: the cameras of an SV3D or V3D orbit and the sources that fill them.

**Cameras** (world frame z up, object at the origin, OpenCV cameras from
:func:`vdm3d.cameras.io.cameras_from_sv3d`): the input view is the camera at azimuth 0 and the
given elevation.

* ``sv3d-static`` (SEED_SYSTEMS §1.3, §8.1): 21 views at azimuths ``linspace(0, 360, 22)[1:] % 360``,
  constant elevation; the **last** frame is the input view (azimuth 0).
* ``sv3d-dynamic`` (§1.5): 21 views whose elevation wanders (seeded sum of sines, circularly
  smoothed) around the input elevation while the azimuth goes once around; input last.
* ``v3d`` (§2.3): 18 views every 20 degrees, the **first** frame is the input view.

**Sources** fill the non-input frames:

* :class:`BackboneOrbit`: a backbone with the ``reference`` slot, the input image as the reference,
  with the preset's guidance (SV3D triangular, V3D constant), Euler EDM from ``sigma_max`` (700 for
  SV3D/V3D; 80, EDM's default, for the tiny model, which never saw larger noise in training).

  - **The clip the model was trained on.** A backbone whose native frame count is the orbit's
    (SV3D 21, V3D 18) samples the whole orbit as one clip with the input view in its place (SV3D:
    last, V3D: first), as in training and in the published samplers; the generated input frame is
    then replaced by the input image (sgm's ``samples[-1:] = cond``). The guidance weights are those
    of that clip: SV3D's triangle over 21 frames is exactly 1.0 on frames 0 and 20 and 2.5 on frame
    10, the back view. Other backbones (the tiny model: 8 target frames beside a reference) fill the
    non-input views in chunks of their frame count (padding the last chunk with cameras already
    asked for), cameras relative to the input camera.
  - **Cameras.** A backbone with the ``cameras`` slot follows any orbit. One without it (V3D,
    SV3D_u) generates only the orbit it was trained on, which its adapter declares
    (``trained_orbit``); :func:`check_orbit_backbone` accepts it for that orbit and its frame count.
  - **Log.** :attr:`BackboneOrbit.log` holds, per sampled clip, the orbit frames and the per-frame
    CFG weights; the object job writes it into the manifest (``orbit_sampling``).
* :class:`OracleOrbit`: renders the true object (a procedural scene or a mesh) with
  :func:`vdm3d.geometry.mesh_render.render_buffers`. It is not a generator: it isolates the
  reconstruction stages from the quality of the video model (evaluation and tests).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from jaxtyping import Float
from torch import Tensor

from vdm3d.cameras.camera import Cameras
from vdm3d.cameras.io import cameras_from_sv3d
from vdm3d.errors import ConfigError
from vdm3d.geometry.inflate import carried_maps

OrbitKind = Literal["sv3d-static", "sv3d-dynamic", "v3d"]
Guidance = Literal["triangular", "constant"]
ClipLayout = Literal["consecutive", "interleaved"]
Carry = Literal["inflate", "depth", "depth+back"]


@dataclasses.dataclass(frozen=True)
class OrbitPlan:
    """The cameras of an orbit and which frame is the input view."""

    cameras: Cameras
    input_index: int
    elevation_deg: Float[Tensor, "F"]
    azimuth_deg: Float[Tensor, "F"]


def orbit_plan(kind: OrbitKind, elevation_deg: float, radius: float, fov_deg: float, size: int,
               frames: int | None = None, seed: int = 0) -> OrbitPlan:
    """The cameras of an orbit (see the module docstring); ``frames`` overrides the view count."""
    from vdm3d.cameras import trajectory as tr

    n = (tr.V3D_FRAMES if kind == "v3d" else tr.SV3D_FRAMES) if frames is None else frames  # 0 is refused
    if n < 4:
        raise ConfigError(f"an orbit needs at least 4 views, got frames={n}; raise --frames.")
    if kind == "v3d":
        az = 360.0 * torch.arange(n, dtype=torch.float64) / n
        el, index = torch.full((n,), float(elevation_deg), dtype=torch.float64), 0
    elif kind == "sv3d-static":
        az = tr.sv3d_static_azimuths_deg(n)
        el, index = torch.full((n,), float(elevation_deg), dtype=torch.float64), n - 1
    elif kind == "sv3d-dynamic":
        el_np, az_np = tr.sv3d_dynamic_angles_deg(elevation_deg, n, seed)
        el, az = torch.from_numpy(el_np - el_np[-1] + elevation_deg), torch.from_numpy(az_np)  # input keeps its elevation
        index = n - 1
    else:
        raise ConfigError(f"orbit {kind!r} is unknown; choose sv3d-static, sv3d-dynamic or v3d.")
    cams = cameras_from_sv3d(el, az, radius, fov_deg, size, size)
    return OrbitPlan(cams, index, el.float(), az.float())


@runtime_checkable
class OrbitSource(Protocol):
    """Fills the frames of an orbit given the input view."""

    name: str

    def generate(self, reference: Float[Tensor, "H W 3"], plan: OrbitPlan, generator: torch.Generator
                 ) -> Float[Tensor, "F H W 3"]:
        """Images for every frame of ``plan`` (the input frame may be anything; it is replaced)."""


def check_orbit_backbone(backbone: Any, name: str, orbit: OrbitKind, frames: int | None) -> None:
    """Raise unless ``backbone`` can fill ``orbit``: it needs the reference slot, and either the cameras
    slot or a ``trained_orbit`` equal to ``orbit`` with the orbit's own frame count."""
    slots = set(getattr(backbone, "slots", ()))
    if "reference" not in slots:
        raise ConfigError(f"backbone {name!r} has no reference conditioning, which the object job needs; "
                          "choose an image-conditioned backbone such as tiny, sv3d-p, sv3d-u or v3d.")
    if "cameras" in slots:
        return
    trained = getattr(backbone, "trained_orbit", None)
    native = getattr(backbone, "frames", None)
    if trained is None:
        raise ConfigError(f"backbone {name!r} has no cameras conditioning and no orbit it was trained on, so it "
                          "cannot follow an orbit; choose a camera-conditioned backbone such as tiny or sv3d-p.")
    if orbit != trained or (frames is not None and frames != native):
        other = "tiny" if name == "sv3d-p" else "sv3d-p"  # never suggest the backbone that was just refused
        raise ConfigError(f"backbone {name!r} takes no cameras and generates only its trained {trained} orbit "
                          f"of {native} views; use --orbit {trained} without --frames, or a camera-conditioned "
                          f"backbone such as {other} for other orbits.")


@dataclasses.dataclass
class BackboneOrbit:
    """Orbit frames from an image-conditioned video backbone (protocol :class:`Backbone`)."""

    backbone: Any
    steps: int = 25
    sigma_max: float = 700.0
    guidance: Guidance = "constant"
    guidance_scale: float = 2.0
    min_guidance_scale: float = 1.0
    proxy_maps: bool = False
    """give a backbone with the maps slot the input carried into each view by its inflated silhouette
    (:func:`vdm3d.geometry.inflate.proxy_maps`), as the object job's orbit model was trained"""
    carry: Carry = "inflate"
    """what carries the input into each view for those maps: the balloon inflated from its silhouette, or
    its z-depth (``input_depth``, else ``depth_model``'s estimate): the visible surface alone (``depth``),
    or with the balloon's back (``depth+back``, :func:`vdm3d.geometry.inflate.depth_layers`)"""
    depth_model: Any = None
    """the object-depth network (:class:`~vdm3d.models.tiny.depth.TinyDepth` trained by `vdm3d train
    object-depth`) that estimates the input's depth for a depth carry"""
    input_depth: Tensor | None = None
    """the input view's z-depth ``[H, W]`` (``inf`` off the object) to use instead of an estimate (the exact
    depth, to measure what better depth is worth)"""
    layout: ClipLayout = "consecutive"
    """how the non-input views of a longer orbit are split into clips: consecutive runs, or interleaved
    (every second view of the orbit in one clip, the others in the next: the tiny model's training
    targets are views 2 apart on an 18-view circle)"""
    log: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """per sampled clip: ``frames`` (orbit indices) and ``cfg_weights`` (one per latent frame)"""

    @property
    def name(self) -> str:
        return str(self.backbone.name)

    def clips(self, plan: OrbitPlan) -> list[list[int]]:
        """Orbit frame indices sampled together: the whole orbit when it is the backbone's native clip,
        else the non-input frames in chunks of the backbone's frame count."""
        f_all = len(plan.cameras)
        if self.backbone.frames == f_all:
            return [list(range(f_all))]
        wanted = [i for i in range(f_all) if i != plan.input_index]
        chunk = self.backbone.frames or len(wanted)
        if self.layout == "interleaved":
            parity = [[i for i in wanted if (i - plan.input_index) % 2 == p] for p in (0, 1)]
            return [g for views in parity for g in strided_chunks(views, chunk)]
        return self.chunks(wanted, chunk)

    def guider(self, frames: int):
        from vdm3d.diffusion.guiders import CFG

        if self.guidance == "triangular":
            return CFG(scale=self.guidance_scale, min_scale=self.min_guidance_scale, over_frames="triangular")
        return CFG(scale=self.guidance_scale)

    def chunks(self, wanted: list[int], chunk: int) -> list[list[int]]:
        """Split frame indices into groups of ``chunk`` (the last padded with earlier indices)."""
        groups = [wanted[i:i + chunk] for i in range(0, len(wanted), chunk)]
        if len(groups) > 1 and len(groups[-1]) < chunk:
            pad = [j for j in wanted if j not in groups[-1]][:chunk - len(groups[-1])]
            groups[-1] = groups[-1] + pad
        return groups

    @torch.no_grad()
    def generate(self, reference: Float[Tensor, "H W 3"], plan: OrbitPlan, generator: torch.Generator
                 ) -> Float[Tensor, "F H W 3"]:
        from vdm3d.diffusion.schedules import EdmSchedule

        sigmas = EdmSchedule(self.steps, 0.002, self.sigma_max, 7.0).sigmas()
        return self.sample_clips(reference, plan, generator, sigmas)

    @torch.no_grad()
    def regenerate(self, reference: Float[Tensor, "H W 3"], plan: OrbitPlan, start: Float[Tensor, "F H W 3"],
                   sigma: float, generator: torch.Generator) -> Float[Tensor, "F H W 3"]:
        """The orbit sampled again from ``start`` (renders of a fit at the plan's cameras) noised to ``sigma``
        (SDEdit), in the clips and with the conditions of :meth:`generate`, over ``steps - 1`` sampler steps
        (at least 2): the model redraws what it would change in views that already agree with each other."""
        from vdm3d.diffusion.schedules import EdmSchedule

        sigmas = EdmSchedule(max(2, self.steps - 1), 0.002, sigma, 7.0).sigmas()
        return self.sample_clips(reference, plan, generator, sigmas, start)

    def sample_clips(self, reference: Float[Tensor, "H W 3"], plan: OrbitPlan, generator: torch.Generator,
                     sigmas: Tensor, start: Float[Tensor, "F H W 3"] | None = None) -> Float[Tensor, "F H W 3"]:
        """Every clip of :meth:`clips` sampled over ``sigmas``, from noise or from ``start``'s latents."""
        from vdm3d.diffusion.samplers import sample
        from vdm3d.protocols import Conditioning

        bb = self.backbone
        f_all = len(plan.cameras)
        out = reference[None].expand(f_all, *reference.shape).clone()
        ref_c2w = plan.cameras.c2w[plan.input_index][None]
        h, w = reference.shape[:2]
        lh, lw = h // bb.spatial_factor, w // bb.spatial_factor
        with_cameras = "cameras" in bb.slots
        with_maps = self.proxy_maps and with_cameras and "maps" in bb.slots
        if with_maps:  # the input's carrying layers, once for every clip
            input_camera = plan.cameras[[plan.input_index]]
            layers = self.layers(reference, reference_alpha(reference), input_camera)
        self.log.clear()
        done: set[int] = set()
        for group in self.clips(plan):
            cams = plan.cameras[torch.tensor(group)].reshape(1, len(group)) if with_cameras else None
            maps = None
            if with_maps:
                maps = carried_maps(reference[None].float(), layers, input_camera, cams)
            cond = Conditioning(reference=reference[None], cameras=cams, maps=maps,
                                extras={"reference_c2w": ref_c2w} if with_cameras else {})
            fl = (len(group) - 1) // bb.temporal_factor + 1
            guider = self.guider(len(group))
            self.log.append({"frames": group, "cfg_weights": [round(float(v), 6) for v in guider.frame_scales(fl)]})
            x_init = None if start is None else bb.encode(start[torch.tensor(group)][None].float())
            latents = sample(bb, sigmas, cond=cond, shape=(1, fl, bb.latent_channels, lh, lw), x_init=x_init,
                             generator=generator, guider=guider)
            frames = bb.decode(latents)[0].clamp(0, 1)  # [F, H, W, 3]
            for k, i in enumerate(group):
                if self.layout == "consecutive" or i not in done:
                    out[i] = frames[k]
                    done.add(i)
        return out

    def carried(self, reference: Float[Tensor, "H W 3"], alpha: Float[Tensor, "H W"], camera: Cameras,
                targets: Cameras) -> Float[Tensor, "1 F H W 5"]:
        """The input carried into ``targets`` (batch ``(1, F)``) from ``camera`` (batch ``(1,)``), as
        ``carry`` says: the maps one clip of :meth:`generate` gets."""
        return carried_maps(reference[None].float(), self.layers(reference, alpha, camera), camera, targets)

    def layers(self, reference: Float[Tensor, "H W 3"], alpha: Float[Tensor, "H W"], camera: Cameras
               ) -> Float[Tensor, "1 L H W"]:
        """The z-depth layers that carry the input (:func:`vdm3d.geometry.inflate.carried_maps`): the
        balloon's two, or the visible surface at the input's depth (``input_depth``, else ``depth_model``'s
        estimate), with the balloon's back for ``depth+back``."""
        from vdm3d.geometry.inflate import balloon_layers, depth_layers

        if self.carry == "inflate":
            return balloon_layers(alpha[None], camera)
        depth = self.input_depth[None] if self.input_depth is not None else None
        if depth is None:
            if self.depth_model is None:
                raise ConfigError(f"carry {self.carry!r} needs the input's depth: give a depth_model (the object "
                                  "job loads its object_depth model) or input_depth.")
            from vdm3d.models.tiny.depth import object_depth

            depth = object_depth(self.depth_model, reference[None].float(), alpha[None], camera)
        return depth_layers(depth.float(), camera, back=self.carry == "depth+back")


def strided_chunks(views: list[int], chunk: int) -> list[list[int]]:
    """``views`` in groups of ``chunk``; a short last group is the last ``chunk`` views (a run of the same
    spacing, so every clip looks like a training clip; its views already generated are kept)."""
    groups = [views[i:i + chunk] for i in range(0, len(views), chunk)]
    if len(groups) > 1 and len(groups[-1]) < chunk:
        groups[-1] = views[-chunk:]
    return groups


def load_depth_model(spec: str) -> Any:
    """The object-depth network (`vdm3d train object-depth`): a shipped tiny model's name (``object_depth``)
    or the ``.json`` model file of a training run."""
    from vdm3d.models.tiny import load_tiny, load_tiny_file

    return load_tiny_file(spec) if spec.endswith(".json") else load_tiny(spec)


def reference_alpha(reference: Float[Tensor, "H W 3"]) -> Float[Tensor, "H W"]:
    """The mask of an input composited on white, found as the orbit model's training found it."""
    import numpy as np

    from vdm3d.io.foreground import mask_from_background

    return torch.from_numpy(mask_from_background(reference.float().numpy(), np.ones(3, np.float32)))


@dataclasses.dataclass
class OracleOrbit:
    """Orbit frames rendered from the true object (for evaluation and tests, not a generator)."""

    scene: Any
    name: str = "oracle"

    def generate(self, reference: Float[Tensor, "H W 3"], plan: OrbitPlan, generator: torch.Generator
                 ) -> Float[Tensor, "F H W 3"]:
        from vdm3d.geometry.mesh_render import render_buffers

        return render_buffers(self.scene, plan.cameras, background=(1.0, 1.0, 1.0)).rgb.float()
