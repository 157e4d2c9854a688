"""Images in, model inputs out, with the geometry to map an activation cell back onto the image.

Anything image-like is accepted: a path, a PIL image, a numpy array or a tensor. EXIF
orientation is applied, grayscale / RGBA / 16-bit become 8-bit RGB (transparency composited on
white), and huge images are capped before anything else touches them."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .receptive import ReceptiveField

__all__ = ["Geometry", "load_image", "sample_image", "SAMPLE_IMAGES", "DEFAULT_MAX_SIDE"]

DEFAULT_MAX_SIDE = 2048
SAMPLE_IMAGES = {
    "astronaut": "astronaut.jpg",  # Eileen Collins, NASA; public domain
    "chelsea": "chelsea.jpg",  # Stefan van der Walt's cat; CC0
}
_ACCEPTED = "a file path, a PIL image, an (H, W[, 3|4]) array, a (3, H, W) tensor or file bytes"


def sample_image(name: str = "astronaut") -> Path:
    """Path of a bundled sample image (``astronaut`` or ``chelsea``)."""
    if name not in SAMPLE_IMAGES:
        raise ImageError(f"no sample image {name!r}; choose one of {sorted(SAMPLE_IMAGES)}")
    return Path(str(resources.files("layerscope") / "data" / SAMPLE_IMAGES[name]))


class GeometryJson(TypedDict):
    """:meth:`Geometry.to_json`, the widget's ``GeometryPayload``."""

    image_size: list[int]
    input_size: list[int]
    scale: list[float]
    offset: list[float]
    source_size: list[int] | None


@dataclass(frozen=True)
class Geometry:
    """Where the model's input pixels lie on the (capped, upright) image the user sees.

    Input pixel ``(y, x)`` covers image pixels from ``offset + (y, x) * scale`` to
    ``offset + (y + 1, x + 1) * scale``; a crop gives a positive offset, padding a negative one.
    ``source_size`` is the original file's size before the ``max_side`` cap."""

    image_size: tuple[int, int]
    input_size: tuple[int, int]
    scale: tuple[float, float]
    offset: tuple[float, float] = (0.0, 0.0)
    source_size: tuple[int, int] | None = None

    def cell_box(
        self, layer_size: tuple[int, int], row: int, col: int, pool: int = 1
    ) -> tuple[float, float, float, float]:
        """Image-pixel box ``(y0, x0, y1, x1)`` of displayed cell (row, col) of a map over an
        ``(H, W)`` layer pooled by ``pool`` (cells of the layer per displayed cell, per side),
        clipped to the image: the cell's stride footprint through the resize and crop."""
        (ih, iw), (lh, lw) = self.input_size, layer_size
        sy, sx = ih / lh, iw / lw
        r1, c1 = min(lh, (row + 1) * pool), min(lw, (col + 1) * pool)
        y0, x0 = self._to_image(row * pool * sy, col * pool * sx)
        y1, x1 = self._to_image(r1 * sy, c1 * sx)
        return self._clip(y0, x0, y1, x1)

    def cell_at(
        self, layer_size: tuple[int, int], y: float, x: float, pool: int = 1
    ) -> tuple[int, int] | None:
        """The displayed cell under image point (y, x), or None outside the model's input."""
        (ih, iw), (lh, lw) = self.input_size, layer_size
        iy, ix = (y - self.offset[0]) / self.scale[0], (x - self.offset[1]) / self.scale[1]
        if iy < 0 or ix < 0 or iy >= ih or ix >= iw:
            return None
        return (math.floor(iy * lh / ih) // pool, math.floor(ix * lw / iw) // pool)

    def overlay_placement(self, layer_size: tuple[int, int], pool: int = 1) -> dict[str, float]:
        """Where a pooled map drawn over the image goes: first cell centre (x0, y0) and cell
        size (dx, dy) in image pixels."""
        dy = self.input_size[0] / layer_size[0] * pool * self.scale[0]
        dx = self.input_size[1] / layer_size[1] * pool * self.scale[1]
        return {"x0": self.offset[1] + dx / 2, "y0": self.offset[0] + dy / 2, "dx": dx, "dy": dy}

    def receptive_box(
        self, rf: ReceptiveField, layer_size: tuple[int, int], row: int, col: int, pool: int = 1
    ) -> tuple[float, float, float, float]:
        """Image-pixel box of the receptive field of displayed cell (row, col), clipped to the
        image; a pooled cell covers ``pool`` x ``pool`` units, so its field is their union."""
        last_r, last_c = (
            min(layer_size[0], (row + 1) * pool) - 1,
            min(layer_size[1], (col + 1) * pool) - 1,
        )
        y0, x0, _, _ = rf.box(row * pool, col * pool)
        _, _, y1, x1 = rf.box(last_r, last_c)
        return self._clip(*self.to_image_box((y0, x0, y1, x1)))

    def to_image_box(
        self, box: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        """An input-pixel box (y0, x0, y1, x1) in image pixels, unclipped."""
        y0, x0 = self._to_image(box[0], box[1])
        y1, x1 = self._to_image(box[2], box[3])
        return (y0, x0, y1, x1)

    def region_mask(
        self, box: tuple[float, float, float, float], output_size: tuple[int, int]
    ) -> torch.Tensor:
        """An image-pixel box (y0, x0, y1, x1) as a boolean mask over an (h, w) output that
        covers the model's input: every output pixel the box touches."""
        (ih, iw), (oh, ow) = self.input_size, output_size
        y0, x0, y1, x1 = box
        ty0, ty1 = (y0 - self.offset[0]) / self.scale[0], (y1 - self.offset[0]) / self.scale[0]
        tx0, tx1 = (x0 - self.offset[1]) / self.scale[1], (x1 - self.offset[1]) / self.scale[1]
        r0, r1 = max(0, math.floor(ty0 * oh / ih)), min(oh, math.ceil(ty1 * oh / ih))
        c0, c1 = max(0, math.floor(tx0 * ow / iw)), min(ow, math.ceil(tx1 * ow / iw))
        mask = torch.zeros(output_size, dtype=torch.bool)
        mask[r0:r1, c0:c1] = True
        return mask

    def _to_image(self, y: float, x: float) -> tuple[float, float]:
        return (self.offset[0] + y * self.scale[0], self.offset[1] + x * self.scale[1])

    def _clip(
        self, y0: float, x0: float, y1: float, x1: float
    ) -> tuple[float, float, float, float]:
        h, w = self.image_size
        return (max(0.0, y0), max(0.0, x0), min(float(h), y1), min(float(w), x1))

    def to_json(self) -> GeometryJson:
        source = self.source_size
        return {"image_size": list(self.image_size), "input_size": list(self.input_size),
                "scale": list(self.scale), "offset": list(self.offset),
                "source_size": None if source is None else list(source)}  # fmt: skip


def load_image(source: Any, *, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """An upright 8-bit RGB PIL image whose longer side is at most ``max_side``.
    ``image.info["layerscope_source_size"]`` keeps the size before the cap as (H, W)."""
    image = _to_pil(source)
    image = _to_rgb(image)
    source_size = (image.height, image.width)
    if max(image.size) > max_side:
        ratio = max_side / max(image.size)
        size = (max(1, round(image.width * ratio)), max(1, round(image.height * ratio)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    image.info["layerscope_source_size"] = source_size
    return image


def _to_pil(source: Any) -> Image.Image:
    if isinstance(source, Image.Image):
        return ImageOps.exif_transpose(source) or source
    if isinstance(source, str) and source in SAMPLE_IMAGES and not Path(source).exists():
        source = sample_image(source)  # a bundled sample by name
    if isinstance(source, (str, Path)):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ImageError(f"no image file at {str(path)!r}: check the path")
        try:
            with Image.open(path) as opened:
                opened.load()
                return ImageOps.exif_transpose(opened) or opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ImageError(
                f"{str(path)!r} is not an image PIL can read ({exc}); give a PNG or JPEG file "
                f"or {_ACCEPTED}"
            ) from exc
    if isinstance(source, (bytes, bytearray, memoryview)):  # an uploaded file's contents
        try:
            with Image.open(io.BytesIO(bytes(source))) as opened:
                opened.load()
                return ImageOps.exif_transpose(opened) or opened.copy()
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ImageError(f"these bytes are not an image PIL can read ({exc})") from exc
    if isinstance(source, torch.Tensor):
        return _array_to_pil(_tensor_to_hwc(source))
    if isinstance(source, np.ndarray):
        return _array_to_pil(source)
    raise ImageError(f"cannot use a {type(source).__name__} as an image; give {_ACCEPTED}")


def _tensor_to_hwc(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu()
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 3 and t.shape[0] in (1, 3, 4) and t.shape[-1] not in (3, 4):
        t = t.permute(1, 2, 0)  # torchvision's CHW convention
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def _array_to_pil(a: np.ndarray) -> Image.Image:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)) or 0 in a.shape:
        raise ImageError(f"an array of shape {a.shape} is not an image; give {_ACCEPTED}")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image array holds NaN or infinite values")
        if a.min() < 0 or a.max() > 1:
            raise ImageError(
                f"float image values must lie in [0, 1], got [{a.min():.3g}, {a.max():.3g}]: "
                "pass the unnormalised image (not the model input), or a uint8 array"
            )
        a = (a * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        if a.min() < 0 or a.max() > 255:
            raise ImageError(f"integer image values must lie in [0, 255], got dtype {a.dtype}")
        a = a.astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(image).astype(np.float32)
        top = 65535.0 if a.max() > 255 or image.mode.startswith("I;16") else 255.0
        image = Image.fromarray((a / top * 255).clip(0, 255).round().astype(np.uint8))
    elif image.mode == "F":
        a = np.asarray(image)
        if not np.isfinite(a).all():  # min/max would be NaN: the image would turn black
            raise ImageError("the image holds NaN or infinite pixel values (a float image)")
        span = float(a.max() - a.min()) or 1.0
        image = Image.fromarray(((a - a.min()) / span * 255).round().astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return image.convert("RGB")


def resize_size_for(image_size: tuple[int, int], resize: int | tuple[int, int]) -> tuple[int, int]:
    """(h, w) after torchvision's resize: an int sets the shorter side, keeping the aspect."""
    if isinstance(resize, tuple):
        return resize
    h, w = image_size
    if h <= w:
        return resize, max(1, math.floor(resize * w / h))
    return max(1, math.floor(resize * h / w)), resize
