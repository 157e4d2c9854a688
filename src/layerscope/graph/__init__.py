"""How data flows through a model: :func:`module_graph` records one forward and gives its
graph at a level of the module tree (:class:`ModuleGraph`), with skips, branches, joins and
reused modules as they ran; :func:`layered` places it left to right for drawing."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..safety import model_kept_as_found
from .layout import layered
from .model import Edge, ModuleGraph, Node
from .record import FlowRecorder, Recording, record

__all__ = ["module_graph", "graph_of", "ModuleGraph", "Node", "Edge", "Recording", "FlowRecorder",
           "layered"]  # fmt: skip


def graph_of(model: nn.Module, recording: Recording, depth: int = 1) -> ModuleGraph:
    """The graph of a recorded forward of ``model``, opened down to ``depth``."""
    children = {n: [f"{n}.{c}" if n else c for c, _ in m.named_children()]
                for n, m in model.named_modules()}  # fmt: skip
    classes = {n: type(m).__name__ for n, m in model.named_modules()}
    return ModuleGraph(recording, children, depth, classes)


def module_graph(model: nn.Module, inputs: Any, depth: int = 1) -> ModuleGraph:
    """Data flow of one forward of ``model`` on ``inputs`` (no gradients; the model left as
    found). ``depth``: how far down the module tree the nodes are, counted in dots of the
    modules' names: 0 shows the model's children (``backbone``, ``classifier``), 1 their
    children (``backbone.layer1``), 3 the convolutions inside DeepLabV3's Bottlenecks. A module
    without children above that level is a node too."""
    if isinstance(inputs, torch.Tensor):
        device = next((p.device for p in model.parameters()), inputs.device)
        inputs = inputs.to(device)
    with model_kept_as_found(model, train=False, grad=False):
        recording = record(model, inputs)
    return graph_of(model, recording, depth)
