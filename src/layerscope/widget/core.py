"""The Explorer's core: a loop over its panels. It orders them from their declared
dependencies (:func:`~layerscope.widget.steps.plan`), runs as steps the panels a change asks
for and every panel after them, publishes what they build (one message per run: the widget's
``hold_sync``), checks each trait with the panel that takes it, shows a refusal or a failure as
that panel's error, and hands front-end messages to the panel that handles them. Panels see it
as their :class:`~layerscope.widget.panels.base.Context`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ..errors import ArgumentError, NotReadyError
from .panels.base import OPTIONS, SCENE, Context, Panel
from .session import Session
from .spec import for_browser
from .steps import Steps, plan
from .viewstate import ViewState

__all__ = ["Core"]


class Core(Context):
    """The panels of one widget (``panels``: instances, by name), run as steps."""

    def __init__(self, widget: Any, session: Session, panels: dict[str, Panel], **kw: Any) -> None:
        super().__init__(widget, session, panels, **kw)
        order, after = plan({p.name: p.after for p in panels.values()})
        if SCENE not in order:
            raise ArgumentError(f"panels=: the {SCENE!r} panel is needed (the image shown)")
        self.steps = Steps(order, after, run=self.build, clear=self.clear,
                           show=lambda text: setattr(widget, "_error", text),
                           interrupted=lambda: self.status({"state": "idle"}),
                           batch=self.batch)  # fmt: skip
        self.shown = {v: p for p in panels.values() for v in p.shown}
        self._unfit: set[str] = set()  # views whose figure raised (their panel's error)
        self._checks = {n: p for p in reversed(panels.values()) for n in p.validates}
        widget._register_validator(self.check, tuple(self._checks))  # traitlets' dynamic @validate
        widget.on_msg(self.message)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """A run: its payloads and the views drawn from them go out as one message."""
        with self._widget.hold_sync():
            yield
            self.publish_views()

    def publish_views(self, now: bool = False) -> None:
        """Every shown view's spec as drawn from the view-state, in its trait (those that did
        not change are not sent); an empty one hides the view. ``now``: sent at once."""
        for name, panel in self.shown.items():
            try:
                spec = for_browser(panel.figure(self.view, name))
            except NotReadyError:
                spec = {}
                self._fit_again(name, panel)
            except Exception as exc:  # a view that cannot be drawn is its panel's error
                self.steps.report(panel.name, exc)
                self._unfit.add(name)
                spec = {}
            else:
                self._fit_again(name, panel)
            if now:
                self.now(f"_view_{name}", spec)
            else:
                setattr(self._widget, f"_view_{name}", spec)

    def publish(self, payloads: dict[str, Any]) -> None:
        """Payloads, and outside a run (a panel's action) the views drawn from them, together."""
        if self.steps.busy:
            super().publish(payloads)
            return
        with self._widget.hold_sync():
            super().publish(payloads)
            self.publish_views()

    def _fit_again(self, name: str, panel: Panel) -> None:
        if name in self._unfit:  # the view draws (or has nothing to draw) again: no error
            self._unfit.discard(name)
            self.steps.succeeded(panel.name)

    def observed(self) -> list[str]:
        """The traits whose change the core acts on."""
        return [*{n: 0 for p in self.panels.values() for n in p.inputs}, *OPTIONS, "_error"]

    def build(self, step: str) -> None:
        panel = self.panels[step]
        payloads = panel.build(self)
        if payloads:
            self.publish(payloads)
        self.steps.skip(*panel.covers)

    def check(self, _owner: Any, proposal: Any) -> Any:
        name = proposal["trait"].name
        return self._checks[name].check(self, name, proposal["value"])

    def changed(self, name: str, value: Any) -> None:
        """A trait changed (a click or a cell): run what it asks for."""
        with self.lock:
            if name == "_error":
                if not value:  # dismissed in the browser
                    self.steps.dismiss()
                return
            if self.quiet:
                return
            if name in OPTIONS:
                self.view = self.view.with_(options=self.options())
                with self._widget.hold_sync():
                    self.publish_views()
            panels = self.panels.values()
            marked = [p.name for p in panels if name in p.inputs and p.changed(self, name, value)]
            if marked:
                self.steps.mark(*marked)
                self.steps.run()

    def refused(self, name: str, message: str) -> None:
        """A value from the browser was refused: the error of the panel that takes it."""
        with self.lock:
            step = next((p.name for p in self.panels.values() if name in p.inputs), name)
            self.steps.fail(step, message, clear=False)

    def message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        with self.lock:
            kind = content.get("kind") if isinstance(content, dict) else None
            for panel in self.panels.values():
                if kind in panel.messages:
                    try:
                        panel.message(self, content)
                    except Exception as exc:  # shown in the widget like any other action's error
                        self.steps.report(panel.name, exc)
                    return

    def exported(self, module: str) -> ViewState:
        """A hooked module's views for the export, each panel adding its payload."""
        view = self.view
        for step in self.steps.order:
            view = self.panels[step].export(self, module, view)
        return view
