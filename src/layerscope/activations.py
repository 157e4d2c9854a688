"""The result of a capture: a read-only mapping from module name to what it produced."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NotCapturedError
from .nested import describe

__all__ = ["Activations", "MemoryReport"]


@dataclass
class MemoryReport:
    """What the memory budget did during one capture.

    ``reduced`` lists modules stored in bfloat16 instead of their own precision,
    ``evicted`` modules of this capture dropped to stay within ``budget_bytes``,
    ``evicted_cached`` how many entries of earlier captures were dropped from the cache,
    ``peak_bytes`` the most LayerScope held at any moment of the capture."""

    budget_bytes: int
    stored_bytes: int = 0
    peak_bytes: int = 0
    reduced: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    evicted_cached: int = 0

    @property
    def changed_anything(self) -> bool:
        return bool(self.reduced or self.evicted)


class Activations(Mapping[str, Any]):
    """Module outputs from one forward pass, keyed by qualified module name.

    ``acts[name]`` is the output of the module's first call and ``acts.calls(name)`` every call
    in order (ResNet's Bottleneck ``relu`` fires three times). Outputs keep their structure
    (tensor, tuple, list, dict, nested), detached and cloned at capture time, so in-place
    operations after the module do not change them. Treat them as read-only: they may be shared
    with LayerScope's cache.

    ``acts.output`` is the model's own output when the forward ran to the end, else ``None``
    (an early-stopped or fully cached capture). ``acts.never_called`` names requested modules
    that did not run (a ModuleList that is only a container, a branch not taken)."""

    def __init__(
        self,
        calls: dict[str, list[Any]],
        *,
        requested: list[str],
        output: Any = None,
        stopped_early: bool = False,
        from_cache: frozenset[str] = frozenset(),
        memory: MemoryReport | None = None,
    ) -> None:
        self._calls = calls
        self.requested = list(requested)
        self.output = output
        self.stopped_early = stopped_early
        self.from_cache = from_cache
        self.memory = memory
        evicted = set(memory.evicted) if memory else set()
        self.never_called = [n for n in self.requested if not calls.get(n) and n not in evicted]
        self._order = [n for n in self.requested if calls.get(n)]

    def __getitem__(self, name: str) -> Any:
        calls = self._calls.get(name)
        if calls:
            return calls[0]
        raise NotCapturedError(self._why_missing(name))

    def calls(self, name: str) -> list[Any]:
        """Every output of ``name`` in call order; empty for a module that never ran."""
        if name not in self.requested:
            raise NotCapturedError(self._why_missing(name))
        return list(self._calls.get(name, []))

    def __iter__(self) -> Iterator[str]:
        return iter(self._order)

    def __len__(self) -> int:
        return len(self._order)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._calls.get(name))

    def shapes(self) -> dict[str, Any]:
        """Each captured module's output structure with tensor shapes, as plain data."""
        return {n: describe(self._calls[n][0]) for n in self._order}

    def call_counts(self) -> dict[str, int]:
        return {n: len(self._calls.get(n, [])) for n in self.requested}

    def _why_missing(self, name: str) -> str:
        if self.memory and name in self.memory.evicted:
            return (
                f"{name!r} was captured but evicted to stay within the memory budget "
                f"({self.memory.budget_bytes / 2**30:.2f} GiB): capture fewer modules or raise "
                "memory_budget"
            )
        if name in self.never_called:
            return (
                f"{name!r} was never called during this forward (a container such as a "
                "ModuleList, or a branch not taken): capture its children instead"
            )
        return f"{name!r} was not requested in this capture; requested: {self.requested}"

    def __repr__(self) -> str:
        parts = [f"{n}: {describe(self._calls[n][0])}" for n in self._order[:6]]
        more = f", ... {len(self._order) - 6} more" if len(self._order) > 6 else ""
        return f"Activations({', '.join(parts)}{more})"
