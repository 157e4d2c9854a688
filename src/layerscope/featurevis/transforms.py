"""Random transforms applied to the image at every optimization step, so the result must
excite the unit wherever it is shifted, scaled or turned a little: what makes feature
visualizations look like objects rather than adversarial noise. All are differentiable torch
ops (no PIL in the loop); each records what it drew (``last``), for the tests.

``"standard"`` is Lucid's set: pad 12 (constant 0.5), jitter 8, scale by one of
1 + (i - 5) / 50 for i = 0..10, rotate by one of -10..10 degrees, jitter 4. The result is then
cut (or padded) about its centre back to the size asked for, at its own scale: a model with a
fixed input size gets it, and the unit sees the image's frequencies as they are (resizing back
would shrink the picture by about 0.84 and bias what the unit is shown)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Pad", "Jitter", "Scale", "Rotate", "Compose", "standard"]


class Pad:
    """Pads ``pixels`` on every side with the constant ``value``."""

    def __init__(self, pixels: int, value: float = 0.5) -> None:
        self.pixels, self.value = pixels, value
        self.last: Any = pixels

    def __call__(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        p = self.pixels
        return F.pad(x, (p, p, p, p), mode="constant", value=self.value)


class Jitter:
    """A random crop ``d`` pixels smaller in each dimension: the content moves by (dy, dx),
    each drawn from 0..d-1 (``last``); output pixel (i, j) is input pixel (i + dy, j + dx)."""

    def __init__(self, d: int) -> None:
        self.d = d
        self.last: Any = None

    def __call__(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        dy, dx = rng.randrange(self.d), rng.randrange(self.d)
        self.last = (dy, dx)
        h, w = x.shape[-2:]
        return x[..., dy : h - self.d + dy, dx : w - self.d + dx]


class Scale:
    """Resizes by a factor drawn from ``factors`` (bilinear; ``last``: the factor)."""

    def __init__(self, factors: Sequence[float]) -> None:
        self.factors = list(factors)
        self.last: Any = None

    def __call__(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        s = rng.choice(self.factors)
        self.last = s
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class Rotate:
    """Rotates about the centre by an angle in degrees drawn from ``angles`` (``last``),
    counter-clockwise as seen on the image (a point right of the centre moves up); what comes
    in from outside the image is the border's value."""

    def __init__(self, angles: Sequence[float]) -> None:
        self.angles = list(angles)
        self.last: Any = None

    def __call__(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        angle = rng.choice(self.angles)
        self.last = angle
        if angle == 0:
            return x
        a = math.radians(angle)
        h, w = x.shape[-2:]
        # grid_sample's grid maps each output pixel to where it reads in the input, in
        # coordinates normalised to [-1, 1]; the aspect ratio is undone so the turn is rigid.
        cos, sin = math.cos(a), math.sin(a)
        theta = torch.tensor(
            [[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device
        )
        grid = F.affine_grid(theta[None].expand(x.shape[0], 2, 3), list(x.shape), False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Compose:
    """The transforms in order, then cut or padded (0.5) about the centre to ``size``."""

    def __init__(self, transforms: Sequence[Any], size: tuple[int, int] | None = None) -> None:
        self.transforms, self.size = list(transforms), size

    def __call__(self, x: torch.Tensor, rng: random.Random) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, rng)
        if self.size is None:
            return x
        (h, w), (th, tw) = x.shape[-2:], self.size
        if h < th or w < tw:  # a strong downscale: pad to at least the size
            py, px = max(0, th - h), max(0, tw - w)
            x = F.pad(x, (px // 2, px - px // 2, py // 2, py - py // 2), value=0.5)
            h, w = x.shape[-2:]
        y0, x0 = (h - th) // 2, (w - tw) // 2
        return x[..., y0 : y0 + th, x0 : x0 + tw]


def standard(size: tuple[int, int] | None = None) -> Compose:
    """Lucid's standard transforms (see the module's docstring)."""
    return Compose(
        [
            Pad(12, 0.5),
            Jitter(8),
            Scale([1 + (i - 5) / 50 for i in range(11)]),
            Rotate(list(range(-10, 11))),
            Jitter(4),
        ],
        size,
    )
