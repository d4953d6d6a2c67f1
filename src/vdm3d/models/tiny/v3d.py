"""V3D's scene mode on the tiny video model: input views' features reprojected into every target frame.

V3D conditions its scene-level video model on a PixelNeRF-style encoder (``sgm/modules/encoders/
pixelnerf.py`` in the official repository, SEED_SYSTEMS.md §2.1): features of the posed input images
are sampled along each target ray and averaged over the inputs that see them. The tiny version:

* **encoder**: three convolutions over each input image (64 px -> ``features`` channels at half
  resolution), plus the image itself pooled to that resolution (3 channels), so colour reaches the
  video model even before the encoder has learned anything;
* **reprojection** (:func:`vdm3d.geometry.reproject.reproject_features`) into every target camera
  at half resolution, ``depths`` planes uniform in inverse depth between the scene's ``near`` and
  ``far``: per plane the mean feature, the variance across inputs and the fraction that see it;
* **feature stem**: a stride-2 convolution to latent resolution and a zero-initialized convolution to
  the denoiser's first width, added to its first convolution's output
  (:meth:`~vdm3d.models.tiny.denoiser.VideoDenoiser.forward`'s ``extra``).

Everything else is the shipped ``video`` model (reference latent, Plucker rays relative to the
reference, the prepended clean reference frame), whose weights initialize the copy: with the stem's
last convolution at zero, the untrained V3D model is exactly the video model. The null (CFG)
condition drops the reprojected features together with the reference, keeping the cameras.

Condition inputs ride in :attr:`Conditioning.extras`: ``scene_images [B, V, H, W, 3]``,
``scene_cameras`` (Cameras ``[B, V]``), ``scene_view_mask [B, V]`` (1 = a real input; optional) and
``scene_depth_range [B, 2]`` (near, far).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
import tyro
from jaxtyping import Float
from torch import Tensor, nn

from vdm3d.cameras.camera import Cameras
from vdm3d.errors import InputError
from vdm3d.geometry.reproject import EXTRA_CHANNELS, depth_planes, reproject_features
from vdm3d.models.tiny.backbone import TinyCondition, TinyVideoBackbone
from vdm3d.models.tiny.denoiser import DenoiserConfig, VideoDenoiser
from vdm3d.protocols import Conditioning


@dataclasses.dataclass(frozen=True)
class V3dSceneConfig:
    """Shape of the V3D scene model: the video denoiser plus the encoder and feature stem."""

    denoiser: tyro.conf.Suppress[DenoiserConfig] = DenoiserConfig()
    """the wrapped video denoiser (training takes the shape of the video model it starts from)"""
    features: int = 8
    """learned encoder channels (the pooled image adds 3)"""
    depths: int = 8
    """samples per target ray, uniform in inverse depth"""
    stem: int = 48
    """width of the feature stem"""
    feature_factor: int = 2
    """the encoder and the reprojection work at 1 / this of the image side"""

    @property
    def reference_frame(self) -> bool:
        return self.denoiser.reference_frame

    @property
    def scene_channels(self) -> int:
        """Channels of the reprojected condition per target frame."""
        return self.depths * (self.features + 3 + EXTRA_CHANNELS)


class V3dSceneDenoiser(nn.Module):
    """The video denoiser with V3D's reprojected-feature condition (see the module docstring)."""

    def __init__(self, config: V3dSceneConfig = V3dSceneConfig()):
        super().__init__()
        self.config = config
        self.video = VideoDenoiser(config.denoiser)
        k = config.features
        self.encoder = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.SiLU(),
                                     nn.Conv2d(32, 32, 3, stride=config.feature_factor, padding=1), nn.SiLU(),
                                     nn.Conv2d(32, k, 3, padding=1))
        stride = config.denoiser.spatial_factor // config.feature_factor
        self.feature_stem = nn.Sequential(nn.Conv2d(config.scene_channels, config.stem, 3, stride=stride, padding=1),
                                          nn.SiLU(), nn.Conv2d(config.stem, config.denoiser.channels[0], 3, padding=1))
        nn.init.zeros_(self.feature_stem[-1].weight)
        nn.init.zeros_(self.feature_stem[-1].bias)

    def embed_maps(self, maps: Tensor) -> Tensor:
        return self.video.embed_maps(maps)

    def encode_views(self, images: Float[Tensor, "B V H W 3"]) -> Float[Tensor, "B V K h2 w2"]:
        """Encoder features and the pooled image of every input view."""
        b, v, h, w, _ = images.shape
        x = images.reshape(b * v, h, w, 3).permute(0, 3, 1, 2)
        feats = torch.cat([self.encoder(x), F.avg_pool2d(x, self.config.feature_factor)], 1)
        return feats.reshape(b, v, *feats.shape[1:])

    def scene_condition(self, images: Tensor, sources: Cameras, targets: Cameras, depth_range: Tensor,
                        view_mask: Tensor | None = None) -> Float[Tensor, "B F Cs h2 w2"]:
        """Reprojected features ``[B, F, depths * (features + 5), H/2, W/2]`` of the inputs in ``targets [B, F]``."""
        feats = self.encode_views(images)
        h2, w2 = feats.shape[-2:]
        planes = depth_planes(depth_range[:, 0], depth_range[:, 1], self.config.depths).to(feats)
        out = reproject_features(feats, sources, targets.resize(w2, h2), planes, view_mask)
        b, f = out.shape[:2]
        return out.reshape(b, f, -1, h2, w2)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Tensor, scene: Tensor | None = None) -> Tensor:
        """The video denoiser's call; ``scene [B, F, Cs, H/2, W/2]`` enters through the feature stem."""
        extra = None
        if scene is not None:
            b, f = scene.shape[:2]
            extra = self.feature_stem(scene.reshape(b * f, *scene.shape[2:]))
            extra = extra.reshape(b, f, *extra.shape[1:])
        return self.video(x_in, c_noise, cond, extra=extra)


@dataclasses.dataclass(frozen=True)
class V3dCondition(TinyCondition):
    """A tiny condition plus the reprojected input features ``[B, F, Cs, H/2, W/2]`` (zeros: dropped)."""

    scene: Tensor | None = None


class V3dSceneBackbone(TinyVideoBackbone):
    """The tiny backbone whose denoiser is a :class:`V3dSceneDenoiser` (reads ``scene_*`` extras)."""

    def condition(self, cond: Conditioning, *, null: bool = False) -> V3dCondition:
        base = super().condition(cond, null=null)
        ex = cond.extras
        if "scene_images" not in ex or cond.cameras is None:
            raise InputError("Conditioning: the V3D scene model needs cameras and the input views in extras "
                             "(scene_images, scene_cameras, scene_depth_range).")
        param = next(self.parameters())
        cams = cond.cameras.to(param)
        images = ex["scene_images"].to(param)
        scene = self.denoiser.scene_condition(images, ex["scene_cameras"].to(param), cams,
                                              torch.as_tensor(ex["scene_depth_range"]).to(param),
                                              ex.get("scene_view_mask"))
        if null:
            scene = torch.zeros_like(scene)
        return V3dCondition(base.static, base.maps, base.reference_rays, scene)

    def _denoiser_kwargs(self, cond: TinyCondition, b: int, reference_frame: bool) -> dict:
        scene = getattr(cond, "scene", None)
        if scene is None:
            return {}
        scene = scene.expand(b, *scene.shape[1:]) if scene.shape[0] != b else scene
        if reference_frame:  # the prepended reference frame has no reprojected features
            scene = torch.cat([torch.zeros_like(scene[:, :1]), scene], 1)
        return {"scene": scene}


def from_video(video: VideoDenoiser, config: V3dSceneConfig | None = None) -> V3dSceneDenoiser:
    """A V3D scene denoiser whose video part is a copy of ``video`` (its new input starts at zero)."""
    config = config or V3dSceneConfig(denoiser=video.config)
    net = V3dSceneDenoiser(dataclasses.replace(config, denoiser=video.config))
    net.video.load_state_dict(video.state_dict())
    return net


__all__ = ["V3dCondition", "V3dSceneBackbone", "V3dSceneConfig", "V3dSceneDenoiser", "from_video"]
