"""Feature visualization: what input a unit answers to most strongly, found by optimizing an
image (see :func:`visualize`)."""

from .job import Job
from .optimize import start, visualize
from .result import FeatureVis

__all__ = ["FeatureVis", "Job", "start", "visualize"]
