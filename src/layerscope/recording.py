"""The hooks of one capture forward (:meth:`layerscope.Capturer.capture`): every call of the
requested modules copied into the store, the forward stopped right after their last calls, the
execution order learned (what ran, when, how often, how big), progress reported; installed with
:func:`~layerscope.hooks.hooked`, so the model is left as it was found."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .activations import MemoryReport
from .errors import CaptureError
from .hooks import Hook, hooked
from .nested import describe
from .safety import forward_failed
from .store import ActivationStore, output_bytes

__all__ = ["Learned", "record"]

Progress = Callable[[int, "int | None"], None]


class _StopForward(BaseException):
    """Raised from a hook once every requested module has produced its last call.
    A BaseException, so a model's own ``except Exception`` cannot swallow it."""


@dataclass
class Learned:
    """What one complete forward showed, for one input shape: modules in the order they first
    finished, how often each ran, its first output's structure, and its bytes over all calls
    (full precision, and with floats in bfloat16)."""

    counts: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, Any] = field(default_factory=dict)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    finished: dict[str, tuple[int, int]] = field(default_factory=dict)  # (first, last) call end
    started: dict[str, int] = field(default_factory=dict)  # first call's start, same clock


def record(
    model: nn.Module,
    named: dict[str, nn.Module],
    args: tuple[Any, ...],
    store: ActivationStore,
    storage: torch.device | None,
    todo: list[str],
    keys: dict[str, tuple[Hashable, str]],
    remaining: dict[str, int] | None,
    learned: Learned | None,
    train: bool,
    report: MemoryReport,
    progress: Progress | None,
) -> tuple[Any, bool, bool, Learned | None]:
    """One forward whose ``todo`` modules' calls go into ``store`` under ``keys``; stopped once
    ``remaining`` (calls left per module, if known) runs out. Learns the execution order when
    ``learned`` is None. Returns (output, completed, stopped early, what was learned)."""
    protected = set(keys.values())
    learn = learned is None
    new = Learned()
    total = sum(learned.counts.values()) if learned is not None else None
    done = [0]

    def keep(name: str) -> Hook:
        key = keys[name]

        def hook(_module: nn.Module, _args: Any, out: Any) -> None:
            store.add_call(key, out, storage=storage, protected=protected, report=report)
            if remaining is not None and name in remaining:
                remaining[name] -= 1
                if remaining[name] == 0:
                    del remaining[name]
                    if not remaining:
                        raise _StopForward

        return hook

    clock = [0]

    def study(name: str) -> Hook:
        def hook(_module: nn.Module, _args: Any, out: Any) -> None:
            if name not in new.counts:
                new.shapes[name] = describe(out)
            full, reduced = new.sizes.get(name, (0, 0))
            new.sizes[name] = (
                full + output_bytes(out, False),
                reduced + output_bytes(out, True),
            )
            new.counts[name] = new.counts.get(name, 0) + 1
            clock[0] += 1
            first = new.finished.get(name, (clock[0], 0))[0]
            new.finished[name] = (first, clock[0])

        return hook

    def begin(name: str) -> Hook:
        def hook(_module: nn.Module, _args: Any) -> None:
            clock[0] += 1  # module calls started or finished so far
            new.started.setdefault(name, clock[0])

        return hook

    ticks: list[Hook] = []
    if progress is not None:
        report_progress = progress

        def tick(_module: nn.Module, _args: Any, _out: Any) -> None:
            done[0] += 1
            report_progress(done[0], total)

        ticks = [tick]

    # On each module in this order: progress, learning, then the copy (which may stop it all).
    forward: dict[str, list[Hook]] = {n: [] for n in named}
    for n in named:
        forward[n] += ticks
        forward[n] += [study(n)] if learn else []
    for n in todo:
        forward[n].append(keep(n))
    pre = {n: begin(n) for n in named} if learn else {}
    output, completed, stopped = None, False, False
    with hooked(model, forward, pre, train=train, named=named):
        try:
            output = model(*args)
            completed = True
        except _StopForward:
            stopped = True
        except Exception as exc:
            raise CaptureError(forward_failed(model, args, exc)) from exc
    return output, completed, stopped, (new if learn and completed else None)
