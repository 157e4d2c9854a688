"""The vocabulary shared with the front end, read from ``contract.json`` (which the JS bundle
imports too): aggregate names and their order, overlay modes, the binary dtypes, and the colour
scales as explicit stops, so a name means the same colours in the widget, in
``explorer.figure()`` and in the HTML export."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, get_args

from ..errors import ArgumentError
from ..reduce import Aggregate

__all__ = ["AGGREGATES", "AGGREGATE_LABELS", "OVERLAYS", "DTYPES", "COLORSCALES",
           "DEFAULT_COLORSCALE", "colorscale_stops"]  # fmt: skip

_CONTRACT: dict[str, Any] = json.loads(
    (resources.files("layerscope.widget") / "contract.json").read_text(encoding="utf-8")
)
AGGREGATES: tuple[Aggregate, ...] = tuple(_CONTRACT["aggregates"])  # checked below
AGGREGATE_LABELS: dict[str, str] = dict(_CONTRACT["aggregate_labels"])
OVERLAYS: tuple[str, ...] = tuple(_CONTRACT["overlays"])
DTYPES: tuple[str, ...] = tuple(_CONTRACT["dtypes"])
COLORSCALES: dict[str, list[list[Any]]] = dict(_CONTRACT["colorscales"])
DEFAULT_COLORSCALE: str = _CONTRACT["default_colorscale"]

if set(AGGREGATES) != set(get_args(Aggregate)):  # the analysis side computes these by name
    raise ImportError(f"contract.json aggregates {AGGREGATES} differ from reduce's")


def colorscale_stops(name: str) -> list[list[Any]]:
    """The stops of a scale LayerScope draws; an unknown name is an error, never a silent
    fallback."""
    try:
        return COLORSCALES[name]
    except KeyError:
        raise ArgumentError(
            f"unknown colour scale {name!r}; choose one of {', '.join(COLORSCALES)}"
        ) from None
