"""What the Explorer computes from: one model, its preprocessing and the image shown. No traits
and no widget: the Explorer observes clicks and publishes view-states; the session captures,
traces and reduces.

Memory: the session holds no captured output of its own. Outputs live in the model's store
(:class:`~layerscope.Capturer`, under its budget), Grad-CAM results too; what the session keeps
is small (the prepared image, the class probabilities pooled to at most 128 x 128)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypedDict

import numpy as np
import torch
from torch import nn

from ..activations import Activations
from ..capture import Capturer
from ..edits import Ablate
from ..errors import LayerScopeError
from ..gradients import GradCam
from ..graph import FlowRecorder, Recording
from ..importance import ChannelImportance, channel_importance, exact_drops
from ..intervene import intervene, reuse_names
from ..models import torchvision_class_names
from ..nested import first_tensor
from ..outputs import class_output
from ..preprocess import PreparedImage, Preprocess, prepare_image
from ..receptive import ReceptiveField, remember_fields
from ..reduce import pool_factor, pool_mean
from ..spatial import Layout
from ..tracer import ForwardTracer
from ..tree import module_tree
from . import gradcam_pass
from .edit_payload import ablation_payload, importance_payload
from .payload import (
    MAP_SIDE,
    class_label,
    class_score_payload,
    image_payload,
    segmentation_payload,
    vector_payload,
)
from .schema import (
    AblationPayload,
    ClassScorePayload,
    ImportancePayload,
    PredictionPayload,
    SegmentationPayload,
    StatusPayload,
    TreeNode,
)
from .viewstate import Scene

__all__ = ["Session"]

Status = Callable[[StatusPayload], None]


class Progress(TypedDict, total=False):
    """What a running status says of its progress."""

    done: int
    total: int | None


EXACT_TOP = 16  # channels whose drop the importance view measures exactly (each a partial forward)


def _float_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.float32, torch.device("cpu")


class Session:
    """A model with its preprocessing, class names and the prepared image."""

    def __init__(
        self,
        model: nn.Module,
        preprocess: Preprocess | Callable[[Any], Any],
        class_names: list[str],
        *,
        memory_budget: int | None,
        layouts: dict[str, str],
        status: Status,
    ) -> None:
        self.model = model
        self.preprocess = preprocess
        self.class_names = list(class_names)
        self.named = dict(model.named_modules())
        self.dtype, self.device = _float_dtype_device(model)
        # On a GPU, captures stay on the device and only the reduced payloads reach the CPU.
        self.capturer = Capturer(
            model,
            memory_budget=memory_budget,
            storage=None if self.device.type != "cpu" else "cpu",
        )
        self.given_layouts = dict(layouts)
        self.status = status
        self.fields: dict[str, ReceptiveField] = {}
        self.layouts: dict[str, Layout] = {}
        self.class_kind: str | None = None  # "segmentation", "classification" or None
        self.score_size: tuple[int, int] | None = None  # the class map's (h, w): regions lie on it
        self.prediction: PredictionPayload | None = None
        self.probs: torch.Tensor | None = None  # (K, h, w) pooled, or (K,)
        self.segmentation: SegmentationPayload | None = None
        self._traced: dict[tuple[int, ...], tuple[dict[str, Any], dict[str, Any]]] = {}
        self.flows: dict[tuple[int, ...], Recording] = {}  # the first forward's, per input shape
        self._last_progress = 0.0
        self._prefetched: dict[str, list[Any]] = {}

    # -- the image -----------------------------------------------------------------------------

    def set_image(self, image: Any) -> None:
        self.prepared: PreparedImage = prepare_image(image, self.preprocess)
        # The Explorer prepares the image, so it fits the model: its device and float dtype
        # (a bfloat16 model gets a bfloat16 input); views are computed in float32.
        self.inputs = self.prepared.tensor.to(device=self.device, dtype=self.dtype)
        self._prefetched = {}  # the outputs of the image before

    def first_run(self) -> list[TreeNode]:
        """One complete forward: learns the execution order and every output's shape, traces
        receptive fields and layouts, reads the classes off the output. Returns the tree."""
        shape = tuple(self.inputs.shape)
        # The first forward on a shape must run (not come from the cache) to be traced.
        with (
            ForwardTracer(self.model, self.inputs) as tracer,
            FlowRecorder(self.model, self.inputs) as flow,
        ):  # the same forward: how data flows, for the graph view
            acts = self.capture(
                [""], "first forward", stop_early=False, cache=shape in self._traced
            )
        recording = flow.finish()
        if recording is not None:
            self.flows[shape] = recording
        if tracer.layouts or tracer.fields:  # a cached output runs no forward: keep what ran
            self._traced[shape] = (tracer.fields, tracer.layouts)
            remember_fields(self.model, self.inputs, tracer.fields)  # receptive_fields() too
        self.fields, self.layouts = self._traced.get(shape, ({}, {}))
        # Classes are read off the output only when their names are known (presets, a Hugging
        # Face config, class_names=, or a torchvision model passed as itself): a custom model's
        # 4-D output is not taken for a mask.
        known = len(self.class_names)
        classes = class_output(acts.output, known or None)
        if not known and classes is not None:
            names = torchvision_class_names(self.model, classes.classes)
            classes = classes if names else None
            self.class_names = names or []
        del acts  # the model's raw output is not kept: only what the views need, below
        self.class_kind = classes.kind if classes is not None else None
        self.probs, self.segmentation, self.prediction = None, None, None
        if classes is not None and classes.kind == "segmentation":
            self.score_size = (classes.scores.shape[-2], classes.scores.shape[-1])
            probs = classes.probabilities(self.prepared.geometry.input_size)
            image = self.prepared.image
            self.segmentation = segmentation_payload(
                probs, (image.height, image.width), self.class_names
            )
            h, w = probs.shape[-2:]
            self.probs = pool_mean(probs, pool_factor(h, w, MAP_SIDE))
            del probs
        elif classes is not None:
            self.probs = classes.probabilities()
            self.prediction = vector_payload(classes.scores[0], 5, self.class_names)
        return module_tree(
            self.model,
            call_counts=self.capturer.known_call_counts(self.inputs),
            shapes=self.capturer.known_shapes(self.inputs),
            receptive=self.fields,
        )

    def scene(self, title: str, notice: str) -> Scene:
        return Scene(
            title,
            notice,
            image_payload(self.prepared.image),
            self.prepared.geometry.to_json(),
            segmentation=self.segmentation,
            prediction=self.prediction,
        )

    def default_class(self, selected: int) -> int:
        """The class a view starts with: the one picked, else the largest predicted
        non-background class (segmentation) or the top prediction (classification)."""
        if selected >= 0:
            return selected
        if self.segmentation is not None:
            present = [e["index"] for e in self.segmentation["legend"] if e["index"] != 0]
            return present[0] if present else 0
        if self.class_kind == "classification" and self.probs is not None:
            return int(self.probs.argmax())
        raise LayerScopeError(
            "no class to explain: LayerScope found no class scores in this model's output; if "
            "it has them ((N, K, H, W) or (N, K), or a dict's 'out'), pass class_names=[...] "
            "with K names to the Explorer"
        )

    def class_score(self, cls: int) -> ClassScorePayload | None:
        if self.class_kind != "segmentation" or self.probs is None:
            return None
        return class_score_payload(self.probs, cls, self.class_names)

    # -- captures ------------------------------------------------------------------------------

    def capture(
        self, names: list[str], label: str, stop_early: bool = True, cache: bool = True
    ) -> Activations:
        with self.busy(label, {"done": 0, "total": None}):
            return self.capturer.capture(
                self.inputs, names, progress=self._progress, stop_early=stop_early, cache=cache
            )

    @contextlib.contextmanager
    def busy(self, label: str, progress: Progress | None = None) -> Iterator[None]:
        """Running, in the widget's status, while inside; then idle with the seconds it took."""
        self.status({"state": "running", **(progress or {}), "label": label})
        start = time.perf_counter()
        try:
            yield
        finally:
            self.status({"state": "idle", "seconds": round(time.perf_counter() - start, 4)})

    def _progress(self, done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - self._last_progress > 0.1:  # a few updates a second is enough for a bar
            self._last_progress = now
            self.status({"state": "running", "done": done, "total": total})

    def calls(self, name: str) -> list[Any]:
        """Every call's output of one module: prefetched, else from the cache, else one
        early-stopped capture of that module alone."""
        fresh = self._prefetched.pop(name, None)
        return fresh if fresh is not None else self.calls_of([name])[name]

    def prefetch(self, names: list[str], stand_ins: bool = False) -> None:
        """Capture several modules together (one forward at most, progress shown) and keep
        their outputs until :meth:`calls` takes them or :meth:`drop_prefetched`: modules hooked
        at once are captured at once, whichever of them is shown next. ``stand_ins``: also keep
        (in the store) the outputs of the modules that finish before them, in the same forward,
        for a pass that then runs only what follows (Grad-CAM under the overlay)."""
        if not names:
            self._prefetched = {}
            return
        before = self._stand_ins(names) if stand_ins else []
        got = self.calls_of([*names, *(n for n in before if n not in names)], strict=False)
        self._prefetched = {n: c for n, c in got.items() if n in names}

    def _stand_ins(self, names: list[str]) -> list[str]:
        """The outermost modules that finish before the first of ``names`` starts (none while
        the forward's order is not known)."""
        schedule = self.capturer.known_schedule(self.inputs)
        if schedule is None:
            return []
        return reuse_names(dict(self.model.named_modules()), schedule, names)[0]

    def drop_prefetched(self) -> None:
        """Hold nothing past a click but what the store keeps under its budget."""
        self._prefetched = {}

    def ready(self, name: str) -> bool:
        """Whether ``name``'s output is at hand (prefetched or in the store): no capture."""
        return name in self._prefetched or self.holds(name)

    def calls_of(self, names: list[str], strict: bool = True) -> dict[str, list[Any]]:
        """Every call's output of several modules, from one capture (one forward at most).
        Modules the budget could not keep raise, or with ``strict=False`` are left out."""
        acts = self.capture(names, ", ".join(names))
        memory = acts.memory
        lost = [n for n in names if memory is not None and n in memory.evicted]
        if lost and strict and memory is not None:
            raise LayerScopeError(
                f"{', '.join(lost)}: the output does not fit in the memory budget "
                f"({memory.budget_bytes:,} bytes) even in bfloat16: raise memory_budget"
            )
        return {n: acts.calls(n) for n in names if n not in lost}

    def holds(self, name: str) -> bool:
        """Whether the store still holds ``name``'s output for this image (a cached capture)."""
        return self.capturer.holds(self.inputs, name)

    def layout(self, name: str, output: Any) -> Layout | None:
        """Where an output's channels and grid are: as the user said, else as traced."""
        given = self.given_layouts.get(name)
        if given is not None:
            t = first_tensor(output)
            if t is None:
                raise LayerScopeError(f"layouts[{name!r}]: {name} has no tensor output")
            return Layout.given(given, tuple(t.shape))
        return self.layouts.get(name)

    def region_mask(self, region: list[float] | None) -> torch.Tensor | None:
        """An image-pixel box as a mask over the class map (Grad-CAM's target region)."""
        if not region:
            return None
        if self.class_kind != "segmentation" or self.score_size is None:
            raise LayerScopeError("a region needs a segmentation output")
        y0, x0, y1, x1 = region
        return self.prepared.geometry.region_mask((y0, x0, y1, x1), self.score_size)

    # -- interventions -------------------------------------------------------------------------

    def ablate(self, ablations: dict[str, list[int]]) -> AblationPayload:
        """The prediction with ``ablations`` (module -> channels set to zero) beside the
        model's own, as a payload."""
        if self.class_kind is None:
            raise LayerScopeError(
                "ablations show their effect on class scores: this model has none"
            )
        edits = {m: Ablate(list(chs)) for m, chs in ablations.items() if chs}
        res = intervene(self.model, self.inputs, edits)
        k = len(self.class_names)
        before, after = class_output(res.baseline, k), class_output(res.output, k)
        if before is None or after is None:
            raise LayerScopeError("the edited output has no class scores to compare")
        size = self.prepared.geometry.input_size
        if self.class_kind == "segmentation":
            b, a = before.probabilities(size).argmax(0), after.probabilities(size).argmax(0)
        else:
            b, a = before.scores[0].float(), after.scores[0].float()
        image = self.prepared.image
        return ablation_payload(b, a, (image.height, image.width), self.class_names, ablations)

    def importance(self, name: str, cls: int, call: int) -> ImportancePayload:
        """Channel importance of ``name`` for class ``cls``, as a payload."""
        result = self.channel_importance(name, cls, call)
        label = class_label(self.class_names, cls)
        return importance_payload(result, label, call)

    def channel_importance(self, name: str, cls: int, call: int) -> ChannelImportance:
        """Channel importance of ``name`` for class ``cls`` (exact drops of the top
        ``EXACT_TOP``), kept in the model's store for this image: the view and
        ``explorer.channel_importance()`` share one computation."""
        key: Hashable = ("importance", name, cls, call, EXACT_TOP)
        cached = self.capturer.derived(self.inputs, key)
        if cached is not None:
            estimate, order, channels, drops, score = cached
            exact = dict(zip(channels.tolist(), drops.tolist()))
            return ChannelImportance(
                name, cls, float(score), estimate.numpy(), order.numpy(), exact
            )
        with self.busy(f"channel importance of {name}"):
            result = self._importance_from_gradcam(name, cls, call) or channel_importance(
                self.model, self.inputs, name, cls, exact_top=EXACT_TOP, call=call
            )
        kept = (
            torch.from_numpy(np.array(result.estimate)),
            torch.from_numpy(np.array(result.order)),
            torch.tensor(list(result.exact), dtype=torch.int64),
            torch.tensor(list(result.exact.values()), dtype=torch.float64),
            torch.tensor(result.score, dtype=torch.float64),
        )
        self.capturer.keep_derived(self.inputs, key, kept)
        return result

    def _importance_from_gradcam(self, name: str, cls: int, call: int) -> ChannelImportance | None:
        """The importance of ``name`` from the Grad-CAM pass the views already made for this
        image and class (its gradient at the module, the capture's activation: the estimate
        is their product summed over positions, the same class score), then only the exact
        drops run. None when that pass or the outputs are not in the store, or for a module
        whose maps are not its (N, C, H, W) output as it is."""
        cached = self.capturer.derived(self.inputs, ("gradcam", cls, ()))
        layout = self.layouts.get(name)
        as_is = layout is None or (layout.channels, layout.rows, layout.cols) == (1, 2, 3)
        if call != 0 or not cached or name not in cached or not as_is:
            return None
        if not self.capturer.holds(self.inputs, name):
            return None
        acts = self.capturer.capture(self.inputs, [name])  # from the cache
        out, (_, gradient, extra, kept) = first_tensor(acts.calls(name)[0]), cached[name]
        if out is None or out.dim() != 4 or tuple(out.shape[1:]) != tuple(gradient.shape):
            return None
        a, g = out[0].float(), gradient.to(out.device).float()
        estimate = (a * g).reshape(a.shape[0], -1).sum(1).cpu().numpy()
        order = np.argsort(-estimate, kind="stable")
        mask = kept if kept.numel() else None  # the pixels Grad-CAM's score summed over
        score = float(extra[0])
        top = [int(c) for c in order[:EXACT_TOP]]
        exact = exact_drops(self.model, self.inputs, name, cls, top, score=score, mask=mask)
        return ChannelImportance(name, cls, score, estimate, order, exact)

    # -- Grad-CAM ------------------------------------------------------------------------------

    def grad_cams(
        self, modules: list[str], cls: int, region: list[float] | None
    ) -> dict[str, GradCam]:
        """Grad-CAM at every module in ``modules`` (:func:`.gradcam_pass.grad_cams`), kept in
        the model's store for this image, class and region."""
        return gradcam_pass.grad_cams(self, modules, cls, region)
