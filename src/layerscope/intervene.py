"""Interventions: edit module outputs and watch what the model makes of it.

>>> res = layerscope.intervene(model, x, {"backbone.layer4": layerscope.Ablate([3, 7])},
...                            capture=["classifier"])
>>> res.output, res.baseline, res["classifier"]

The edited forward reuses what the edit cannot change: the modules that finished before the first
edited module started stand in with their outputs from LayerScope's cache for the length of the
run, so an edit at ``backbone.layer4`` of DeepLabV3 runs only the heads and the upsampling. Later
ones (the edited modules, an auxiliary head) stand in while :mod:`layerscope.gate` finds nothing
they read derived from an edit. On an input not seen before, one capture runs the forward until
the edited modules finished, and the edited run does the rest: each layer runs once. The
baseline (the unedited output) is computed when first asked for. The edits are forward hooks.
The model is left as it was found (hooks, its modules' forward methods, train/eval modes, grad
mode), also when an edit raises."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .activations import Activations
from .capture import Capturer, resolve_modules
from .edits import Edit, Patch, apply_edit, edit_call
from .errors import LayerScopeError
from .fingerprint import weights_fingerprint
from .gate import Gated, Taint
from .hooks import Hook, hooked
from .nested import iter_tensors, map_tensors
from .safety import as_args, prepare_inputs, run_model

__all__ = [
    "Intervention",
    "intervene",
    "reusable",
    "reuse_names",
    "run_edited",
    "EditedRun",
]

EditFn = Callable[[int, Any], Any]  # (call index, output) -> edited output, or the output itself


class Intervention(Mapping[str, Any]):
    """``output``: the model's output with the edits; ``res[name]`` / ``captures``: what
    ``capture=`` modules produced under the edits. ``baseline`` / ``baseline_captures``: the
    same without the edits, computed on first access (from the cache when the input was seen
    with these weights; an edit on a new input does not pay for a forward it may never read).
    ``reused``: modules whose cached outputs stood in (they did not run)."""

    def __init__(
        self,
        output: Any,
        captures: Activations,
        reused: list[str],
        baseline: Callable[[], Activations],
    ) -> None:
        self.output, self.captures, self.reused = output, captures, reused
        self._baseline = baseline

    @functools.cached_property
    def baseline_captures(self) -> Activations:
        return self._baseline()

    @property
    def baseline(self) -> Any:
        return self.baseline_captures.output

    def __getitem__(self, name: str) -> Any:
        return self.captures[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.captures)

    def __len__(self) -> int:
        return len(self.captures)

    def __repr__(self) -> str:
        return f"Intervention(captures={list(self.captures)}, reused={self.reused})"


def capture_storage(model: nn.Module) -> str | None:
    on_gpu = any(p.device.type != "cpu" for p in model.parameters())
    return None if on_gpu else "cpu"  # on a GPU, what stands in stays on the GPU


def intervene(
    model: nn.Module,
    inputs: Any,
    edits: Mapping[str, Edit],
    *,
    capture: Iterable[str] = (),
    reuse: bool = True,
) -> Intervention:
    """Run ``model`` on ``inputs`` with module outputs edited.

    ``edits``: module name -> :class:`~layerscope.Ablate`, :class:`~layerscope.Scale`,
    :class:`~layerscope.Patch` or a function ``output -> output`` (several modules at once). A
    reused module is edited on every call unless the edit names a ``call``. ``capture``: modules
    whose outputs to return, taken under the edits. ``reuse``: let the modules that finished
    before the first edit stand in with their cached outputs (the result is the same; False runs
    everything)."""
    if not edits:
        raise LayerScopeError("no edits: pass {module name: Ablate([...]) or another edit}")
    named = dict(model.named_modules())
    edited = resolve_modules(model, list(edits), named)
    wanted = resolve_modules(model, list(capture), named) if capture else []
    cap = Capturer(model, storage=capture_storage(model))
    if cap.known_schedule(inputs) is None:  # the first input of this shape: learn the order
        cap.capture(inputs, ["", *wanted], stop_early=False)
    patches = {
        n: cap.capture(e.other_inputs, [n], stop_early=False).calls(n)
        for n, e in edits.items()
        if isinstance(e, Patch)
    }
    # Frozen now: the baseline, computed later, is of these values even if the caller's change.
    frozen = map_tensors(as_args(inputs), lambda t: t.detach().clone())

    schedule = cap.known_schedule(inputs)
    later = reuse_names(named, schedule, edited)[1] if schedule and reuse else []
    siblings = [n for n in later if n not in edited]

    weights = weights_fingerprint(named)  # the baseline must be of these weights too

    def baseline() -> Activations:
        if weights_fingerprint(named) != weights:
            raise LayerScopeError(
                "the model's weights changed since intervene() ran: its baseline (the unedited "
                "output) is of the weights then; read res.baseline before changing the model, "
                "or call intervene() again"
            )
        if siblings and not cap.holds(frozen, ""):  # a full forward anyway: keep what may
            cap.capture(frozen, ["", *siblings], stop_early=False)  # stand in next time
        acts = cap.capture(frozen, ["", *wanted], stop_early=False)
        if not _full_precision(model, [acts.output, *(acts.calls(n) for n in wanted)]):
            # kept in bfloat16 by the budget: the edited output is not, so compute it afresh
            acts = cap.capture(frozen, ["", *wanted], stop_early=False, cache=False)
        return acts

    def fn(name: str, edit: Edit) -> EditFn:
        only = edit_call(edit)

        def apply(index: int, out: Any) -> Any:
            if only is not None and index != only:
                return out
            patch = patches[name][index] if name in patches and index < len(patches[name]) else None
            return apply_edit(name, edit, out, patch)

        return apply

    functions = {n: fn(n, edits[n]) for n in edited}
    replay, gated = reusable(cap, inputs, edited) if reuse else ({}, {})
    args = prepare_inputs(model, named, as_args(inputs))
    run = run_edited(model, named, args, functions, replay, wanted, gated=gated)
    for name in edited:
        only, times = edit_call(edits[name]), run.edited.get(name, 0)
        if times == 0:
            raise LayerScopeError(
                f"{name} never ran in the model's forward (0 calls): nothing was edited; edit a "
                "module that runs on these inputs"
            )
        if only is not None and only >= times:
            raise LayerScopeError(
                f"{name} ran {times} time(s): no call {only} to edit (calls count from 0)"
            )
    captured = Activations(run.captured, requested=wanted, output=run.output)
    stood_in = [n for n in {**replay, **gated} if n not in run.ran]
    return Intervention(run.output, captured, sorted(stood_in), baseline)


def reusable(
    cap: Capturer, inputs: Any, edited: list[str]
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """What may stand in during an edited forward, as cached outputs: ``prefix``, the modules
    that finished before the first of ``edited`` started (the outermost such modules), and
    ``gated``, the edited modules themselves (the edit acts on their unedited output) and the
    :func:`gated_candidates` after the edit (an auxiliary head) whose outputs are cached
    already. One capture: on an input not seen before it runs the forward only until the last
    of them finished. Empty while the order is not known, and without what the budget kept
    in a lower precision (standing in with it would change the result)."""
    schedule = cap.known_schedule(inputs)
    if schedule is None:
        return {}, {}
    outer, later = reuse_names(dict(cap.model.named_modules()), schedule, edited)
    now = [*outer, *(n for n in later if n in edited or cap.holds(inputs, n))]
    if not now:
        return {}, {}
    acts = cap.capture(inputs, now)
    prefix = {n: acts.calls(n) for n in outer}
    if not all(prefix.values()) or not all(_full_precision(cap.model, c) for c in prefix.values()):
        prefix = {}  # evicted or kept in bfloat16 by the budget: run them instead
    gated = {n: acts.calls(n) for n in now if n not in outer}
    return prefix, {n: c for n, c in gated.items() if c and _full_precision(cap.model, c)}


def reuse_names(
    named: dict[str, nn.Module],
    schedule: tuple[dict[str, int], dict[str, tuple[int, int]]],
    edited: list[str],
) -> tuple[list[str], list[str]]:
    """From a learned schedule (:meth:`Capturer.known_schedule`): the outermost modules that
    finished before the first of ``edited`` started (they may stand in for the whole run), and
    the :func:`gated_candidates` (they may stand in while nothing they read carries an edit)."""
    started, finished = schedule
    first = min(started.get(e, 0) for e in edited)
    done = {m for m, (_, last) in finished.items() if m and last < first}
    outer = [m for m in done if not any(a in done for a in _ancestors(m))]
    return outer, gated_candidates(named, started, edited, set(outer))


def _full_precision(model: nn.Module, calls: list[Any]) -> bool:
    """Whether cached outputs are in the model's own floating dtype (the budget may have kept
    them in bfloat16: standing in with those would change the result)."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    return all(not t.is_floating_point() or dtype is None or t.dtype == dtype
               for t in iter_tensors(calls))  # fmt: skip


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def gated_candidates(
    named: dict[str, nn.Module], started: dict[str, int], edited: list[str], prefix: set[str]
) -> list[str]:
    """Modules that may stand in while their inputs carry no edit: the edited modules (their
    unedited output is cached; the edit acts on it) and, along the path to them, the siblings
    that start after the first edit (an auxiliary head reading an earlier stage)."""
    first = min(started.get(e, 0) for e in edited)
    path = {a for e in edited for a in _ancestors(e)} | {""}
    out = [e for e in edited if e not in path]  # one holding another edit runs (it must reach it)
    for name in named:
        parent = name.rpartition(".")[0] if name else None
        if parent is None or parent not in path or name in path or name in prefix:
            continue
        if started.get(name, -1) > first and not any(e.startswith(name + ".") for e in edited):
            out.append(name)
    return list(dict.fromkeys(out))


@dataclass
class EditedRun:
    """What :func:`run_edited` saw: the model's ``output``, the ``captured`` calls of the
    modules asked for, how many times each edited module was ``edited`` (called), and which
    gated modules ``ran`` their own forward instead of standing in."""

    output: Any
    captured: dict[str, list[Any]]
    edited: dict[str, int]
    ran: set[str]


def run_edited(
    model: nn.Module,
    named: dict[str, nn.Module],
    args: tuple[Any, ...],
    edits: Mapping[str, EditFn],
    replay: Mapping[str, list[Any]],
    capture: list[str],
    *,
    gated: Mapping[str, list[Any]] | None = None,
    batch: int = 1,
    grad: bool = False,
) -> EditedRun:
    """One forward with ``edits`` applied (forward hooks) and ``replay`` and ``gated`` modules
    standing in with their cached outputs while those are valid (see
    :class:`~layerscope.gate.Gated`). ``batch`` > 1 runs that many rows (the inputs and what
    stands in are broadcast). Everything installed is removed and the model restored, whatever
    happens."""
    device = next((p.device for p in model.parameters()), None)
    counts: dict[str, int] = {}
    captured: dict[str, list[Any]] = {n: [] for n in capture}
    taint = Taint()
    ran: set[str] = set()

    def edit_hook(name: str, fn: EditFn) -> Hook:
        def hook(_m: nn.Module, _a: Any, out: Any) -> Any:
            index = counts.get(name, 0)
            counts[name] = index + 1
            edited = fn(index, out)
            if edited is not out:
                taint.mark(edited)  # what follows from here may differ from the cache
            return edited

        return hook

    def keep(name: str) -> Hook:
        def hook(_m: nn.Module, _a: Any, out: Any) -> None:
            captured[name].append(map_tensors(out, lambda t: t.detach().to("cpu", copy=True)))

        return hook

    if batch > 1:
        args = map_tensors(args, lambda t: t.expand(batch, *t.shape[1:]) if t.shape[0] == 1 else t)
    modules = list(named.values())
    stand_ins = {
        name: Gated(calls, device, batch, named[name].forward, taint, ran, name, modules)
        for name, calls in {**replay, **(gated or {})}.items()
    }
    hooks: dict[str, list[Hook]] = {n: [edit_hook(n, f)] for n, f in edits.items()}
    for n in capture:  # what is captured is what the edit made
        hooks.setdefault(n, []).append(keep(n))
    with hooked(model, hooks, replace=stand_ins, train=False, grad=grad, named=named), taint:
        output = run_model(model, args)
    return EditedRun(output, captured, counts, ran)
