"""One way to hook a model: :func:`hooked` installs forward hooks, forward pre-hooks and
stand-in forwards on named modules for the length of a ``with`` block, and always takes them
away again and puts back the modes it found (every module's train/eval mode, the grad mode),
also when the forward or a hook raises or the run is interrupted. Every forward LayerScope hooks
(captures, Grad-CAM, channel importance, interventions, tracing, sweeps) goes through it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from torch import nn

from .safety import model_kept_as_found

__all__ = ["Hook", "hooked"]

Hook = Callable[..., Any]  # forward: (module, args, output) -> None or a new output;
#                            pre: (module, args) -> None or new args
Hooks = Mapping[str, "Hook | Sequence[Hook]"]

_MISSING = object()


def _each(hooks: Hook | Sequence[Hook]) -> Sequence[Hook]:
    return hooks if isinstance(hooks, Sequence) else (hooks,)


@contextlib.contextmanager
def hooked(
    model: nn.Module,
    forward: Hooks | None = None,
    pre: Hooks | None = None,
    *,
    replace: Mapping[str, Callable[..., Any]] | None = None,
    train: bool | None = False,
    grad: bool | None = False,
    named: Mapping[str, nn.Module] | None = None,
) -> Iterator[None]:
    """Inside: ``forward`` and ``pre`` (module name -> a hook, or several run in the given
    order) registered as forward hooks and forward pre-hooks of those modules of ``model``;
    each module named in ``replace`` with that callable as its ``forward`` method (a stand-in:
    the module's hooks still run around it); the model in train (``train=True``) or eval mode
    and grad on or off (``grad``); ``None`` leaves that mode as it is.

    On the way out, however the block ends (an exception from the forward, a hook or the block,
    a KeyboardInterrupt): every hook removed, every forward method put back, every module's
    train/eval mode and the grad mode restored (in train mode, the buffers too: BatchNorm's
    running statistics). ``named``: ``dict(model.named_modules())``, when the caller has it.

    >>> with hooked(model, {"backbone.layer1": lambda m, a, out: print(out.shape)}):
    ...     model(x)
    """
    modules = named if named is not None else dict(model.named_modules())
    handles = []
    swapped: list[tuple[nn.Module, Any]] = []
    with model_kept_as_found(model, train, grad):
        try:
            for name, fn in (replace or {}).items():
                module = modules[name]
                swapped.append((module, module.__dict__.get("forward", _MISSING)))
                module.__dict__["forward"] = fn  # an attribute, even if fn is a Module
            for name, hooks in (pre or {}).items():
                for hook in _each(hooks):
                    handles.append(modules[name].register_forward_pre_hook(hook))
            for name, hooks in (forward or {}).items():
                for hook in _each(hooks):
                    handles.append(modules[name].register_forward_hook(hook))
            yield
        finally:
            for handle in reversed(handles):
                handle.remove()
            for module, original in reversed(swapped):
                if original is _MISSING:
                    del module.__dict__["forward"]
                else:
                    module.__dict__["forward"] = original
