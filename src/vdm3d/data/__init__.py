"""Data: procedural worlds with exact ground truth, and readers for LLFF, COLMAP and transforms.json."""
