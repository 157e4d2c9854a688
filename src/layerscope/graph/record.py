"""Records how data flows through one forward: every module call (hooks on every module) and
every torch function applied to tensors derived from the input (a TorchFunctionMode), with which
earlier event produced each tensor it read.

Only tensors computed from the input make edges: parameters, buffers and constants are nobody's
output. Functions run inside a module without children (a Conv2d's conv2d) belong to that
module; functions a container runs itself (a Bottleneck's ``out += identity``) are events of
their own when tensors meet there (two or more inputs from the image), or when they concatenate
or resize; others (a reshape, a ``+ bias``) pass their input's producer through."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..hooks import hooked
from ..nested import iter_tensors
from ..tensormap import TensorMap

__all__ = ["Event", "Recording", "FlowRecorder", "record"]

# Functions drawn as nodes even with one input from the image: they reshape the data's grid
# or join it with something.
NOTABLE = {"cat", "concat", "stack", "interpolate", "upsample", "upsample_bilinear2d",
           "upsample_nearest2d", "grid_sample", "pixel_shuffle"}  # fmt: skip
_NAMES = {"__add__": "add", "__iadd__": "add", "__radd__": "add", "add_": "add",
          "__mul__": "mul", "__imul__": "mul", "__rmul__": "mul", "mul_": "mul",
          "__matmul__": "matmul", "__sub__": "sub", "__truediv__": "div",
          "concat": "cat"}  # fmt: skip


@dataclass
class Event:
    """One step of the forward: ``kind`` "input", "module" (a module call; ``call``: which
    call of that module, from 0), "function" or "output". ``scope``: the module calls it ran
    inside, outermost first (event ids; the model's own call first). ``inputs``: (producer
    event, shape) for each tensor from the image it read. ``shape``: its first output's."""

    id: int
    kind: str
    name: str
    scope: tuple[int, ...] = ()
    call: int = 0
    inputs: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    shape: tuple[int, ...] | None = None
    leaf: bool = True  # a module without children (containers are scopes, not producers)


@dataclass
class Recording:
    """The events of one forward, in the order they ran, and each module's number of calls."""

    events: list[Event]
    calls: dict[str, int]


class _Functions(TorchFunctionMode):
    def __init__(self, rec: FlowRecorder) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:  # fmt: skip
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.rec
        if rec.inside_leaf or not rec.stack:
            return out
        read = [(p, tuple(t.shape)) for t in iter_tensors((list(args), kwargs))
                if (p := rec.producers.get(t)) is not None]  # fmt: skip
        outs = [o for o in iter_tensors(out) if isinstance(o, torch.Tensor)]
        if not read or not outs:
            return out
        name = getattr(func, "__name__", "") or "op"
        name = _NAMES.get(name, name.rstrip("_") if name.endswith("_") and
                          not name.startswith("__") else name)  # fmt: skip
        distinct = {p for p, _ in read}
        if len(distinct) < 2 and name not in NOTABLE:
            for o in outs:  # passes its input's producer through (a reshape, a + bias)
                rec.producers.set(o, read[0][0])
            return out
        event = rec.add("function", name, inputs=read, shape=tuple(outs[0].shape))
        for o in outs:
            rec.producers.set(o, event.id)
        return out


class FlowRecorder:
    """Context manager: while a forward of ``model`` on ``inputs`` runs inside it, records its
    :class:`Recording` (``.recording``). Hooks go on the way out, the modes as found."""

    def __init__(self, model: nn.Module, inputs: Any) -> None:
        self.model = model
        self.inputs = inputs
        self.events: list[Event] = []
        self.calls: dict[str, int] = {}
        self.stack: list[Event] = []  # module calls running now, outermost first
        self.inside_leaf = 0
        self.producers: TensorMap[int] = TensorMap()  # which event produced each tensor
        self._exit = contextlib.ExitStack()
        self.recording: Recording | None = None
        self.output: list[tuple[int, tuple[int, ...]]] | None = None

    def _read(self, obj: Any) -> list[tuple[int, tuple[int, ...]]]:
        """(producer, shape) of every tensor from the input in ``obj``."""
        return [(p, tuple(t.shape)) for t in iter_tensors(obj)
                if (p := self.producers.get(t)) is not None]  # fmt: skip

    def add(self, kind: str, name: str, **kw: Any) -> Event:
        event = Event(len(self.events), kind, name, tuple(e.id for e in self.stack), **kw)
        self.events.append(event)
        return event

    def __enter__(self) -> FlowRecorder:
        source = self.add("input", "input")
        for t in iter_tensors(self.inputs):
            self.producers.set(t, source.id)
            source.shape = source.shape or tuple(t.shape)
        named = dict(self.model.named_modules())
        leaves = {n for n, m in named.items() if not any(True for _ in m.children())}

        def pre(name: str) -> Callable[..., None]:
            def enter(_m: nn.Module, args: Any, kwargs: Any = None) -> None:
                read = [(p, tuple(t.shape)) for t in iter_tensors((args, kwargs or {}))
                        if (p := self.producers.get(t)) is not None]  # fmt: skip
                call = self.calls.get(name, 0)
                self.calls[name] = call + 1
                leaf = name in leaves and name != ""
                event = self.add("module", name, call=call, inputs=read, leaf=leaf)
                self.stack.append(event)
                self.inside_leaf += leaf

            return enter

        def post(name: str) -> Callable[..., None]:
            def leave(_m: nn.Module, _args: Any, out: Any) -> None:
                event = self.stack.pop()
                self.inside_leaf -= event.leaf
                if name == "" and self.output is None:  # the model's own output
                    self.output = self._read(out)
                outs = list(iter_tensors(out))
                event.shape = tuple(outs[0].shape) if outs else None
                if event.leaf:  # a container's outputs keep their inner producers
                    for o in outs:
                        self.producers.set(o, event.id)

            return leave

        with contextlib.ExitStack() as stack:
            stack.enter_context(hooked(self.model, {n: post(n) for n in named},
                                       {n: pre(n) for n in named}, train=None, grad=None,
                                       named=named))  # fmt: skip
            stack.enter_context(_Functions(self))
            self._exit = stack.pop_all()
        return self

    def finish(self) -> Recording | None:
        """The recording, its output node reading what the model returned (None: no forward
        ran inside, a cached output was served)."""
        if self.output is None:
            return None
        read = self.output
        self.add("output", "output", inputs=read, shape=read[0][1] if read else None)
        self.recording = Recording(self.events, dict(self.calls))
        return self.recording

    def __exit__(self, *exc: Any) -> None:
        self._exit.__exit__(*exc)


def record(model: nn.Module, inputs: Any) -> Recording:
    """One forward of ``model`` on ``inputs`` (no gradients, eval mode kept as found), recorded."""
    with FlowRecorder(model, inputs) as rec, torch.no_grad():
        model(inputs)
    recording = rec.finish()
    assert recording is not None  # the forward ran inside
    return recording
