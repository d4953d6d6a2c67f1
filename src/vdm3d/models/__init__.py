"""Backbones: the protocol the jobs depend on, embedded tiny models, and hub adapters."""

from vdm3d.protocols import Backbone, Conditioning

__all__ = ["Backbone", "Conditioning"]
