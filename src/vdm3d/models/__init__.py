"""Backbones: the protocol the jobs depend on, embedded tiny models, and hub adapters."""

from vdm3d.models.protocol import Backbone, Conditioning

__all__ = ["Backbone", "Conditioning"]
