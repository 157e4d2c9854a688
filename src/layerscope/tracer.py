"""Follows the image's pixel grid through a forward, op by op (a TorchFunctionMode): for every
tensor computed from the image, which dimensions hold its rows and columns (or one dimension of
tokens on a rows x cols grid, with leading tokens off the grid such as a class token), and the
receptive field of its units where the ops are local.

So a channels-last output (Swin's ``features.*``, ConvNeXt's ``block.2``-``block.5``) is known to
be (N, H, W, C) from the permute that made it, not guessed from its shape, and a transformer's
token sequence is known to lie on the grid its patch embedding came from.

Receptive fields follow Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional
Neural Networks" (Distill 2019): see :mod:`layerscope.receptive` for the arithmetic. They are
kept only through ops known to be local (convolutions, poolings, resizing, element-wise ops,
normalisation over channels, linear maps over channels); an op that may mix positions
(attention, a roll, a reshape the tracer cannot follow) keeps the grid but leaves the field
unknown, rather than guess one too small."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .hooks import hooked
from .nested import first_tensor, iter_tensors
from .receptive import Axis, Field, ReceptiveField, adaptive, resize, window
from .spatial import Layout
from .tensormap import TensorMap

__all__ = ["Grid", "ForwardTracer", "ReceptiveFieldTracer"]

# Ops whose every output unit depends on the same position of its inputs.
_LOCAL = {
    "relu", "relu_", "relu6", "gelu", "silu", "silu_", "hardswish", "hardswish_", "hardsigmoid",
    "hardtanh", "hardtanh_", "sigmoid", "tanh", "leaky_relu", "elu", "add", "add_", "__add__",
    "__radd__", "__iadd__", "mul", "mul_", "__mul__", "__rmul__", "__imul__", "sub", "sub_",
    "__sub__", "__rsub__", "div", "div_", "__truediv__", "batch_norm", "dropout", "dropout2d",
    "clone", "contiguous", "to", "float", "half", "bfloat16", "type", "detach", "neg", "abs",
    "clamp", "clamp_", "exp", "log", "sqrt", "pow", "__pow__", "square", "where", "maximum",
    "minimum",
}  # fmt: skip


@dataclass(frozen=True)
class Grid:
    """Where the image's grid lies in a tensor: ``rows`` and ``cols`` dimensions, or one
    ``rows`` dimension of tokens (``cols`` None) laid out row-major on ``size`` with ``skip``
    leading tokens off the grid. ``field``: (y, x) receptive field axes, None when unknown."""

    rows: int
    cols: int | None
    size: tuple[int, int]
    skip: int = 0
    field: Field | None = None

    def dims(self) -> tuple[int, ...]:
        return (self.rows,) if self.cols is None else (self.rows, self.cols)

    def fits(self, t: torch.Tensor) -> bool:
        if self.cols is None:
            return t.dim() > self.rows and t.shape[self.rows] >= self.skip + math.prod(self.size)
        return t.dim() > max(self.rows, self.cols) and (
            tuple(t.shape[d] for d in (self.rows, self.cols)) == self.size
        )

    def layout(self, t: torch.Tensor) -> Layout | None:
        """The module-output view: which dimension is the channels (the one left over)."""
        rest = [d for d in range(1, t.dim()) if d not in self.dims()]
        if len(rest) != 1 or not self.fits(t):
            return None
        return Layout(rest[0], self.rows, self.cols, self.size, self.skip, "traced")


def _boundaries(shape: tuple[int, ...]) -> list[int]:
    out = [1]
    for s in shape:
        out.append(out[-1] * s)
    return out


def _reshaped(g: Grid, before: tuple[int, ...], after: tuple[int, ...]) -> Grid | None:
    """The grid after a reshape (row-major), when its dimensions survive it whole, merged into
    one token dimension, or split back out of one."""
    pb, pa = _boundaries(before), _boundaries(after)

    def maps(a: int, b: int) -> int | None:  # input dims [a, b) -> one output dim
        for k in range(len(after)):
            if pa[k] == pb[a] and pa[k + 1] == pb[b]:
                return k
        return None

    if g.cols is not None:
        if g.cols == g.rows + 1 and (k := maps(g.rows, g.rows + 2)) is not None:
            if after[k] == math.prod(g.size):
                return replace(g, rows=k, cols=None, skip=0)
        r, c = maps(g.rows, g.rows + 1), maps(g.cols, g.cols + 1)
        return replace(g, rows=r, cols=c) if r is not None and c is not None else None
    if g.skip:
        return None
    if (k := maps(g.rows, g.rows + 1)) is not None:
        return replace(g, rows=k)
    for k in range(len(after) - 1):  # tokens split back into rows and columns
        if pa[k] == pb[g.rows] and pa[k + 2] == pb[g.rows + 1] and after[k : k + 2] == g.size:
            return replace(g, rows=k, cols=k + 1)
    return None


class _Tracker(TorchFunctionMode):
    """Remembers a Grid per tensor computed from the image, and which tensors came from the
    image along a path it could not follow (``lost``)."""

    def __init__(self) -> None:
        super().__init__()
        self.grids: TensorMap[Grid] = TensorMap()
        self.lost: TensorMap[bool] = TensorMap()

    def set(self, t: torch.Tensor, grid: Grid) -> None:
        self.lost.discard(t)
        self.grids.set(t, grid)

    def get(self, t: Any) -> Grid | None:
        return self.grids.get(t)

    def _lose(self, t: torch.Tensor) -> None:
        self.grids.discard(t)
        self.lost.set(t, True)

    def _is_lost(self, t: torch.Tensor) -> bool:
        return self.lost.get(t) is not None

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = [t for t in iter_tensors((list(args), kwargs)) if isinstance(t, torch.Tensor)]
        traced = [(t, g) for t in inputs if (g := self.get(t)) is not None]
        lost = any(self._is_lost(t) for t in inputs)
        if not traced and not lost:
            return out
        name = getattr(func, "__name__", "")
        for o in iter_tensors(out):
            try:
                grid = self._rule(name, args, kwargs, o, traced, lost)
            except Exception:  # an op this tracker does not understand: lost, not a failure
                grid = None
            if grid is not None and grid.fits(o):
                self.set(o, grid)
            elif not any(o is t for t, _ in traced):
                self._lose(o)
        return out

    def _rule(self, name: str, args: Any, kwargs: dict[str, Any], o: torch.Tensor,
              traced: list[tuple[torch.Tensor, Grid]], lost: bool) -> Grid | None:  # fmt: skip
        x: Any = args[0] if args else kwargs.get("input")  # a tensor whenever it has a grid
        gx = self.get(x)
        arg = _Args(args, kwargs)
        nchw = gx if gx is not None and (gx.rows, gx.cols) == (2, 3) and o.dim() == 4 else None
        size = (o.shape[-2], o.shape[-1]) if o.dim() >= 2 else (0, 0)  # read when nchw only
        if name in ("conv2d", "max_pool2d", "max_pool2d_with_indices", "avg_pool2d") and nchw:
            f = _window_of(name, arg, x, nchw.field)
            return Grid(2, 3, size, field=f)
        if nchw and name.startswith("adaptive_") and name.endswith("pool2d"):
            f = adaptive(nchw.field, (x.shape[-2], x.shape[-1]), size) if nchw.field else None
            return Grid(2, 3, size, field=f)
        if nchw and name in ("interpolate", "upsample", "upsample_bilinear2d"):
            align = bool(arg(4, "align_corners", False))
            f = resize(nchw.field, (x.shape[-2], x.shape[-1]), size, align) if nchw.field else None
            return Grid(2, 3, size, field=f)
        if gx is not None and name in ("permute", "transpose", "swapaxes", "movedim"):
            order = _order(name, args, kwargs, x.dim())
            at = {old: new for new, old in enumerate(order)}
            cols = None if gx.cols is None else at[gx.cols]
            return replace(gx, rows=at[gx.rows], cols=cols)
        if gx is not None and name in ("reshape", "view", "flatten", "unflatten"):
            return _reshaped(gx, tuple(x.shape), tuple(o.shape))
        if gx is not None and name == "__getitem__":
            return _indexed(gx, x, args[1], o)
        if gx is not None and name == "pad":
            return _padded(gx, x, arg(1, "pad"), o)
        if name == "cat":
            return _concatenated(self, args, kwargs, o)
        if gx is not None and name == "roll":
            return replace(gx, field=None)  # positions wrap around: the grid stays, fields go
        return _pointwise(name, args, kwargs, o, traced, lost)


def _window_of(name: str, arg: _Args, x: torch.Tensor, f: Field | None) -> Field | None:
    if f is None:
        return None
    if name == "conv2d":
        w = arg(1, "weight")
        padding, dilation = arg(4, "padding", 0), arg(5, "dilation", 1)
        if isinstance(padding, str):  # 'same' / 'valid'
            k, d = w.shape[-2:], (dilation, dilation) if isinstance(dilation, int) else dilation
            padding = (
                (0, 0) if padding == "valid" else tuple((k[i] - 1) * d[i] // 2 for i in (0, 1))
            )
        return window(f, w.shape[-2:], arg(3, "stride", 1), padding, dilation)
    k = arg(1, "kernel_size")
    stride = arg(2, "stride", None) or k
    dilation = arg(4, "dilation", 1) if "max" in name else 1
    return window(f, k, stride, arg(3, "padding", 0), dilation)


def _order(name: str, args: Any, kwargs: dict[str, Any], ndim: int) -> list[int]:
    if name == "permute":
        dims = args[1:] if len(args) > 2 else (args[1] if len(args) > 1 else kwargs["dims"])
        return [d % ndim for d in dims]
    if name == "movedim":
        src, dst = (
            (args[1], args[2]) if len(args) > 2 else (kwargs["source"], kwargs["destination"])
        )
        src, dst = [s % ndim for s in _seq(src)], [d % ndim for d in _seq(dst)]
        rest = iter(d for d in range(ndim) if d not in src)
        moved = dict(zip(dst, src))
        return [moved[i] if i in moved else next(rest) for i in range(ndim)]
    a, b = (args[1], args[2]) if len(args) > 2 else (kwargs["dim0"], kwargs["dim1"])
    order = list(range(ndim))
    order[a % ndim], order[b % ndim] = order[b % ndim], order[a % ndim]
    return order


def _seq(v: Any) -> list[int]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _indexed(g: Grid, x: torch.Tensor, index: Any, o: torch.Tensor) -> Grid | None:
    """Slices keep the grid (a step or a start moves the field); an integer index drops a
    dimension before it, or loses the grid when it picks one row, column or token."""
    items = list(index) if isinstance(index, tuple) else [index]
    if any(i is None or isinstance(i, torch.Tensor) for i in items) or items.count(...) > 1:
        return None
    if ... in items:
        at = items.index(...)
        items = items[:at] + [slice(None)] * (x.dim() - len(items) + 1) + items[at + 1 :]
    items += [slice(None)] * (x.dim() - len(items))
    shift = {}
    dropped = 0
    for d, item in enumerate(items):
        shift[d] = d - dropped
        if isinstance(item, int):
            if d in g.dims():
                return None
            dropped += 1
    f, skip = g.field, g.skip
    for axis, d in enumerate(g.dims()):
        s = items[d]
        start, _, step = s.indices(x.shape[d])
        if g.cols is None:
            if step != 1 or start > skip:
                return None
            skip -= start
        elif f is not None and (start or step != 1):
            a = f[axis]
            moved = Axis(a.lo + start * a.jump, a.hi + start * a.jump, a.jump * step)
            f = (moved, f[1]) if axis == 0 else (f[0], moved)
    cols = None if g.cols is None else shift[g.cols]
    size = g.size if cols is None else (o.shape[shift[g.rows]], o.shape[cols])
    return Grid(shift[g.rows], cols, size, skip, f)


def _padded(g: Grid, x: torch.Tensor, pad: Any, o: torch.Tensor) -> Grid | None:
    pad = list(pad)
    f = g.field
    if g.cols is None:
        return g if all(p == 0 for p in pad) else None
    for axis, d in enumerate(g.dims()):
        at = 2 * (x.dim() - 1 - d)
        before = pad[at] if at < len(pad) else 0
        if f is not None and before:
            a = f[axis]
            moved = Axis(a.lo - before * a.jump, a.hi - before * a.jump, a.jump)
            f = (moved, f[1]) if axis == 0 else (f[0], moved)
    return replace(g, size=(o.shape[g.rows], o.shape[g.cols]), field=f)


def _concatenated(tr: _Tracker, args: Any, kwargs: dict[str, Any], o: torch.Tensor) -> Grid | None:
    parts = list(args[0] if args else kwargs["tensors"])
    dim = (args[1] if len(args) > 1 else kwargs.get("dim", 0)) % o.dim()
    grids = [tr.get(p) for p in parts]
    known = [g for g in grids if g is not None]
    if not known or any(g.dims() != known[0].dims() for g in known):
        return None
    g = known[0]
    if dim not in g.dims():  # channels side by side (ASPP's branches): the union of fields
        same = [h for h, p in zip(grids, parts) if h is not None and h.fits(p)]
        field = _union([h.field for h in same]) if len(same) == len(parts) else None
        return replace(g, field=field)
    if g.cols is None and len(known) == 1:  # a class token put before the patch tokens
        at = next(i for i, h in enumerate(grids) if h is not None)
        return replace(g, skip=g.skip + sum(p.shape[dim] for p in parts[:at]))
    return None


def _pointwise(name: str, args: Any, kwargs: dict[str, Any], o: torch.Tensor,
               traced: list[tuple[torch.Tensor, Grid]], lost: bool) -> Grid | None:  # fmt: skip
    """Ops that keep the grid where it was: the first traced input whose grid dimensions the
    output still has. The field survives only through ops known to be local."""
    same = [(t, g) for t, g in traced if t.dim() == o.dim() and g.fits(o)]
    if not same:
        return None
    g = same[0][1]
    if name in ("layer_norm", "linear"):  # local when over the channels, last (channels-last)
        local = o.dim() - 1 not in g.dims()
    else:
        local = name in _LOCAL
    field = _union([h.field for _, h in same]) if local and not lost else None
    return replace(g, field=field)


def _union(fields: list[Field | None]) -> Field | None:
    known = [f for f in fields if f is not None]
    if not fields or len(known) < len(fields):
        return None
    ay, ax = known[0]
    for fy, fx in known[1:]:
        ay, ax = ay.union(fy), ax.union(fx)
    return (ay, ax)


class _Args:
    def __init__(self, args: Any, kwargs: dict[str, Any]) -> None:
        self.args, self.kwargs = args, kwargs

    def __call__(self, index: int, name: str, default: Any = None) -> Any:
        if len(self.args) > index:
            return self.args[index]
        return self.kwargs.get(name, default)


class ForwardTracer:
    """Context manager: while a forward runs inside it, every module's first output gets its
    receptive field (``fields``: name -> ReceptiveField, where known) and its ``layouts``
    (name -> Layout: which dimensions are channels, rows and columns or tokens). Its hooks
    (:func:`~layerscope.hooks.hooked`) go on the way out, with the modes put back as found."""

    def __init__(self, model: nn.Module, inputs: torch.Tensor) -> None:
        self.model = model
        self.inputs = inputs
        self.fields: dict[str, ReceptiveField] = {}
        self.layouts: dict[str, Layout] = {}
        self._tracker = _Tracker()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ForwardTracer:
        if self.inputs.dim() == 4:
            start = (Axis(0, 0, 1), Axis(0, 0, 1))
            size = (self.inputs.shape[-2], self.inputs.shape[-1])
            self._tracker.set(self.inputs, Grid(2, 3, size, 0, start))
        seen: set[str] = set()

        def hook(name: str) -> Callable[..., None]:
            def record(_m: nn.Module, _a: Any, out: Any) -> None:
                if name in seen:
                    return
                seen.add(name)
                t = first_tensor(out)
                grid = self._tracker.get(t)
                if grid is None or t is None:
                    return
                layout = grid.layout(t)
                if layout is not None:
                    self.layouts[name] = layout
                if grid.field is not None:
                    self.fields[name] = ReceptiveField.from_axes(*grid.field)

            return record

        hooks = {name: hook(name) for name, _ in self.model.named_modules()}
        with contextlib.ExitStack() as stack:  # a failed enter takes back what it installed
            stack.enter_context(hooked(self.model, hooks, train=None, grad=None))
            stack.enter_context(self._tracker)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)  # the tracker first, then the hooks (modes as found)


ReceptiveFieldTracer = ForwardTracer  # the name before layouts were traced too
