"""Where a sweep's images come from: a folder (searched recursively), a list of paths, a torch
``Dataset`` returning an image or ``(image, target)``, or an iterable of image tensors. Each
image gets an index (its place in a stable order: sorted paths, dataset order) and a label (the
path, ``dataset[i]``, ``item[i]``), so results can name it and a resumed sweep can skip it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError, LayerScopeError
from ..preprocess import PreparedImage, Preprocess, prepare_image

__all__ = ["IMAGE_SUFFIXES", "Sources", "open_sources"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Sources:
    """``labels[i]`` names image ``i``; :meth:`load` reads it (a path, a dataset item, a
    tensor), :meth:`prepare` makes it a model input. ``kind``: paths, dataset or tensors."""

    kind: str
    labels: list[str]
    items: Any  # list of Paths, the Dataset, or a list of tensors

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, index: int) -> Any:
        if self.kind == "paths":
            return self.items[index]
        if self.kind == "dataset":
            item = self.items[index]
            return item[0] if isinstance(item, (tuple, list)) else item
        return self.items[index]

    def prepare(self, index: int, preprocess: Preprocess | Any) -> PreparedImage:
        """Image ``index`` as a model input; an input holding NaN or infinite values (from
        the image or from the preprocessing) is refused: it would be counted yet rank nowhere."""
        prepared = prepare_image(self.load(index), preprocess)
        if not torch.isfinite(prepared.tensor).all():
            raise ImageError("the preprocessed image holds NaN or infinite values")
        return prepared


def open_sources(images: Any) -> Sources:
    """Sources for any of the accepted forms; a clear error for anything else or for nothing."""
    if isinstance(images, (str, Path)):
        root = Path(images).expanduser()
        if root.is_dir():
            # A dangling symlink or a symlink loop is no file, yet it is listed: reading it
            # fails, so the sweep reports it in ``skipped`` instead of dropping it silently.
            paths = sorted(
                p
                for p in root.rglob("*")
                if (p.is_file() or p.is_symlink()) and p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not paths:
                raise LayerScopeError(
                    f"no images in {str(root)!r} (searched recursively for "
                    f"{' '.join(IMAGE_SUFFIXES)})"
                )
            return Sources("paths", [str(p) for p in paths], paths)
        if root.is_file():
            return Sources("paths", [str(root)], [root])
        raise LayerScopeError(f"no folder or file at {str(root)!r}")
    if isinstance(images, torch.utils.data.Dataset) and hasattr(images, "__len__"):
        n = len(images)
        return Sources("dataset", [f"dataset[{i}]" for i in range(n)], images)
    if isinstance(images, torch.Tensor):
        raise LayerScopeError(
            "a single tensor: pass a list of image tensors, a folder, paths or a Dataset"
        )
    if isinstance(images, Iterable):
        items = list(images)
        if all(isinstance(i, (str, Path)) for i in items):
            paths = [Path(i).expanduser() for i in items]
            return Sources("paths", [str(p) for p in paths], paths)
        if all(isinstance(i, torch.Tensor) for i in items):
            return Sources("tensors", [f"item[{i}]" for i in range(len(items))], items)
        kinds = sorted({type(i).__name__ for i in items})
        raise LayerScopeError(f"images must be all paths or all tensors, got {', '.join(kinds)}")
    raise ImageError(
        f"cannot sweep a {type(images).__name__}: give a folder, a list of paths, a torch "
        "Dataset or an iterable of image tensors"
    )
