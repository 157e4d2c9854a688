"""Progress over a dissection's passes: a tqdm bar, or a callable ``(done, total)`` counting
images over all passes. The total assumes the usual two passes and grows when the sketch needs
another one."""

from __future__ import annotations

from typing import Any

__all__ = ["Bar"]


class Bar:
    def __init__(self, progress: Any) -> None:
        self.call = progress if callable(progress) and not isinstance(progress, bool) else None
        self.show = bool(progress) and self.call is None
        self.bar: Any = None
        self.done = self.total = 0

    def plan(self, state: Any, images: int) -> None:
        """At the start of a pass: what was done before it, and what is left."""
        counted = len(state.counted) if state.passes else images
        before = (images + (state.passes - 1) * counted) if state.passes else 0
        this = len(state.todo()) + len(state.processed)
        later = counted if state.stage == "sketch" else 0
        self.done = before + len(state.processed)
        self.total = before + this + later
        if self.show:
            from tqdm.auto import tqdm

            if self.bar is not None:
                self.bar.close()
            kind = "thresholds" if state.stage == "sketch" else "IoU"
            self.bar = tqdm(total=this, initial=len(state.processed), unit="image",
                            desc=f"dissect: pass {state.passes + 1} ({kind})")  # fmt: skip

    def advance(self, n: int) -> None:
        self.done += n
        if self.call is not None:
            self.call(self.done, self.total)
        elif self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
