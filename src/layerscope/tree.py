"""A model's module tree as plain data (lists, dicts, strings, ints) for the widget and users."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from torch import nn

from .activations import Activations
from .receptive import FieldJson, ReceptiveField

__all__ = ["module_tree"]


class ModuleNode(TypedDict):
    """One node of :func:`module_tree` (the widget's ``TreeNode``: the same type)."""

    id: str
    name: str
    cls: str
    parent: str | None
    children: list[str]
    depth: int
    params: int
    total_params: int
    shape: Any
    calls: int | None
    rf: FieldJson | None


def module_tree(
    model: nn.Module,
    acts: Activations | None = None,
    *,
    call_counts: Mapping[str, int] | None = None,
    shapes: Mapping[str, Any] | None = None,
    receptive: Mapping[str, ReceptiveField] | None = None,
) -> list[ModuleNode]:
    """One node per module of ``model.named_modules()``, in pre-order (parents first).

    Each node: ``id`` (qualified name, ``""`` for the model), ``name`` (last part), ``cls``,
    ``parent`` (id or None), ``children`` (ids), ``depth``, ``params`` (the module's own
    parameters), ``total_params`` (with its children's), ``shape`` (the output structure seen
    in ``acts`` or given in ``shapes``, else None) and ``calls`` (calls per forward when
    known, else None;
    0 means the module never runs, like DeepLabV3's ``classifier.0.convs`` ModuleList) and
    ``rf`` (its output's receptive field, when given in ``receptive``)."""
    shapes = {**(shapes or {}), **(acts.shapes() if acts is not None else {})}
    counts = dict(call_counts or {})
    if acts is not None:
        counts.update({k: v for k, v in acts.call_counts().items() if k not in counts})
    nodes: list[ModuleNode] = []
    index: dict[str, ModuleNode] = {}
    for name, module in model.named_modules():
        parent = name.rpartition(".")[0] if name else None
        own = sum(p.numel() for p in module.parameters(recurse=False))
        node: ModuleNode = {
            "id": name,
            "name": name.rpartition(".")[2] if name else type(model).__name__,
            "cls": type(module).__name__,
            "parent": parent,
            "children": [],
            "depth": name.count(".") + 1 if name else 0,
            "params": own,
            "total_params": own,
            "shape": shapes.get(name),
            "calls": counts.get(name, 0 if call_counts is not None else None),
            "rf": receptive[name].to_json() if receptive and name in receptive else None,
        }
        nodes.append(node)
        index[name] = node
        if parent is not None and parent in index:
            index[parent]["children"].append(name)
    for node in reversed(nodes):  # children come after parents: sum bottom-up
        if node["parent"] is not None and node["parent"] in index:
            index[node["parent"]]["total_params"] += node["total_params"]
    return nodes
