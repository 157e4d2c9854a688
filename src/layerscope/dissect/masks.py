"""Where a dissection's masks come from, and the names of their classes.

- A folder of label images (PNG, BMP, GIF, TIFF; searched recursively), matched to the image
  files by stem (``photos/2007_000032.jpg`` <- ``labels/2007_000032.png``): a palette ("P") or
  grey ("L") image whose pixel value is the class index, 255 where unlabelled (VOC's layout).
- A torch ``Dataset`` returning ``(image, mask)`` (torchvision's ``VOCSegmentation``), index for
  index with the images; the mask a PIL image, an array or an integer tensor (255 or a negative
  value: unlabelled).
- A segmentation model, the dissected one included: its class map (the argmax over classes at
  the preprocessed input's size, logits upsampled bilinearly first when smaller) is the mask.

A mask of another aspect ratio than its image is skipped; one the size of the image or scaled
from it goes through the image's own resize and crop (nearest neighbour,
:func:`layerscope.preprocess.labels_on_input`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn

from ..errors import LayerScopeError
from ..images import Geometry
from ..models import torchvision_class_names
from ..outputs import class_output, model_class_names
from ..preprocess import Preprocess, labels_on_input

__all__ = ["Masks", "open_masks", "MissingMask", "class_names", "MASK_SUFFIXES", "IGNORE"]

MASK_SUFFIXES = (".png", ".bmp", ".gif", ".tif", ".tiff")  # lossless: a JPEG blurs labels
IGNORE = 255  # a label image's "no label"


class MissingMask(Exception):
    """The image has no usable mask: it is skipped, with this reason."""


@dataclass
class Masks:
    """``kind``: folder, dataset, model, or labels (a classifier's: one class per image, from a
    sequence or a Dataset's ``(image, label)``); ``classes``: the class names when known (else the
    masks' own values make ``class i``); ``describe``: what the masks are, recorded with the
    dissection."""

    kind: str
    describe: str
    classes: list[str] | None
    files: dict[str, list[Path]] = field(default_factory=dict)
    dataset: Any = None
    model: nn.Module | None = field(default=None, repr=False)
    own: bool = False  # the segmenter is the dissected model: its forward is shared

    def where(self, label: str, index: int) -> str:
        """The name of image ``index``'s mask (a path, ``masks[i]``)."""
        if self.kind == "folder":
            found = self.files.get(Path(label).stem, [])
            return str(found[0]) if len(found) == 1 else f"mask of {label}"
        return f"masks[{index}] (of {label})"

    def file(self, label: str) -> Path | None:
        found = self.files.get(Path(label).stem, [])
        return found[0] if len(found) == 1 else None

    def load(self, label: str, index: int, geometry: Geometry) -> torch.Tensor:
        """Image ``index``'s mask on the model input's grid: (H, W) int64, -1 unlabelled.
        :class:`MissingMask` when there is none or it does not fit the image; a class value
        beyond the known classes is a LayerScopeError naming the mask and the value."""
        where = self.where(label, index)
        if self.kind == "labels":
            return self._label(index, where)
        if self.kind == "folder":
            found = self.files.get(Path(label).stem, [])
            if not found:
                raise MissingMask("no mask: no label image of this stem in the masks folder")
            if len(found) > 1:
                raise MissingMask(f"several masks of this stem: {', '.join(map(str, found))}")
            raw = _read_file(found[0])
        else:
            item = self.dataset[index]
            raw = _as_labels(item[1] if isinstance(item, (tuple, list)) else item, where)
        labels = torch.where((raw == IGNORE) | (raw < 0), -1, raw)
        self.check(labels, where)
        image = geometry.source_size or geometry.image_size
        mh, mw = labels.shape
        if abs(mh * image[1] - mw * image[0]) > max(image):
            raise MissingMask(
                f"mask {mw}x{mh} has another aspect ratio than its image {image[1]}x{image[0]}"
            )
        return labels_on_input(labels, geometry, fill=-1)

    def _label(self, index: int, where: str) -> torch.Tensor:
        """A classifier's label of image ``index``, as a (1,) tensor."""
        item = self.dataset[index]
        value = item[1] if isinstance(item, (tuple, list)) else item
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            value = int(value)
        if isinstance(value, (bool, float)) or not isinstance(value, (int, np.integer)):
            raise LayerScopeError(f"{where} is {value!r}: a classifier's label is a class index")
        if value < 0:
            raise MissingMask("no label")
        labels = torch.tensor([int(value)])
        self.check(labels, where)
        return labels

    def check(self, labels: torch.Tensor, where: str) -> None:
        if self.classes is None or not labels.numel():
            return
        top = int(labels.max())
        if top >= len(self.classes):
            raise LayerScopeError(
                f"{where} holds the class value {top}, beyond the {len(self.classes)} classes "
                f"(0-{len(self.classes) - 1}; {IGNORE} is unlabelled): pass classes= with a "
                "name for every value, or correct the mask"
            )

    def segment(self, x: torch.Tensor, output: Any = None) -> torch.Tensor:
        """The segmenter's class map of inputs ``x`` (B, H * W); ``output``: the dissected
        model's own output when it is the segmenter."""
        if output is None:
            assert self.model is not None
            output = self.model(x)
        scores = class_output(output)
        if scores is None or scores.kind != "segmentation":
            raise LayerScopeError(
                "the masks model gives no class map: it must return (N, K, h, w) class scores "
                "(a tensor, torchvision's {'out': ...} or a Hugging Face output's logits)"
            )
        s = scores.scores.float()
        if tuple(s.shape[-2:]) != tuple(x.shape[-2:]):
            s = F.interpolate(s, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False)
        if self.classes is not None and s.shape[1] != len(self.classes):
            raise LayerScopeError(
                f"the masks model scores {s.shape[1]} classes but {len(self.classes)} class "
                "names were given"
            )
        return s.argmax(1).flatten(1)


def _read_file(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened) or opened
    except (OSError, SyntaxError, ValueError) as exc:
        raise MissingMask(f"mask unreadable ({type(exc).__name__}: {exc})") from None
    if image.mode not in ("P", "L", "I", "I;16", "1"):
        raise LayerScopeError(
            f"{str(path)!r} is a {image.mode} image: a mask is a palette (P) or grey (L) image "
            "whose pixel value is the class index"
        )
    return torch.from_numpy(np.asarray(image).astype(np.int64))


def _as_labels(mask: Any, where: str) -> torch.Tensor:
    if isinstance(mask, (Image.Image, np.ndarray)):
        mask = torch.from_numpy(np.array(mask))  # a copy: PIL's arrays are read-only
    if not isinstance(mask, torch.Tensor):
        raise LayerScopeError(f"{where} is a {type(mask).__name__}, not a mask")
    mask = mask.squeeze(0) if mask.dim() == 3 and mask.shape[0] == 1 else mask
    if mask.dim() != 2 or mask.is_floating_point() or mask.dtype == torch.bool:
        raise LayerScopeError(
            f"{where} must be an (H, W) map of integer class indices, got "
            f"{tuple(mask.shape)} {mask.dtype}"
        )
    return mask.long()


def open_masks(masks: Any, sources: Any, model: nn.Module, classes: Any) -> Masks:
    """The masks of the images ``sources``, with their class names."""
    if isinstance(masks, nn.Module):
        names = class_names(classes, masks)
        own = masks is model
        what = "the dissected model" if own else f"model {type(masks).__qualname__}"
        return Masks("model", what, names, model=masks, own=own)
    names = class_names(classes, model)
    if isinstance(masks, (str, Path)):
        root = Path(masks).expanduser()
        if not root.is_dir():
            raise LayerScopeError(f"masks: no folder at {str(root)!r}")
        if sources.kind != "paths":
            raise LayerScopeError(
                "masks in a folder are matched to image files by name: give the images as a "
                "folder or paths, or the masks as a Dataset returning (image, mask)"
            )
        files: dict[str, list[Path]] = {}
        for p in sorted(root.rglob("*")):
            if p.suffix.lower() in MASK_SUFFIXES and p.is_file():
                files.setdefault(p.stem, []).append(p)
        if not files:
            raise LayerScopeError(
                f"no label images in {str(root)!r} (searched for {' '.join(MASK_SUFFIXES)})"
            )
        return Masks("folder", f"folder {str(root)!r}", names, files=files)
    if isinstance(masks, torch.utils.data.Dataset) and hasattr(masks, "__len__"):
        if len(masks) != len(sources):
            raise LayerScopeError(
                f"masks: {len(masks)} items for {len(sources)} images; the Dataset's item i "
                "is the mask of image i"
            )
        return Masks("dataset", f"dataset {type(masks).__qualname__}", names, dataset=masks)
    raise LayerScopeError(
        f"masks must be a folder of label images, a Dataset returning (image, mask) or a "
        f"segmentation model, got {type(masks).__name__}"
    )


def class_names(classes: Any, model: nn.Module | None) -> list[str] | None:
    """``classes`` when given; else a segmentation model's own (VOC's for torchvision's,
    ``id2label`` for Hugging Face's); else None (``class i`` for the values the masks hold)."""
    if classes is not None:
        names = list(classes) if not isinstance(classes, str) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise LayerScopeError("classes must be a list of class names (strings), index order")
        if len(set(names)) != len(names):
            raise LayerScopeError("classes must be distinct names")
        return names
    if model is None:
        return None
    named = model_class_names(model)
    if named:
        return named
    if type(model).__module__.startswith("torchvision.models.segmentation"):
        convs = [m for m in getattr(model, "classifier", nn.Module()).modules()
                 if isinstance(m, nn.Conv2d)]  # fmt: skip
        if convs:
            return torchvision_class_names(model, convs[-1].out_channels)
    return None


def geometry_preprocess(pre: Any, kind: str) -> Any:
    """The preprocessing masks from files or a Dataset can follow: a :class:`Preprocess` as it
    is, torchvision's presets (``weights.transforms()``) read into one. Any other function is
    refused: what it crops is unknown, and masks taken as a resize of the whole image would be
    compared with units that saw another part of it. A model's masks are made on the input
    itself: any preprocessing does."""
    if isinstance(pre, Preprocess) or kind in ("model", "labels"):
        return pre
    if hasattr(pre, "resize_size") and hasattr(pre, "mean"):
        return Preprocess.from_transforms(pre)
    raise LayerScopeError(
        "masks follow each image's resize and crop, which LayerScope knows from a "
        "layerscope.Preprocess only: pass preprocess=ls.Preprocess(resize=..., crop=...) "
        "(ls.Preprocess.from_transforms(weights.transforms()) reads torchvision's presets); "
        f"the function {pre!r} may crop where the masks would not"
    )
