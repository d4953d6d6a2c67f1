"""Reconstruction: fit Gaussians to Views (losses, trainer, checkpoints, evaluation)."""
