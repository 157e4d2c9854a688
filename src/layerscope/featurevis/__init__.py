"""Feature visualization: what input a unit answers to most strongly, found by optimizing an
image (see :func:`visualize`)."""

from .optimize import FeatureVis, visualize

__all__ = ["FeatureVis", "visualize"]
