"""What a model's output says about classes: a class map (N, K, h, w) of a segmentation model,
or a class vector (N, K) of a classifier, wherever it sits in the output: a tensor, torchvision's
``{"out": ..., "aux": ...}``, or a Hugging Face ``ModelOutput`` (``logits``). Class maps are
upsampled to the input size (bilinear, as torchvision's segmentation models do inside and as
``transformers``' ``post_process_semantic_segmentation`` does) before classes are read off."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .nested import first_tensor

__all__ = ["ClassOutput", "class_output", "model_class_names"]

_KEYS = ("out", "logits")  # torchvision's segmentation models, Hugging Face's ModelOutput


@dataclass(frozen=True)
class ClassOutput:
    """``scores``: (N, K, h, w) class scores of a segmentation model (at the model's own
    resolution) or (N, K) of a classifier."""

    kind: Literal["segmentation", "classification"]
    scores: torch.Tensor

    @property
    def classes(self) -> int:
        return int(self.scores.shape[1])

    def probabilities(self, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Softmax over classes of the first batch item; a class map is first resized to
        ``size`` (the input's), bilinearly."""
        s = self.scores[:1].float()
        if self.kind == "segmentation" and size is not None and tuple(s.shape[-2:]) != size:
            s = F.interpolate(s, size=size, mode="bilinear", align_corners=False)
        return s[0].softmax(0)


def _main_tensor(output: Any) -> torch.Tensor | None:
    if isinstance(output, Mapping):
        for key in _KEYS:
            value = output.get(key)
            if isinstance(value, torch.Tensor):
                return value
    return first_tensor(output)


def class_output(output: Any, classes: int | None = None) -> ClassOutput | None:
    """The class scores in ``output``, if it has any: a floating (N, K, h, w) or (N, K) tensor,
    with K == ``classes`` when the number of classes is known."""
    t = _main_tensor(output)
    if t is None or not t.is_floating_point() or t.dim() not in (2, 4):
        return None
    if classes is not None and t.shape[1] != classes:
        return None
    return ClassOutput("segmentation" if t.dim() == 4 else "classification", t)


def model_class_names(model: nn.Module) -> list[str]:
    """Class names a model carries itself: a Hugging Face model's ``config.id2label``."""
    config = getattr(model, "config", None)
    labels = getattr(config, "id2label", None)
    if not isinstance(labels, Mapping) or not labels:
        return []
    try:
        ordered = sorted((int(k), str(v)) for k, v in labels.items())
    except (TypeError, ValueError):
        return []
    if [k for k, _ in ordered] != list(range(len(ordered))):
        return []
    return [v for _, v in ordered]
