"""Channel importance: what each channel of a module's output does to a class score.

For a class score S (as in Grad-CAM: the class's score summed over the pixels the unedited model
predicts as that class; a classifier's logit) and every channel c of the module's output A:

- ``estimate[c] = sum over positions of A_c * dS/dA_c``: the first-order drop of S when c is
  zeroed, for all channels from one forward and one backward ("attribution patching");
- ``exact[c] = S - S(with channel c zeroed)`` for the ``exact_top`` channels with the largest
  estimates, run in batches through the part of the model after the module only.

One forward (with grad) and one backward serve both: the forward also keeps what may stand in
during the exact runs (the outputs of what finished before the module, the module's own, an
auxiliary head's; see :mod:`layerscope.intervene`), so no other full forward runs, except a
complete one that learns the execution order on the first input of a shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .capture import Capturer, resolve_modules
from .edits import check_call
from .errors import CaptureError, LayerScopeError
from .gradients import class_score, differentiable, on_graph, target_pixels
from .hooks import Hook, hooked
from .intervene import capture_storage, reusable, reuse_names, run_edited
from .nested import iter_tensors, map_tensors
from .safety import as_args, prepare_inputs, run_model
from .zeroed import ZeroedConvs

__all__ = ["ChannelImportance", "channel_importance", "exact_drops"]


@dataclass(frozen=True)
class ChannelImportance:
    """``estimate``: (C,) first-order drops of ``score``; ``order``: channels by estimate, largest
    first; ``exact``: channel -> exact drop, for the channels measured."""

    module: str
    target_class: int
    score: float
    estimate: np.ndarray
    order: np.ndarray
    exact: dict[int, float]

    @property
    def rank_correlation(self) -> float:
        """Spearman's rank correlation of estimate and exact over the channels measured."""
        chans = list(self.exact)
        if len(chans) < 2:
            return math.nan
        a = _ranks(np.array([self.estimate[c] for c in chans]))
        b = _ranks(np.array([self.exact[c] for c in chans]))
        a, b = a - a.mean(), b - b.mean()
        den = math.sqrt(float((a * a).sum() * (b * b).sum()))
        return float((a * b).sum() / den) if den else math.nan


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v))
    ranks[order] = np.arange(len(v))
    for value in np.unique(v):  # ties share their mean rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _score(output: Any, cls: int, mask: torch.Tensor | None) -> torch.Tensor:
    """The class score of every row of an edited forward, over the unedited run's pixels."""
    logits, _ = target_pixels(output, cls, mask, "channel importance")
    return class_score(logits, cls, mask)


def channel_importance(
    model: nn.Module,
    inputs: Any,
    module: str,
    target_class: int,
    *,
    exact_top: int = 32,
    call: int = 0,
    batch: int = 8,
) -> Any:
    """Estimate every channel's effect on ``target_class``'s score and measure the largest
    ``exact_top`` exactly (``batch`` at a time). A batch of N images gives a list of N
    results, each image with its own score (its own predicted pixels), estimate and exact
    drops; the estimates come from the one forward and backward of the whole batch."""
    call = check_call("channel_importance", call) or 0
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    args = prepare_inputs(model, named, as_args(inputs))
    cap = Capturer(model, storage=capture_storage(model))
    if cap.known_schedule(inputs) is None:  # the first input of this shape: learn the order
        cap.capture(inputs, [""], stop_early=False)
    schedule = cap.known_schedule(inputs)
    outer, later = reuse_names(named, schedule, [name]) if schedule else ([], [])
    stand_in: dict[str, list[Any]] = {n: [] for n in [*outer, *later]}
    kept: list[torch.Tensor] = []
    seen = [0]

    def hook(_m: nn.Module, _a: Any, out: Any) -> Any:
        seen[0] += 1
        if seen[0] - 1 != call:
            return None
        if not isinstance(out, torch.Tensor) or out.dim() not in (2, 4):
            raise LayerScopeError(
                f"{name}'s output has no channel dimension (dimension 1 of (N, C, H, W) or (N, C))"
            )
        src = on_graph(out)
        kept.append(src)
        return src.clone()  # in-place ops after the module cannot touch what is differentiated

    def keep(n: str) -> Any:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:  # copied before any in-place op
            stand_in[n].append(map_tensors(out, lambda t: t.detach().clone()))

        return hook

    hooks: dict[str, list[Hook]] = {n: [keep(n)] for n in stand_in}
    hooks.setdefault(name, []).append(hook)  # after its keep, when the module may stand in
    with hooked(model, hooks, train=False, grad=True, named=named):
        output = run_model(model, differentiable(args))
        if not kept:
            raise LayerScopeError(f"{name} ran {seen[0]} time(s): no call {call}")
        logits, mask = target_pixels(output, target_class, what="channel importance")
        scores = class_score(logits, target_class, mask)  # one per image
        (gradient,) = torch.autograd.grad(scores.sum(), kept[0])
    del output, logits  # the graph of the forward: freed before the exact runs
    rows = kept[0].shape[0]
    results = []
    for i in range(rows):  # images do not mix in an eval-mode forward: row i's gradient is its own
        a, g = kept[0].detach()[i], gradient.detach()[i]
        estimate = (a * g).reshape(a.shape[0], -1).sum(1).float().cpu().numpy()
        order = np.argsort(-estimate, kind="stable")
        top = [int(c) for c in order[: max(0, min(exact_top, len(order)))]]
        replay = _rows({n: stand_in[n] for n in outer}, i, rows)
        gated = _rows({n: stand_in[n] for n in later if stand_in[n]}, i, rows)
        row_mask = None if mask is None else mask[i : i + 1] if mask.dim() == 3 else mask
        row_args = args if rows == 1 else _row(args, i, rows)
        if row_args is None:
            raise LayerScopeError("a batch needs every input tensor to have the batch first")
        exact = _exact(model, named, row_args, name, call, top, target_class, row_mask, batch,
                       replay if all(replay.values()) else {}, gated)  # fmt: skip
        base = float(scores[i].detach())
        drops = {c: base - v for c, v in exact.items()}
        results.append(ChannelImportance(name, target_class, base, estimate, order, drops))
    return results[0] if rows == 1 else results


def exact_drops(
    model: nn.Module,
    inputs: Any,
    module: str,
    target_class: int,
    channels: list[int],
    *,
    score: float,
    mask: torch.Tensor | None,
    call: int = 0,
    batch: int = 8,
) -> dict[int, float]:
    """``score`` minus the class score with each of ``channels`` zeroed (one image), for a
    caller that has the estimate already (the Explorer, from its Grad-CAM pass): what may stand
    in comes from LayerScope's cache (:func:`~layerscope.intervene.reusable`: a forward until
    the module when it is not there), and only the suffix runs, in batches."""
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    args = prepare_inputs(model, named, as_args(inputs))
    cap = Capturer(model, storage=capture_storage(model))
    replay, gated = reusable(cap, inputs, [name])
    values = _exact(model, named, args, name, call, channels, target_class, mask, batch,
                    replay, gated)  # fmt: skip
    return {c: score - v for c, v in values.items()}


def _row(obj: Any, i: int, rows: int) -> Any:
    """Row ``i`` of every tensor in ``obj`` (kept 4-D: ``t[i:i+1]``); None when a tensor's
    first dimension is not the batch (it cannot be split by image)."""
    tensors = list(iter_tensors(obj))
    if any(t.dim() == 0 or t.shape[0] != rows for t in tensors):
        return None
    return map_tensors(obj, lambda t: t[i : i + 1])


def _rows(stand_in: dict[str, list[Any]], i: int, rows: int) -> dict[str, list[Any]]:
    """What stands in for image ``i``: its row of every cached call; a module whose outputs
    cannot be split by image runs instead (left out)."""
    if rows == 1:
        return stand_in
    out = {}
    for name, calls in stand_in.items():
        split = [_row(c, i, rows) for c in calls]
        if all(c is not None for c in split):
            out[name] = split
    return out


def _exact(
    model: nn.Module,
    named: dict[str, nn.Module],
    args: tuple[Any, ...],
    name: str,
    call: int,
    channels: list[int],
    cls: int,
    mask: torch.Tensor | None,
    batch: int,
    replay: dict[str, list[Any]],
    gated: dict[str, list[Any]],
) -> dict[int, float]:
    """S with each channel zeroed, ``batch`` channels per forward through the suffix (``replay``
    and ``gated`` stand in for what the zeroing cannot reach)."""
    scores: dict[int, float] = {}
    full: dict[Any, torch.Tensor] = {}  # conv(unedited map), made once for every chunk
    for start in range(0, len(channels), max(1, batch)):
        chunk = channels[start : start + max(1, batch)]

        shortcut = ZeroedConvs(chunk, full)  # the convolutions reading the zeroed copies: linear

        def zero(
            index: int, out: Any, chunk: list[int] = chunk, shortcut: ZeroedConvs = shortcut
        ) -> Any:
            if index != call:
                return out
            edited = out.expand(len(chunk), *out.shape[1:]).clone()
            edited[torch.arange(len(chunk)), chunk] = 0
            shortcut.arm(edited, out[:1].detach())
            return edited

        edits = {name: zero}
        try:
            with shortcut:
                run = run_edited(model, named, args, edits, replay, [], gated=gated,
                                 batch=len(chunk))  # fmt: skip
        except CaptureError as exc:  # an in-place write on what stands in: run it all instead
            if "memory location" not in str(exc):
                raise
            run = run_edited(model, named, args, edits, {}, [], batch=len(chunk))
        output = run.output
        with torch.no_grad():
            values = _score(output, cls, mask).float().cpu().tolist()
        scores.update(zip(chunk, values))
    return scores
