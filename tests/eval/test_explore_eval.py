"""`vdm3d eval explore` scores: PSNR split into the cache's valid pixels and the holes."""

import math

import torch

from vdm3d.eval.explore import score


def test_score_splits_psnr_into_valid_pixels_and_holes():
    g = torch.Generator().manual_seed(0)
    truth = 0.2 + 0.6 * torch.rand(6, 16, 16, 3, generator=g)
    valid = torch.ones(6, 16, 16)
    valid[1:, 4:12, :8] = 0  # a quarter of every frame after the first is a hole
    video = truth + 0.01  # 40 dB on the valid pixels
    video[valid.bool() == 0] = truth[valid.bool() == 0] + 0.1  # 20 dB in the holes
    s = score(video, truth, segment=3, revisit=2, valid=valid)
    assert math.isclose(s["psnr_valid"], 40.0, abs_tol=1e-3) and math.isclose(s["psnr_holes"], 20.0, abs_tol=1e-3)
    assert math.isclose(s["hole_fraction"], 0.25, abs_tol=1e-9)
    assert 20.0 < s["psnr"] < 40.0 and len(s["psnr_segments"]) == 2
    assert math.isnan(score(video, truth, 3, 2)["psnr_holes"])  # no mask, no split
