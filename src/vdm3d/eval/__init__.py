"""Evaluation harnesses behind `vdm3d eval`: each module exposes COMMANDS (name -> function)."""
