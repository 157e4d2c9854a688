"""How an image is made from what is optimized (Olah, Mordvintsev, Schubert, "Feature
Visualization", Distill 2017; Fel et al., "Unlocking Feature Visualization for Deeper Networks
with MAgnitude Constrained Optimization", NeurIPS 2023).

- ``pixel``: the pixels themselves (before a sigmoid).
- ``fft``: the image's spectrum (real FFT), scaled by 1/f so that every frequency starts with
  the energy a natural image has at it: low frequencies are cheap, high ones dear, which keeps
  deep units from answering with high-frequency noise.
- ``maco``: only the spectrum's phase; its magnitude is fixed to an average natural-image
  spectrum, derived here from LayerScope's two bundled photos (their mean FFT magnitude at the
  requested size, per colour channel), so the result keeps a photo's energy per frequency.

``decorrelate``: the three channels optimized are decorrelated colours, mixed into RGB with the
square root of ImageNet's colour covariance (the matrix Lucid publishes), so one parameter moves
luminance and the others colour. A sigmoid then maps to [0, 1]."""

from __future__ import annotations

import math

import numpy as np
import torch

__all__ = ["ImageParam", "COLOR_SQRT", "fft_scale", "natural_magnitude"]

# Square root of ImageNet's RGB colour covariance (columns: decorrelated directions), and its
# largest column norm, as Lucid publishes them.
COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = COLOR_SQRT / COLOR_SQRT.norm(dim=0).max()


def fft_scale(h: int, w: int, decay: float = 1.0) -> torch.Tensor:
    """(h, w // 2 + 1) factors 1 / max(|f|, 1/max(h, w)) ** decay, times sqrt(h * w): the 1/f
    energy of natural images (f in cycles per pixel)."""
    fy = torch.fft.fftfreq(h)[:, None]
    fx = torch.fft.rfftfreq(w)[None, :]
    f = torch.sqrt(fx * fx + fy * fy).clamp(min=1.0 / max(h, w))
    return f.pow(-decay) * math.sqrt(h * w) / max(h, w)


def natural_magnitude(h: int, w: int) -> torch.Tensor:
    """(3, h, w // 2 + 1): the mean FFT magnitude of the bundled photos, resized to (h, w),
    per channel, each image standardized first (so the magnitude is of its structure, not of
    its brightness)."""
    from PIL import Image

    from ..images import SAMPLE_IMAGES, sample_image

    mags = []
    for name in SAMPLE_IMAGES:
        img = Image.open(sample_image(name)).convert("RGB")
        img = img.resize((w, h), Image.Resampling.BILINEAR)
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        t = (t - t.mean()) / t.std()
        mags.append(torch.fft.rfft2(t, norm="ortho").abs())
    return torch.stack(mags).mean(0)


class ImageParam(torch.nn.Module):
    """``n`` images of ``h`` x ``w`` made from parameters; calling it gives (n, 3, h, w) in
    [0, 1]. ``generator`` seeds the start."""

    scale: torch.Tensor  # buffers (register_buffer), declared for the type checker
    magnitude: torch.Tensor

    def __init__(
        self,
        n: int,
        h: int,
        w: int,
        kind: str = "fft",
        *,
        decorrelate: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.kind, self.h, self.w, self.decorrelate = kind, h, w, decorrelate
        if kind == "pixel":
            start = torch.randn(n, 3, h, w, generator=generator) * 0.01
        elif kind == "fft":
            start = torch.randn(n, 3, h, w // 2 + 1, 2, generator=generator) * 0.01
            self.register_buffer("scale", fft_scale(h, w))
        elif kind == "maco":
            start = (torch.rand(n, 3, h, w // 2 + 1, generator=generator) * 2 - 1) * math.pi
            self.register_buffer("magnitude", natural_magnitude(h, w))
        else:
            raise ValueError(kind)
        self.param = torch.nn.Parameter(start)

    def raw(self) -> torch.Tensor:
        """The image before colour mixing and the sigmoid (n, 3, h, w)."""
        if self.kind == "pixel":
            return self.param
        if self.kind == "fft":
            spectrum = torch.view_as_complex(self.param) * self.scale
            return torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho") / 4
        spectrum = self.magnitude * torch.exp(1j * self.param)
        x = torch.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        return (x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-8) / 4

    def forward(self) -> torch.Tensor:
        x = self.raw()
        if self.decorrelate:
            x = torch.einsum("ij,njhw->nihw", _COLOR.to(x.device, x.dtype), x)
        return torch.sigmoid(x)

    @staticmethod
    def fft_param_of(raw: torch.Tensor) -> torch.Tensor:
        """The ``fft`` parameter whose :meth:`raw` image is ``raw`` (n, 3, h, w): the inverse
        of the parameterization (each real image has one half-spectrum)."""
        h, w = raw.shape[-2:]
        spectrum = torch.fft.rfft2(raw * 4, norm="ortho") / fft_scale(h, w).to(raw.device)
        return torch.view_as_real(spectrum).contiguous()
