"""Checks before a forward and restoration after it: inputs that fit the model, a model left
exactly as it was found, and error messages that say what to do."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from .errors import ArgumentTypeError, CaptureError, LayerScopeError
from .nested import iter_tensors, map_tensors

__all__ = ["model_kept_as_found", "as_args", "prepare_inputs", "forward_failed"]


@contextlib.contextmanager
def model_kept_as_found(
    model: nn.Module, train: bool | None, grad: bool | None = False
) -> Iterator[None]:
    """Eval (or train) mode and no grad (unless ``grad``) inside (``None``: that mode as it
    is); every module's own mode and the grad mode restored on the way out, whatever happened
    inside. Hooks are installed with :func:`layerscope.hooks.hooked`, which keeps the model so."""
    modes = [(m, m.training) for m in model.modules()]
    was_grad = torch.is_grad_enabled()
    # In train mode BatchNorm updates its running statistics: keep them to put them back.
    saved = [(b, b.detach().clone()) for b in model.buffers()] if train else []
    try:
        if train is not None:
            model.train(train)
        with torch.set_grad_enabled(grad) if grad is not None else contextlib.nullcontext():
            yield
    finally:
        for module, mode in modes:
            module.training = mode
        torch.set_grad_enabled(was_grad)
        with torch.no_grad():
            for buf, value in saved:
                if not torch.equal(buf, value):
                    buf.copy_(value)


def as_args(inputs: Any) -> tuple[Any, ...]:
    return inputs if isinstance(inputs, tuple) else (inputs,)


def _model_dtype_device(model: nn.Module) -> tuple[torch.dtype | None, torch.device | None]:
    t: torch.Tensor | None = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return (t.dtype, t.device) if t is not None else (None, None)


def prepare_inputs(
    model: nn.Module, named: dict[str, nn.Module], args: tuple[Any, ...]
) -> tuple[Any, ...]:
    """Reject inputs that cannot be right before running anything; move tensors to the model's
    device."""
    if not any(True for _ in iter_tensors(args)):
        raise ArgumentTypeError(
            "inputs hold no tensor: pass a tensor (e.g. a (1, 3, H, W) image batch) or a tuple "
            f"of the forward's positional arguments, got {type(args[0]).__name__}"
        )
    dtype, device = _model_dtype_device(model)
    takes_indices = any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in named.values())
    if dtype is not None and dtype.is_floating_point and not takes_indices:
        for t in iter_tensors(args):
            if not (t.is_floating_point() or t.is_complex()):
                raise CaptureError(
                    f"input tensor of dtype {t.dtype} but the model's weights are {dtype}: "
                    "convert and normalise it as the model expects (x.float() / 255, then the "
                    "weights' transforms), or use layerscope.load_preset(...).preprocess"
                )
    if device is None:
        return args
    return map_tensors(args, lambda t: t if t.device == device else t.to(device))


def forward_failed(model: nn.Module, args: tuple[Any, ...], exc: Exception) -> str:
    """The message of the CaptureError raised when the model's own forward fails."""
    tensors = list(iter_tensors(args))
    shapes = ", ".join(f"{tuple(t.shape)} {t.dtype}" for t in tensors)
    hints = []
    dtype, _ = _model_dtype_device(model)
    if any(t.dim() == 3 for t in tensors):
        hints.append("a single image needs a batch dimension: x.unsqueeze(0)")
    if dtype is not None and any(t.is_floating_point() and t.dtype != dtype for t in tensors):
        hints.append(f"the weights are {dtype}: convert the input with x.to({dtype})")
    hint = ("; hint: " + "; ".join(hints)) if hints else ""
    return (
        f"the forward of {type(model).__name__} raised {type(exc).__name__}: {exc} "
        f"(inputs: {shapes}); the model was left as it was found{hint}"
    )


def run_model(model: nn.Module, args: tuple[Any, ...]) -> Any:
    """``model(*args)``; a failure of the model's own code becomes a CaptureError that says
    what the inputs were (LayerScope's errors, raised from its hooks, pass unchanged)."""
    try:
        return model(*args)
    except LayerScopeError:
        raise
    except Exception as exc:
        raise CaptureError(forward_failed(model, args, exc)) from exc
