"""The one mechanism behind every observer: named steps run in a fixed order, each marking the
steps after it; each step has its own error, which stays until that step succeeds, and a
failed step clears its views and the views after it, so none shows stale data.

New panels (dataset examples, interventions) plug in as more steps, with what they follow."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

__all__ = ["Steps", "Unchanged"]


class Unchanged(Exception):
    """Raised by a step that failed without changing anything (an image that could not be
    read: the one before is still shown, with its views): the error shows, nothing clears."""


class Steps:
    """``order``: step names, first to last; ``after``: the steps each one invalidates;
    ``clears``: the payload traits each step owns. ``run(step)`` does a step's work,
    ``show(text)`` shows the joined errors, ``clear(trait)`` empties a payload."""

    def __init__(
        self,
        order: tuple[str, ...],
        after: dict[str, tuple[str, ...]],
        clears: dict[str, tuple[str, ...]],
        *,
        run: Callable[[str], None],
        show: Callable[[str], None],
        clear: Callable[[str], None],
        interrupted: Callable[[], None],
        batch: Callable[[], AbstractContextManager[object]] = nullcontext,
    ) -> None:
        self.order, self.after, self.clears = order, after, clears
        self._run_step, self._show, self._clear, self._interrupted = run, show, clear, interrupted
        self._batch = batch  # what a whole run's changes go out in (one message)
        self.errors: dict[str, str] = {}
        self.last_traceback = ""
        self._dirty: set[str] = set()
        self._busy = False

    def mark(self, step: str) -> None:
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
                self.fail(step, str(exc), clear=False)
            except KeyboardInterrupt:
                self._dirty.clear()
                self._interrupted()
                self.fail(step, "interrupted (KeyboardInterrupt): run the action again")
                raise
            except Exception as exc:  # shown in the widget, not only in the kernel log
                self.last_traceback = traceback.format_exc()
                self.fail(step, f"{type(exc).__name__}: {exc}")
            else:
                self.succeeded(step)

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
            for trait in self.clears.get(later, ()):
                self._clear(trait)

    def dismiss(self) -> None:
        self.errors.clear()
