"""Gaussian splatting: the Gaussians container, 3DGS PLY files, SH colors and the renderer."""

from vdm3d.splat.gaussians import PARAM_NAMES, Gaussians
from vdm3d.splat.ply import load_ply, save_ply
from vdm3d.splat.output import RenderOutput
from vdm3d.splat.render import render
from vdm3d.splat.sh import eval_sh, rgb_to_sh, sh_to_rgb

__all__ = ["Gaussians", "PARAM_NAMES", "load_ply", "save_ply", "render", "RenderOutput",
           "eval_sh", "rgb_to_sh", "sh_to_rgb"]
