"""The local engine: images decoded and preprocessed by a torch DataLoader (``num_workers``
processes), batches of equal shape through the model with forward hooks that reduce each module's
output to per-channel maxima and statistics right where it is produced (on the model's device; no
copy is kept), merged into the running top-k."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from ..hooks import hooked
from ..nested import first_tensor
from ..preprocess import Preprocess
from ..safety import run_model
from .sources import Sources
from .topk import ChannelTopK

__all__ = ["run_local", "PreparedItems", "forward_by_shape", "interrupts_deferred", "Done"]

# done(counted, skipped, input shapes, the batch's partial states): commits one batch.
Done = Callable[
    [list[int], list[tuple[int, str]], list[tuple[int, ...]], dict[str, ChannelTopK]], None
]


class PreparedItems(torch.utils.data.Dataset):
    """Image ``i`` of ``todo`` as (index, input tensor or None, why it failed or None)."""

    def __init__(self, sources: Sources, preprocess: Preprocess | Any, todo: list[int]) -> None:
        self.sources, self.preprocess, self.todo = sources, preprocess, todo

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None, str | None]:
        index = self.todo[i]
        try:
            x = self.sources.prepare(index, self.preprocess).tensor
        except Exception as exc:  # unreadable, corrupt, not an image: reported, never fatal
            return index, None, f"{type(exc).__name__}: {exc}"
        return index, x[0], None


def _collate(items: list[Any]) -> list[Any]:
    return items


def forward_batch(
    model: nn.Module,
    named: dict[str, nn.Module],
    modules: list[str],
    states: dict[str, ChannelTopK],
    x: torch.Tensor,
    ids: torch.Tensor,
) -> None:
    """One forward of ``x`` whose modules' first calls update ``states`` for images ``ids``."""
    seen: set[str] = set()

    def reduce(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            if name in seen:  # a reused module: its first call counts
                return
            seen.add(name)
            t = first_tensor(out)
            if t is not None:
                states[name].update(t, ids)  # before any in-place op after the module

        return hook

    with hooked(model, {n: reduce(n) for n in modules}, train=False, named=named):
        run_model(model, (x,))


def forward_by_shape(
    model: nn.Module,
    named: dict[str, nn.Module],
    modules: list[str],
    states: dict[str, ChannelTopK],
    items: list[tuple[int, torch.Tensor]],
    device: torch.device,
) -> list[tuple[int, ...]]:
    """Forward ``items`` ((image index, input) pairs) in batches of one input shape each: an
    image of another size goes in a batch of its own. Returns the batches' shapes."""
    groups: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for i, x in items:
        groups.setdefault(tuple(x.shape), []).append((i, x))
    shapes = []
    for group in groups.values():
        ids = torch.tensor([i for i, _ in group], dtype=torch.int64)
        x = torch.stack([t for _, t in group]).to(device)
        forward_batch(model, named, modules, states, x, ids)
        shapes.append(tuple(x.shape))
    return shapes


def run_local(
    model: nn.Module,
    sources: Sources,
    modules: list[str],
    states: dict[str, ChannelTopK],
    todo: list[int],
    *,
    preprocess: Preprocess | Any,
    batch_size: int,
    num_workers: int,
    device: torch.device,
    done: Done,
) -> None:
    """Count the images ``todo``; after each batch, ``done(counted, skipped, input shapes,
    partial states)`` merges and records it."""
    named = dict(model.named_modules())
    loader = torch.utils.data.DataLoader(
        PreparedItems(sources, preprocess, todo),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
    )
    for items in loader:
        skipped = [(i, why) for i, x, why in items if x is None]
        good = [(i, x) for i, x, _ in items if x is not None]
        # A batch is a transaction: its forward reduces into partial states, merged into the
        # running ones by ``done`` only once every module has seen it, so an interrupt
        # mid-forward leaves the running states (and any checkpoint) without a half-counted batch.
        partial = {n: ChannelTopK(states[n].k) for n in modules}
        shapes = forward_by_shape(model, named, modules, partial, good, device)
        done([i for i, _ in good], skipped, shapes, partial)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) inside is raised on the way out, not halfway through: a batch's states
    and the record that its images were counted change together or not at all."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and callable(previous):
            previous(*caught[0])


class Every:
    """True at most once every ``seconds`` (checkpoints)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.last = seconds, time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.seconds:
            self.last = now
            return True
        return False
