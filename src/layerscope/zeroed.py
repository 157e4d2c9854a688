"""Convolutions of "the same map, one channel zeroed per row", at the cost of one convolution.

Channel importance measures each top channel's exact drop by running the model's suffix on a
batch whose row i is the module's output with channel c_i zeroed. The first convolutions after
the module (DeepLabV3's ASPP: four convolutions of 2048 channels, most of the head's work) are
linear in that input, so for a convolution W (groups 1, zero padding):

    conv(x with channel c zeroed) = conv(x) - conv(x_c, W[:, c])

one full convolution of the unedited map for the whole batch, and per row a convolution of one
input channel (1/C of the work). :class:`ZeroedConvs` answers ``conv2d`` calls whose input is
exactly that batch (the very tensor, not written to since) this way; every other call runs as
it is. Equal to the direct convolution up to float rounding (the sums run in another order)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

__all__ = ["ZeroedConvs"]


class ZeroedConvs(TorchFunctionMode):
    """Inside, once :meth:`arm` named them, ``conv2d(edited, ...)`` with ``edited`` the batch
    whose row i is ``base`` (one row) with channel ``channels[i]`` zeroed is computed from
    ``base``. ``calls`` counts the convolutions answered so. ``full``: the convolutions of
    ``base`` already made, shared between instances armed with the same ``base``."""

    def __init__(self, channels: list[int], full: dict[Any, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.channels = channels
        # conv(base) per convolution, shared by the chunks of one measurement (same base)
        self.full = full if full is not None else {}
        self.edited: torch.Tensor | None = None
        self.base = torch.empty(0)
        self.version = 0
        self.calls = 0

    def arm(self, edited: torch.Tensor, base: torch.Tensor) -> None:
        self.edited, self.base = edited, base
        self.version = edited._version  # an in-place write since: the shortcut no longer holds

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        edited = self.edited
        if edited is not None and args and args[0] is edited and _is_conv2d(func):
            out = self._conv(*args, **kwargs)
            if out is not None:
                self.calls += 1
                return out
        return func(*args, **kwargs)

    def _conv(
        self,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
    ) -> torch.Tensor | None:
        if groups != 1 or isinstance(padding, str) or x._version != self.version:
            return None  # not the plain case worked out above: run it as it is
        conv = torch.nn.functional.conv2d
        with torch._C.DisableTorchFunction():  # our own convolutions are not the model's
            key = (id(weight), weight._version, None if bias is None else (id(bias), bias._version),
                   str(stride), str(padding), str(dilation))  # fmt: skip
            full = self.full.get(key)
            if full is None:
                full = self.full[key] = conv(self.base, weight, bias, stride, padding, dilation)
            rows, out_channels = len(self.channels), weight.shape[0]
            picked = self.base[:, self.channels]  # (1, B, H, W): row i's zeroed channel
            # Group i reads channel c_i with W[:, c_i]: (B * O, 1, kh, kw), groups B.
            w = weight[:, self.channels].transpose(0, 1).reshape(rows * out_channels, 1,
                                                                  *weight.shape[2:])  # fmt: skip
            part = conv(picked, w, None, stride, padding, dilation, rows)
            part = part.reshape(rows, out_channels, *part.shape[2:])
            return full.expand(rows, *full.shape[1:]) - part


def _is_conv2d(func: Callable[..., Any]) -> bool:
    return getattr(func, "__name__", "") == "conv2d"
