"""The capture engine: forward hooks that clone every call, stop early, cache, stay within a
memory budget, and always leave the model as it was found. This module decides what a capture
needs (the cache, the budget's plan, the learned execution orders); the forward and its hooks
are in :mod:`layerscope.recording`."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .activations import Activations, MemoryReport
from .errors import ArgumentError, ArgumentTypeError, UnknownModuleError, close_matches
from .fingerprint import (
    input_digest,
    input_signature,
    module_weights,
    structure_id,
    tensor_digests,
    weights_fingerprint,
    weights_version,
)
from .recording import Learned, Progress, record
from .safety import as_args, prepare_inputs
from .store import ActivationStore

__all__ = ["capture", "Capturer", "resolve_modules"]


@dataclass
class _ModelState:
    """What LayerScope remembers about one model between captures (never the model itself)."""

    store: ActivationStore = field(default_factory=ActivationStore)
    learned: dict[Hashable, Learned] = field(default_factory=dict)


_STATES: weakref.WeakKeyDictionary[nn.Module, _ModelState] = weakref.WeakKeyDictionary()


def resolve_modules(
    model: nn.Module, modules: str | Iterable[str], named: dict[str, nn.Module] | None = None
) -> list[str]:
    """Check ``modules`` against ``model.named_modules()``; unique names in the given order.

    A bad argument raises an :class:`~layerscope.errors.ArgumentError` (no names),
    :class:`~layerscope.errors.ArgumentTypeError` (not names) or
    :class:`~layerscope.errors.UnknownModuleError` (a name the model lacks)."""
    if isinstance(modules, str):
        modules = [modules]
    elif isinstance(modules, nn.Module) or not isinstance(modules, Iterable):
        raise ArgumentTypeError(
            "modules is a list of qualified module names such as ['backbone.layer1'], got "
            f"{type(modules).__name__}; layerscope.module_tree(model) lists them"
        )
    given = list(modules)
    known = named if named is not None else dict(model.named_modules())
    for name in given:
        if not isinstance(name, str):
            hint = "layerscope.module_tree(model) lists them"
            if isinstance(name, nn.Module):
                found = next((n for n, m in known.items() if m is name), None)
                hint = f"this one is named {found!r}" if found is not None else hint
            raise ArgumentTypeError(
                f"module names are strings, got {type(name).__name__}: {name!r:.80}; {hint}"
            )
    names = list(dict.fromkeys(given))
    if not names:
        raise ArgumentError(
            "no modules to capture: pass qualified names such as 'backbone.layer1' "
            "('' is the whole model); layerscope.module_tree(model) lists them"
        )
    for name in names:
        if name not in known:
            raise UnknownModuleError(name, close_matches(name, known))
    return names


class Capturer:
    """Captures module outputs of one model; keeps its cache and learned execution orders.

    Several Capturers of the same model share that memory (so does :func:`capture`).

    >>> cap = Capturer(model, memory_budget=512 * 2**20)
    >>> acts = cap.capture(x, ["backbone.layer1", "backbone.layer4"])
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        memory_budget: int | None = None,
        storage: str | torch.device | None = "cpu",
    ) -> None:
        if not isinstance(model, nn.Module):
            raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._state = _STATES.setdefault(model, _ModelState())
        if memory_budget is not None:
            self.memory_budget = memory_budget
        self.storage = torch.device(storage) if storage is not None else None

    @property
    def memory_budget(self) -> int:
        """Bytes LayerScope may hold for this model (default 1 GiB).

        A budget belongs to a model, not to a Capturer: every Capturer, Explorer and
        :func:`capture` call on the same model shares one store and its budget. Setting it
        changes it for all of them; setting a different value after one was set explicitly
        warns, so two Explorers on one model cannot silently undo each other's choice."""
        return self._state.store.budget_bytes

    @memory_budget.setter
    def memory_budget(self, value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ArgumentError(f"memory_budget must be a positive number of bytes, got {value!r}")
        store = self._state.store
        if store.budget_set and value != store.budget_bytes:
            warnings.warn(
                f"LayerScope: the memory budget of this {type(self.model).__name__} changes from "
                f"{store.budget_bytes:,} to {value:,} bytes; it is shared by every Capturer and "
                "Explorer of the model",
                ResourceWarning,
                stacklevel=3,
            )
        store.budget_bytes, store.budget_set = int(value), True
        store.shrink()  # a lower budget holds from now on, not from the next capture

    @property
    def cached_bytes(self) -> int:
        """Bytes the model's store holds: cached outputs and idle buffers kept for reuse."""
        return self._state.store.held_bytes

    def clear_cache(self) -> None:
        """Drop every cached output of this model (learned execution orders stay)."""
        self._state.store.clear()

    def forget(self) -> None:
        """Drop the cache and the learned execution orders."""
        self._state.store.clear()
        self._state.learned.clear()

    def known_call_counts(self, inputs: Any, *, train: bool = False) -> dict[str, int] | None:
        """Calls per module in a complete forward on inputs shaped like ``inputs``, if learned."""
        learned = self._state.learned.get(self._key(as_args(inputs), train))
        return dict(learned.counts) if learned else None

    def known_schedule(
        self, inputs: Any, *, train: bool = False
    ) -> tuple[dict[str, int], dict[str, tuple[int, int]]] | None:
        """When each module first started and when its first and last calls finished, on one
        clock, in a complete forward on inputs shaped like ``inputs``; None until one ran."""
        learned = self._state.learned.get(self._key(as_args(inputs), train))
        return (dict(learned.started), dict(learned.finished)) if learned else None

    def known_shapes(self, inputs: Any, *, train: bool = False) -> dict[str, Any] | None:
        """Each module's output structure (shapes) on inputs shaped like ``inputs``, if learned."""
        learned = self._state.learned.get(self._key(as_args(inputs), train))
        return dict(learned.shapes) if learned else None

    def _cache_key(self, inputs: Any, name: Hashable) -> tuple[Any, dict[str, nn.Module]] | None:
        named = dict(self.model.named_modules())
        args = prepare_inputs(self.model, named, as_args(inputs))
        digest = input_digest(args)
        if digest is None:
            return None
        return ((self._key(args, False, named), digest, weights_version(named)), name), named

    def holds(self, inputs: Any, name: str) -> bool:
        """Whether the cache holds ``name``'s output for ``inputs`` (no forward, no check of the
        weights' values: a question about memory, not about freshness)."""
        found = self._cache_key(inputs, name)
        return found is not None and self._state.store.lookup(found[0]) is not None

    def derived(self, inputs: Any, key: Hashable) -> Any:
        """A result derived from ``inputs`` and the weights (Grad-CAM's), kept with
        :meth:`keep_derived`; None when absent or when the weights' values changed since."""
        found = self._cache_key(inputs, ("derived", key))
        if found is None:
            return None
        entry, named = found
        store = self._state.store
        value = store.lookup(entry)
        if value is None:
            return None
        if store.check_of(entry) != weights_fingerprint(named):
            store.discard([entry])
            return None
        return value[0]

    def keep_derived(self, inputs: Any, key: Hashable, value: Any) -> bool:
        """Keep ``value`` (tensors, in dicts and tuples) under the model's memory budget;
        False when it does not fit."""
        found = self._cache_key(inputs, ("derived", key))
        if found is None:
            return False
        entry, named = found
        return self._state.store.put(entry, value, check=weights_fingerprint(named))

    def capture(
        self,
        inputs: Any,
        modules: str | Iterable[str],
        *,
        stop_early: bool = True,
        cache: bool = True,
        train: bool = False,
        progress: Progress | None = None,
    ) -> Activations:
        """Run the model on ``inputs`` and return what ``modules`` produced.

        ``inputs`` is a tensor or a tuple of positional arguments, moved to the model's device.
        The model runs in eval mode under ``torch.no_grad()`` unless ``train=True`` (train
        mode, for models whose train-time forward differs; BatchNorm's running statistics,
        which train mode updates, are put back afterwards, and nothing is cached). Every
        module's mode, the grad mode and the hooks are restored afterwards, also when the
        forward raises or is interrupted.

        ``stop_early``: once a complete forward on this input shape has shown the execution order,
        the forward stops right after the requested modules' last calls.
        ``cache``: outputs already captured for the same input values and weights are returned
        without running the model (see :mod:`layerscope.fingerprint` for what invalidates them).
        With ``stop_early=False`` the model's output is kept with them, so ``acts.output`` is
        there also when everything came from the cache.
        ``progress(done, total)`` is called after every module call (``total``: the calls of a
        complete forward once known, else None), for a progress bar.
        """
        model = self.model
        named = dict(model.named_modules())
        names = resolve_modules(model, modules, named)
        args = prepare_inputs(model, named, as_args(inputs))
        key = self._key(args, train, named)
        store = self._state.store
        report = MemoryReport(budget_bytes=store.budget_bytes)
        # Asked to run to the end, the caller wants the model's output: it is kept with the
        # captures (as the whole model's, "") so a cached capture still returns it.
        wanted = names if stop_early or "" in names else [*names, ""]

        digest = input_digest(args) if cache and not train else None
        group: Hashable = (key, digest, weights_version(named)) if digest else object()
        keys = {n: (group, n) for n in wanted}
        learned = self._state.learned.get(key)
        checks = self._checks(named, wanted, learned) if digest is not None else {}
        hits = set()
        for n in wanted:
            if digest is None or store.lookup(keys[n]) is None:
                continue
            if store.check_of(keys[n]) == checks[n]:
                hits.add(n)
            else:  # the weights' values changed without their version counter moving
                store.discard([keys[n]])
        todo = [n for n in wanted if n not in hits]

        remaining: dict[str, int] | None = None
        if stop_early and learned is not None and "" not in todo:
            remaining = {n: learned.counts[n] for n in todo if learned.counts.get(n)}
        output, completed, stopped = None, False, False
        try:
            for n in todo:
                store.start(keys[n], checks.get(n))
            if learned is not None:  # sizes known: decide precision and evictions before copying
                order = {n: i for i, n in enumerate(learned.counts)}
                planned = sorted(todo, key=lambda n: order.get(n, len(order)))
                sizes = [(keys[n], *learned.sizes.get(n, (0, 0))) for n in planned]
                store.plan(sizes, protected=set(keys.values()), report=report)
            if todo and (remaining is None or remaining):
                output, completed, stopped, new = record(
                    model, named, args, store, self.storage, todo, keys, remaining, learned,
                    train, report, progress,
                )  # fmt: skip
                if new is not None:
                    self._state.learned[key] = new
                    if digest is not None:  # checks by what each output depends on, now known
                        checks = self._checks(named, todo, new)
                        for n in todo:
                            store.set_check(keys[n], checks[n])
        finally:  # also after an interrupt: open entries are closed or dropped, never left
            ran = completed or stopped or not (todo and (remaining is None or remaining))
            store.finish([keys[n] for n in todo], complete=ran)

        calls = {n: store.take(keys[n]) for n in wanted}
        if "" in wanted and not completed and calls[""]:
            output = calls[""][0]  # the model's output, from the cache
            completed = True
        if digest is None:  # nothing to reuse later: free the budget now
            store.discard([keys[n] for n in wanted])
        report.stored_bytes = store.held_bytes
        if report.changed_anything:
            warnings.warn(_budget_message(report), ResourceWarning, stacklevel=2)
        return Activations(
            {n: calls[n] for n in names},
            requested=names,
            output=output if completed else None,
            stopped_early=stopped,
            from_cache=frozenset(hits & set(names)),
            memory=report,
        )

    @staticmethod
    def _checks(
        named: dict[str, nn.Module], names: list[str], learned: Learned | None
    ) -> dict[str, Hashable]:
        """For each module, a digest of the values of the weights its output can depend on:
        those of the modules that ran before it finished (its ancestors included) and of the
        modules that never run as modules (their weights may be read directly, like a tied
        embedding's). All weights while the execution order is unknown, or for the whole
        model. Hashed once for the union: an early module's check costs a fraction of all."""
        done = learned.finished if learned is not None else None
        never = {m for m in named if done is not None and m not in done}
        relevant: dict[str, set[str] | None] = {}
        for n in names:
            if done is None or n == "" or n not in done:
                relevant[n] = None
                continue
            last = done[n][1]  # a reused module: every call up to its last one
            ancestors = {n.rsplit(".", i)[0] for i in range(1, n.count(".") + 1)} | {""}
            before = {m for m, (first, _) in done.items() if first <= last}
            relevant[n] = before | ancestors | never
        known = [r for r in relevant.values() if r is not None]
        union = None if len(known) < len(relevant) else set[str]().union(*known)
        digests = tensor_digests(module_weights(named, union))
        return {
            n: tuple(digests[id(t)] for t in module_weights(named, r)) for n, r in relevant.items()
        }

    def _key(
        self, args: tuple[Any, ...], train: bool, named: dict[str, nn.Module] | None = None
    ) -> Hashable:
        named = named if named is not None else dict(self.model.named_modules())
        return (structure_id(named), input_signature(args), train)


def capture(
    model: nn.Module,
    inputs: Any,
    modules: str | Iterable[str],
    *,
    stop_early: bool = True,
    cache: bool = True,
    memory_budget: int | None = None,
    storage: str | torch.device | None = "cpu",
    train: bool = False,
) -> Activations:
    """Capture what ``modules`` of ``model`` produce on ``inputs``.

    >>> acts = layerscope.capture(model, x, ["backbone.layer1", "classifier"])
    >>> acts["backbone.layer1"].shape
    torch.Size([1, 256, 24, 24])
    >>> len(acts.calls("backbone.layer1.0.relu"))  # the Bottleneck's ReLU runs three times
    3

    Outputs are detached copies made at capture time (``storage="cpu"`` by default; ``None``
    keeps them on the model's device). See :class:`Capturer` for the options."""
    return Capturer(model, memory_budget=memory_budget, storage=storage).capture(
        inputs, modules, stop_early=stop_early, cache=cache, train=train
    )


def _budget_message(report: MemoryReport) -> str:
    parts = []
    if report.reduced:
        parts.append(f"{len(report.reduced)} module(s) stored in bfloat16 ({_few(report.reduced)})")
    if report.evicted:
        parts.append(f"{len(report.evicted)} module(s) evicted ({_few(report.evicted)})")
    return (
        f"LayerScope: captures exceed the memory budget of {report.budget_bytes / 2**30:.2f} GiB: "
        + "; ".join(parts)
        + ". Raise memory_budget or capture fewer modules; details in acts.memory."
    )


def _few(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
