"""Receptive fields computed analytically while the model runs (Araujo, Norris and Sim,
"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019).

Every 4-D tensor produced during a forward carries, per axis, the input-pixel span of its first
unit and the jump (effective stride) between units. Convolutions and poolings grow the span
(``r_out = r_in + (k - 1) * d * j_in``) and multiply the jump; element-wise ops, additions and
channel concatenations take the union of their inputs' spans (residual blocks, ASPP branches);
adaptive pooling and resizing are followed as well. The ops are seen as they execute (a
TorchFunctionMode), so multi-path graphs and functional calls inside ``forward`` are covered
without a hand-written table."""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .nested import first_tensor, iter_tensors

__all__ = ["ReceptiveField", "receptive_fields", "ReceptiveFieldTracer"]


@dataclass(frozen=True)
class Axis:
    lo: float  # first input pixel the unit 0 sees (negative: it reaches into the padding)
    hi: float  # last input pixel unit 0 sees
    jump: float  # input pixels between neighbouring units (the effective stride)

    def union(self, other: Axis) -> Axis:
        return Axis(min(self.lo, other.lo), max(self.hi, other.hi), max(self.jump, other.jump))


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field of a module's output units in input pixels, per axis (y, x):
    ``size`` (r), ``stride`` (effective stride S) and ``padding`` (effective padding P: unit
    ``i`` sees input pixels ``i * S - P`` to ``i * S - P + r - 1``)."""

    size: tuple[float, float]
    stride: tuple[float, float]
    padding: tuple[float, float]

    def box(self, row: int, col: int) -> tuple[float, float, float, float]:
        """Input-pixel box ``(y0, x0, y1, x1)`` (end exclusive) of unit (row, col), unclipped."""
        y0 = row * self.stride[0] - self.padding[0]
        x0 = col * self.stride[1] - self.padding[1]
        return (y0, x0, y0 + self.size[0], x0 + self.size[1])

    def to_json(self) -> dict[str, list[float]]:
        return {"size": list(self.size), "stride": list(self.stride), "padding": list(self.padding)}

    @classmethod
    def _from_axes(cls, ay: Axis, ax: Axis) -> ReceptiveField:
        return cls(
            size=(ay.hi - ay.lo + 1, ax.hi - ax.lo + 1),
            stride=(ay.jump, ax.jump),
            padding=(-ay.lo, -ax.lo),
        )


Field = tuple[Axis, Axis]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


def _window(f: Field, kernel: Any, stride: Any, padding: Any, dilation: Any = 1) -> Field:
    k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    return tuple(  # type: ignore[return-value]
        Axis(a.lo - p[i] * a.jump, a.hi + (-p[i] + (k[i] - 1) * d[i]) * a.jump, a.jump * s[i])
        for i, a in enumerate(f)
    )


def _adaptive(f: Field, n_in: tuple[int, int], n_out: tuple[int, int]) -> Field:
    out = []
    for a, ni, no in zip(f, n_in, n_out):
        span = math.ceil(ni / no)  # unit 0 pools input units [0, ceil(n_in / n_out))
        out.append(Axis(a.lo, a.hi + (span - 1) * a.jump, a.jump * ni / no))
    return tuple(out)  # type: ignore[return-value]


def _resize(f: Field, n_in: tuple[int, int], n_out: tuple[int, int], align: bool) -> Field:
    out = []
    for a, ni, no in zip(f, n_in, n_out):
        ratio = (ni - 1) / max(no - 1, 1) if align else ni / no
        c = 0.0 if align else max(0.0, 0.5 * ratio - 0.5)  # source coordinate of unit 0
        first = math.floor(c)
        last = min(ni - 1, math.ceil(c)) if ni > 1 else 0
        out.append(Axis(a.lo + first * a.jump, a.hi + last * a.jump, a.jump * ratio))
    return tuple(out)  # type: ignore[return-value]


class _Tracker(TorchFunctionMode):
    """Follows receptive fields through every torch function on 4-D tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[int, Field] = {}
        self._refs: dict[int, weakref.ref[torch.Tensor]] = {}

    def set(self, t: torch.Tensor, field: Field) -> None:
        key = id(t)
        if key not in self._refs or self._refs[key]() is not t:
            self._refs[key] = weakref.ref(t, lambda _r, key=key: self._forget(key))
        self.fields[key] = field

    def get(self, t: Any) -> Field | None:
        if not isinstance(t, torch.Tensor):
            return None
        ref = self._refs.get(id(t))
        return self.fields.get(id(t)) if ref is not None and ref() is t else None

    def _forget(self, key: int) -> None:
        self.fields.pop(key, None)
        self._refs.pop(key, None)

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        try:
            field = self._rule(func, args, kwargs, out)
        except Exception:  # an op this tracker does not understand: no field, no failure
            field = None
        if field is not None:
            for t in iter_tensors(out):
                if t.dim() == 4:
                    self.set(t, field)
        return out

    def _rule(
        self, func: Callable[..., Any], args: Any, kwargs: dict[str, Any], out: Any
    ) -> Field | None:
        x = args[0] if args else kwargs.get("input")
        fx = self.get(x)
        o = first_tensor(out)
        if o is None or o.dim() != 4:
            return None
        name = getattr(func, "__name__", "")
        arg = _Args(args, kwargs)
        if fx is not None and name in ("conv2d",):
            w = arg(1, "weight")
            padding = arg(4, "padding", 0)
            if isinstance(padding, str):  # 'same' / 'valid'
                k = w.shape[-2:]
                dil = _pair(arg(5, "dilation", 1))
                padding = (
                    (0, 0)
                    if padding == "valid"
                    else tuple((k[i] - 1) * dil[i] // 2 for i in (0, 1))
                )
            return _window(fx, w.shape[-2:], arg(3, "stride", 1), padding, arg(5, "dilation", 1))
        if fx is not None and name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices",
                                       "avg_pool2d"):  # fmt: skip
            k = arg(1, "kernel_size")
            stride = arg(2, "stride", None) or k
            dil = arg(4, "dilation", 1) if "max" in name else 1
            return _window(fx, k, stride, arg(3, "padding", 0), dil)
        if fx is not None and name.startswith("adaptive_") and name.endswith("pool2d"):
            return _adaptive(fx, tuple(x.shape[-2:]), tuple(o.shape[-2:]))
        if fx is not None and name in ("interpolate", "upsample", "upsample_bilinear2d"):
            align = bool(arg(4, "align_corners", False))
            return _resize(fx, tuple(x.shape[-2:]), tuple(o.shape[-2:]), align)
        # Element-wise, normalisation, addition, concatenation: the union of the inputs that
        # share the output's spatial size.
        sources = [self.get(t) for t in _tensor_args(args, kwargs)]
        fields = [f for f, t in zip(sources, _tensor_args(args, kwargs))
                  if f is not None and tuple(t.shape[-2:]) == tuple(o.shape[-2:])]  # fmt: skip
        if not fields:
            return None
        ay, ax = fields[0]
        for fy, fxx in fields[1:]:
            ay, ax = ay.union(fy), ax.union(fxx)
        return (ay, ax)


class _Args:
    def __init__(self, args: Any, kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    def __call__(self, index: int, name: str, default: Any = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)


def _tensor_args(args: Any, kwargs: dict[str, Any]) -> list[torch.Tensor]:
    return [t for t in iter_tensors((list(args), kwargs)) if t.dim() == 4]


class ReceptiveFieldTracer:
    """Context manager: while a forward runs inside it, every module's output receptive field
    is recorded in ``fields`` (module name -> ReceptiveField; first call of each module)."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor) -> None:
        self.model = model
        self.inputs = inputs
        self.fields: dict[str, ReceptiveField] = {}
        self._tracker = _Tracker()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> ReceptiveFieldTracer:
        zero = (Axis(0, 0, 1), Axis(0, 0, 1))
        self._tracker.set(self.inputs, zero)

        def hook(name: str) -> Callable[..., None]:
            def record(_m: nn.Module, _a: Any, out: Any) -> None:
                t = first_tensor(out)
                field = self._tracker.get(t)
                if field is not None and name not in self.fields:
                    self.fields[name] = ReceptiveField._from_axes(*field)

            return record

        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(hook(name)))
        self._tracker.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tracker.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles.clear()


def receptive_fields(model: nn.Module, inputs: torch.Tensor) -> dict[str, ReceptiveField]:
    """Receptive field of every module whose output is a 4-D map, from one forward pass on
    ``inputs`` (a (N, C, H, W) batch) in eval mode without gradients. The model is left as it
    was found."""
    from .safety import model_kept_as_found

    with model_kept_as_found(model, train=False), ReceptiveFieldTracer(model, inputs) as tracer:
        model(inputs)
    return tracer.fields
