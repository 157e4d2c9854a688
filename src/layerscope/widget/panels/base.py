"""What a panel is, and what it sees.

A :class:`Panel` declares what it depends on (other panels, whose output it builds on, and the
traits whose change asks for it again), what it owns (its payload traits: what it writes and
what its failure clears), and how it builds its payloads from the session and the view-state.
It gets a :class:`Context`, never the Explorer: the session, the view-state, the Explorer's
public traits, the outputs panels share, and the few things a panel may ask of the core."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import traitlets as t

from ...capture import resolve_modules
from ...errors import LayerScopeError, NotReadyError
from ..memo import PayloadMemo
from ..schema import StatusPayload
from ..spec import Spec
from ..validation import InvalidTraitError
from ..viewstate import ViewOptions, ViewState

if TYPE_CHECKING:
    from ..session import Session
    from ..steps import Steps

__all__ = ["Context", "Panel", "SCENE", "OPTIONS"]

T = TypeVar("T")
SCENE = "image"  # the panel whose output is the scene: a new image renews every panel after it
OPTIONS = tuple(f.name for f in fields(ViewOptions))  # traits that restyle views: no step


class Panel:
    """One unit of the widget. Subclass it, fill in the declarations, write :meth:`build`, and
    register the class (:func:`layerscope.widget.panels.register`, or ``Explorer(panels=...)``).

    ``name``: the panel's step name (its errors are ``explorer.errors[name]``). ``after``: the
    panels whose output it reads (it runs after them, and again whenever they run).
    ``inputs``: traits whose change asks for it again. ``owns``: its payload traits, each with
    where it lies in the view-state (a ``ViewState`` field, dotted for the scene's, or
    ``"extra.<trait>"``; None: the trait only): what :meth:`build` returns and what a failure
    empties; the Explorer adds a synced trait for each the widget does not have.
    ``covers``: panels whose work a run of this one does too. ``validates``: traits whose
    values :meth:`check` checks.
    ``traits``: traits the panel adds to the widget (payload traits are dicts, synced).
    ``messages``: the ``kind`` of front-end messages :meth:`message` handles.
    ``views``: the views :meth:`figure` draws (``explorer.figure(name)``, the export);
    ``shown``: those the widget shows, each sent as trait ``_view_<name>`` and drawn by the
    browser as given (a view with no front-end module of its own gets a plot of its own)."""

    name: ClassVar[str] = ""
    after: ClassVar[tuple[str, ...]] = ()
    inputs: ClassVar[tuple[str, ...]] = ()
    owns: ClassVar[dict[str, str | None]] = {}
    covers: ClassVar[tuple[str, ...]] = ()
    validates: ClassVar[tuple[str, ...]] = ()
    traits: ClassVar[dict[str, t.TraitType[Any, Any]]] = {}
    messages: ClassVar[tuple[str, ...]] = ()
    views: ClassVar[tuple[str, ...]] = ()
    shown: ClassVar[tuple[str, ...]] = ()

    def build(self, ctx: Context) -> dict[str, Any] | None:
        """Compute this panel's payloads (owned trait -> payload, None for none); what is
        returned is published. Raise to show an error: the panel's views (and those after it)
        are emptied."""
        return None

    def check(self, ctx: Context, name: str, value: Any) -> Any:
        """The value to keep for trait ``name`` (one of ``validates``), or raise
        :class:`~layerscope.widget.validation.InvalidTraitError` saying what is allowed."""
        return value

    def changed(self, ctx: Context, name: str, value: Any) -> bool:
        """An input changed: False when there is nothing to do (an empty upload)."""
        return True

    def new_image(self) -> None:
        """Another image is shown: forget what belonged to the one before."""

    def message(self, ctx: Context, content: dict[str, Any]) -> None:
        """A message from the front end, its ``kind`` one of ``messages``."""

    def figure(self, view: ViewState, name: str) -> Spec:
        """View ``name`` (one of ``views``) of ``view`` as a figure spec
        (:mod:`~layerscope.widget.spec`): plain data, the one definition the widget, the
        figure and the export draw. Raise :class:`~layerscope.errors.NotReadyError` when
        ``view`` has nothing for it."""
        raise NotReadyError(f"the {self.name} panel draws no view {name!r}")

    def export(self, ctx: Context, module: str, view: ViewState) -> ViewState:
        """``view`` with this panel's payload for hooked ``module`` (not the selected one), for
        ``to_html``."""
        return view


def with_path(view: ViewState, path: str, value: Any) -> ViewState:
    """``view`` with the field at ``path`` ("layer", "scene.class_score",
    "extra.<trait>" for a panel's own payload) set to ``value``."""
    head, _, rest = path.partition(".")
    if head == "extra":  # a payload of a panel the view-state has no field for
        return replace(view, extra={**view.extra, rest: value})
    if rest:
        return replace(view, **{head: replace(getattr(view, head), **{rest: value})})
    return replace(view, **{head: value})


class Context:
    """What a panel sees and may do. Reading ``ctx.selected_module`` (any public trait) reads
    the widget's; ``ctx.view`` is the view-state shown; ``ctx.outputs[panel]`` holds what a
    panel shares with the panels after it (emptied with its views)."""

    def __init__(
        self,
        widget: t.HasTraits,
        session: Session,
        panels: dict[str, Panel],
        *,
        title: str,
        notice: str,
        modules: dict[str, Any],
        topk: int,
        bins: int,
    ) -> None:
        self._widget: Any = widget
        self.session, self.panels = session, panels
        self.title, self.notice, self.modules = title, notice, modules
        self.topk, self.bins = topk, bins
        self.memo = PayloadMemo()  # payloads of outputs the store serves again
        # JupyterLab (4.4 and later) hands a widget's trait changes to a kernel subshell: a
        # thread of its own, running while the main thread runs a cell or a panel's background
        # slice. Whatever runs the model or sets traits holds this, one at a time.
        self.lock = threading.RLock()
        self.outputs: dict[str, Any] = {}
        self.view: ViewState
        self.shown_name = ""
        self.quiet = False  # set while the core sets traits that follow from what it did
        self.steps: Steps  # the core's
        self._paths = {k: v for p in panels.values() for k, v in p.owns.items()}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or not self._widget.has_trait(name):
            raise AttributeError(f"a panel's context has no {name!r}")
        return getattr(self._widget, name)

    # -- what a panel may do ---------------------------------------------------------------------

    def publish(self, payloads: dict[str, Any]) -> None:
        """Show payloads: in the view-state and the traits alike (sent with the run's others)."""
        for trait, value in payloads.items():
            if trait not in self._paths:
                raise LayerScopeError(f"{trait} is no panel's payload: declare it in owns")
            path = self._paths[trait]
            if path:
                self.view = with_path(self.view, path, value)
            setattr(self._widget, trait, dict(value or {}))

    def pending(self, step: str, payloads: dict[str, Any]) -> None:
        """Placeholders, sent at once (a capture is coming), and no views of the panels after
        ``step`` meanwhile: none shows data of the output before."""
        stale = {k: None for s in self.steps.after[step] for k in self.panels[s].owns}
        for trait, value in {**stale, **payloads}.items():
            path = self._paths[trait]
            if path:
                self.view = with_path(self.view, path, value)
            self.now(trait, dict(value or {}))
        self.publish_views(now=True)

    def publish_views(self, now: bool = False) -> None:
        """The core's: the shown views drawn from the view-state."""

    def set(self, **values: Any) -> None:
        """Set public traits as a click would (what depends on them runs)."""
        for name, value in values.items():
            setattr(self._widget, name, value)

    def quietly(self, **values: Any) -> None:
        """Set traits that follow from what a panel did, without asking for any step again."""
        with self.hush():
            self.set(**values)

    @contextlib.contextmanager
    def hush(self) -> Iterator[None]:
        was, self.quiet = self.quiet, True
        try:
            yield
        finally:
            self.quiet = was

    def mark(self, *steps: str) -> None:
        self.steps.mark(*steps)

    def run(self) -> None:
        self.steps.run()

    def hook(self, name: str) -> None:
        self.set(hooked_modules=list(dict.fromkeys([*self._widget.hooked_modules, name])))

    def known(self, names: list[str]) -> list[str]:
        """Module names resolved, or the refusal a trait shows (with close matches)."""
        try:
            return resolve_modules(self.session.model, names, self.modules) if names else []
        except LayerScopeError as exc:
            raise InvalidTraitError(str(exc)) from None

    def over_images(
        self, run: Callable[..., T], images: Any, modules: list[str] | None,
        options: dict[str, Any], label: str, verb: str,
    ) -> T:  # fmt: skip
        """``run(model, images, modules, **options)`` (a sweep, a dissection) for the widget's
        model: the hooked modules unless ``modules``, the Explorer's preprocessing unless
        ``options`` gives one, progress in the header unless ``options`` asks otherwise."""
        names = list(modules or self.hooked_modules)
        if not names:
            raise NotReadyError(f"no module to {verb}: hook one first, or pass modules=[...]")
        options.setdefault("preprocess", self.session.preprocess)
        if "progress" not in options:

            def progress(done: int, total: int) -> None:
                self.status({"state": "running", "done": done, "total": total,
                             "unit": "images", "label": label})  # fmt: skip

            options["progress"] = progress
        try:
            return run(self.session.model, images, names, **options)
        finally:
            self.status({"state": "idle"})

    def status(self, status: StatusPayload) -> None:
        self.now("_status", status)

    def now(self, trait: str, value: Any) -> None:
        """Set a trait and send it at once, also while a run's changes are held back to go out
        as one message (progress, a placeholder while a capture runs)."""
        w = self._widget
        setattr(w, trait, value)
        if w._holding_sync:
            w.send_state(trait)
            w._states_to_send.discard(trait)

    def options(self) -> ViewOptions:
        w = self._widget
        return ViewOptions(w.aggregate, w.colorscale, w.overlay, w.overlay_opacity,
                           tuple(w.gradcam_region))  # fmt: skip

    def show_image(self, image: Any, name: str) -> None:
        """Show another image: its scene, every panel after it emptied and marked to run."""
        s, w = self.session, self._widget
        before = (s.prepared, s.inputs) if hasattr(s, "inputs") else None
        s.set_image(image)
        try:
            tree = s.first_run()
        except BaseException:  # the image shown stays, and the model's input with it
            if before is not None:
                s.prepared, s.inputs = before
            raise
        scene = s.scene(self.title, self.notice)
        self.view = ViewState(scene, self.options())
        renewed = (SCENE, *self.steps.after[SCENE])
        with w.hold_sync(), self.hush():
            w._tree, w._image, w._geometry = tree, dict(scene.image), dict(scene.geometry)
            w._segmentation = dict(scene.segmentation or {})
            w._prediction = dict(scene.prediction or {})
            for step in renewed:
                self.clear(step)
                self.panels[step].new_image()
            w.image_name = self.shown_name = name
            self.publish_views()  # the new photo with its own (still empty) views, together
        self.steps.mark(*self.steps.after[SCENE])

    def clear(self, step: str) -> None:
        """Empty a panel's payloads, in the traits and in the view-state alike."""
        for trait, path in self.panels[step].owns.items():
            setattr(self._widget, trait, {})
            if path:
                self.view = with_path(self.view, path, None)
        self.outputs.pop(step, None)
