"""Preprocessing that knows its geometry: resize, optional centre crop, normalise."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.functional as TF
from PIL import Image

from .errors import ImageError
from .images import Geometry, load_image, resize_size_for

__all__ = ["Preprocess", "PreparedImage", "prepare_image", "labels_on_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreparedImage:
    """The model input (``tensor``, a (1, 3, h, w) batch), the image it came from
    (``image``, 8-bit RGB as shown to the user) and their ``geometry``."""

    tensor: torch.Tensor
    image: Image.Image
    geometry: Geometry


@dataclass(frozen=True)
class Preprocess:
    """Resize (an int sets the shorter side, like torchvision; a (h, w) pair sets both),
    then an optional centre crop, then normalise with ``mean`` and ``std``."""

    resize: int | tuple[int, int] | None = 520
    crop: tuple[int, int] | None = None
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    @classmethod
    def from_transforms(cls, transforms: Any) -> Preprocess:
        """Read torchvision's preset transforms (``weights.transforms()``) into a Preprocess."""
        resize = getattr(transforms, "resize_size", None)
        crop = getattr(transforms, "crop_size", None)
        return cls(
            resize=_one_or_pair(resize),
            crop=_pair(crop) if crop else None,
            mean=tuple(getattr(transforms, "mean", IMAGENET_MEAN)),
            std=tuple(getattr(transforms, "std", IMAGENET_STD)),
        )

    def with_size(self, size: int | None) -> Preprocess:
        """The same preprocessing at another resize (small inputs for quick tests). A
        preprocessing that crops to a fixed size (classifiers) is kept: its model expects it."""
        if self.crop:
            return self
        return Preprocess(resize=size, crop=self.crop, mean=self.mean, std=self.std)

    def __call__(self, source: Any) -> PreparedImage:
        image = load_image(source)
        h, w = image.height, image.width
        rh, rw = resize_size_for((h, w), self.resize) if self.resize else (h, w)
        resized = image
        if (rh, rw) != (h, w):  # on the PIL image, as torchvision's presets do
            resized = TF.resize(
                image, [rh, rw], interpolation=TF.InterpolationMode.BILINEAR, antialias=True
            )
        t = TF.pil_to_tensor(resized)
        sy, sx = h / rh, w / rw
        oy = ox = 0.0
        if self.crop:
            ch, cw = self.crop
            # torchvision's center_crop: top = round((H - h) / 2); a crop larger than the image
            # pads (h - H) // 2 above it (not the rounding: round(-1.5) is -2, the pad 1)
            top, left = _crop_start(rh, ch), _crop_start(rw, cw)
            t = TF.center_crop(t, [ch, cw])
            oy, ox = top * sy, left * sx
            rh, rw = ch, cw
        x = TF.normalize(TF.convert_image_dtype(t, torch.float), list(self.mean), list(self.std))
        geometry = Geometry(
            image_size=(h, w),
            input_size=(rh, rw),
            scale=(sy, sx),
            offset=(oy, ox),
            source_size=image.info.get("layerscope_source_size"),
        )
        return PreparedImage(x.unsqueeze(0), image, geometry)


def _crop_start(size: int, crop: int) -> int:
    """Where torchvision's center_crop starts on an axis of ``size`` (negative: padding)."""
    return int(round((size - crop) / 2.0)) if crop <= size else -((crop - size) // 2)


def prepare_image(source: Any, preprocess: Preprocess | Callable[[Any], Any]) -> PreparedImage:
    """Apply ``preprocess`` to an image. A plain callable (e.g. a torchvision Compose) gets the
    PIL image and must return a (3, h, w) image, a (1, 3, h, w) batch or a (1, 3, t, h, w) clip;
    its geometry is taken to be a resize of the whole image."""
    if isinstance(preprocess, Preprocess):
        return preprocess(source)
    image = load_image(source)
    out = preprocess(image)
    if not isinstance(out, torch.Tensor) or out.dim() not in (3, 4, 5):
        raise ImageError(
            "preprocess must return a (3, H, W) image, a (1, 3, H, W) batch or a "
            "(1, 3, T, H, W) clip, got "
            f"{type(out).__name__}{tuple(out.shape) if isinstance(out, torch.Tensor) else ''}"
        )
    batch = out.unsqueeze(0) if out.dim() == 3 else out
    ih, iw = batch.shape[-2:]
    geometry = Geometry(
        image_size=(image.height, image.width),
        input_size=(int(ih), int(iw)),
        scale=(image.height / ih, image.width / iw),
        source_size=image.info.get("layerscope_source_size"),
    )
    return PreparedImage(batch, image, geometry)


def _one_or_pair(v: Any) -> int | tuple[int, int] | None:
    if v is None:
        return None
    if isinstance(v, int):
        return v
    v = list(v)
    return v[0] if len(v) == 1 else (int(v[0]), int(v[1]))


def _pair(v: Any) -> tuple[int, int]:
    v = [v] if isinstance(v, int) else list(v)
    return (int(v[0]), int(v[-1]))


def labels_on_input(labels: torch.Tensor, geometry: Geometry, fill: int = -1) -> torch.Tensor:
    """A label map of an image (``(h, w)`` integers, at the image's size or any other of its
    aspect ratio) on the model input's grid, through the same resize and crop as the image:
    each input pixel takes the label under its centre (nearest neighbour; labels are never
    blended), ``fill`` where the input shows no image (a crop's padding); int64. Dissection
    compares unit maps with masks this way, pixel for pixel on what the model saw."""
    labels = labels.long()
    (ih, iw), (lh, lw) = geometry.image_size, labels.shape[-2:]
    (h, w), (sy, sx), (oy, ox) = geometry.input_size, geometry.scale, geometry.offset
    ys = torch.floor((oy + (torch.arange(h, dtype=torch.float64) + 0.5) * sy) * lh / ih)
    xs = torch.floor((ox + (torch.arange(w, dtype=torch.float64) + 0.5) * sx) * lw / iw)
    rows, cols = ys.long(), xs.long()
    inside = ((rows >= 0) & (rows < lh))[:, None] & ((cols >= 0) & (cols < lw))[None, :]
    picked = labels[rows.clamp(0, lh - 1)][:, cols.clamp(0, lw - 1)]
    return torch.where(inside, picked, torch.full((), fill, dtype=torch.long))
