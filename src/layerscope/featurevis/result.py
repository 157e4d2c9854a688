"""What a feature visualization gives: the images, one per channel, and the objective's trace."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image

__all__ = ["FeatureVis"]


@dataclass(frozen=True)
class FeatureVis:
    """``tensor``: (N, 3, size, size) in [0, 1], one per channel; ``images``: the same as PIL
    images; ``trace``: (steps, N) the objective at each step (under that step's transforms)."""

    module: str
    channels: list[int]
    tensor: torch.Tensor
    trace: torch.Tensor

    @property
    def images(self) -> list[Image.Image]:
        arr = (self.tensor.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def montage(self, cols: int | None = None, gap: int = 2) -> Image.Image:
        """The images in a grid, left to right, then down."""
        images = self.images
        cols = cols or min(len(images), 8)
        rows = -(-len(images) // cols)
        h, w = images[0].height, images[0].width
        sheet = Image.new("RGB", (cols * (w + gap) - gap, rows * (h + gap) - gap), "white")
        for i, im in enumerate(images):
            r, c = divmod(i, cols)
            sheet.paste(im, (c * (w + gap), r * (h + gap)))
        return sheet
