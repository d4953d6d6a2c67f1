"""Metrics: PSNR, SSIM, perceptual, Chamfer / F-score, pose error, temporal consistency."""
