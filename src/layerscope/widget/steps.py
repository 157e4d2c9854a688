"""The one mechanism behind every observer: named steps, each after the steps it needs, each
marking the steps that need it; each step has its own error, which stays until that step
succeeds, and a failed step clears its views and the views of every step that needs it, so
none shows stale data.

The steps are the Explorer's panels (:mod:`~layerscope.widget.panels`): :func:`plan` orders
them from what each declares it needs."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext

from ..errors import LayerScopeError

__all__ = ["Steps", "Unchanged", "plan"]


class Unchanged(Exception):
    """Raised by a step that failed without changing anything (an image that could not be
    read: the one before is still shown, with its views): the error shows, nothing clears, and
    the steps that need it have nothing new to do."""


def plan(
    needs: Mapping[str, tuple[str, ...]],
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The order to run steps in, every step after all the steps it ``needs`` (ties: the order
    given); and for each step every step that needs it, directly or through others, in that
    order (what a change of it leaves to do again)."""
    unknown = sorted({d for ds in needs.values() for d in ds} - set(needs))
    if unknown:
        raise LayerScopeError(f"a panel depends on {', '.join(unknown)}, which is no panel")
    order: list[str] = []
    while len(order) < len(needs):
        ready = [s for s in needs if s not in order and all(d in order for d in needs[s])]
        if not ready:
            cycle = [s for s in needs if s not in order]
            raise LayerScopeError(f"the panels {', '.join(cycle)} depend on each other")
        order.append(ready[0])
    after: dict[str, tuple[str, ...]] = {}
    for step in reversed(order):  # a step's dependents come later: theirs are known
        direct = [s for s in order if step in needs[s]]
        reached = {*direct, *(x for s in direct for x in after[s])}
        after[step] = tuple(s for s in order if s in reached)
    return tuple(order), after


class Steps:
    """``order``: step names, first to last; ``after``: the steps each one invalidates.
    ``run(step)`` does a step's work, ``show(text)`` shows the joined errors, ``clear(step)``
    empties a step's views."""

    def __init__(
        self,
        order: tuple[str, ...],
        after: dict[str, tuple[str, ...]],
        *,
        run: Callable[[str], None],
        show: Callable[[str], None],
        clear: Callable[[str], None],
        interrupted: Callable[[], None],
        batch: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.order, self.after = order, after
        self._run_step, self._show, self._clear, self._interrupted = run, show, clear, interrupted
        self._batch = batch  # what a whole run's changes go out in (one message)
        self.errors: dict[str, str] = {}
        self.last_traceback = ""
        self._dirty: set[str] = set()
        self._busy = False

    @property
    def busy(self) -> bool:
        """A run is under way (what it publishes goes out when it ends)."""
        return self._busy

    def mark(self, *steps: str) -> None:
        for step in steps:
            self._dirty.update((step, *self.after[step]))

    def skip(self, *steps: str) -> None:
        """Steps whose work is already done (a layer brings its channel along)."""
        self._dirty.difference_update(steps)

    def run(self) -> None:
        """Run every marked step in order. A step that changes a trait only marks more work:
        this loop picks it up, so nothing depends on the order observers were registered in."""
        if self._busy:
            return
        self._busy = True
        try:
            with self._batch():
                self._loop()
        finally:
            self._busy = False

    def _loop(self) -> None:
        while self._dirty:
            step = min(self._dirty, key=self.order.index)
            self._dirty.discard(step)
            try:
                self._run_step(step)
            except Unchanged as exc:
                self.last_traceback = traceback.format_exc()
                self.skip(*self.after[step])
                self.fail(step, str(exc), clear=False)
            except KeyboardInterrupt:
                self._dirty.clear()
                self._interrupted()
                self.fail(step, "interrupted (KeyboardInterrupt): run the action again")
                raise
            except Exception as exc:  # shown in the widget, not only in the kernel log
                self.report(step, exc, clear=True)
            else:
                self.succeeded(step)

    def report(self, step: str, exc: Exception, clear: bool = False) -> None:
        """Show an exception being handled as ``step``'s error, its traceback kept."""
        self.last_traceback = traceback.format_exc()
        self.fail(step, f"{type(exc).__name__}: {exc}", clear=clear)

    def succeeded(self, step: str) -> None:
        if self.errors.pop(step, None) is not None:
            self._show("\n".join(self.errors.values()))

    def fail(self, step: str, message: str, clear: bool = True) -> None:
        """Show the error. With ``clear``, empty this step's views and those after it (their
        work is dropped too); a refused value changes nothing, so it clears nothing."""
        self.errors[step] = message
        self._show("\n".join(self.errors.values()))
        if not clear:
            return
        for later in (step, *self.after.get(step, ())):
            self._dirty.discard(later)
            self._clear(later)

    def dismiss(self) -> None:
        self.errors.clear()
