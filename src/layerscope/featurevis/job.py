"""A feature visualization in steps (:class:`Job`), and the per-model cache of finished ones.

The optimization's state lives in a :class:`_Run`: the image's parameters, Adam's moments, the
random streams, so a run split into any slices gives the same images as one run. The model is
hooked and its weights' ``requires_grad`` turned off only inside :meth:`Job.advance`; between
slices other work may use the model. A result is cached only when its run finished on the
weights it started on (a run the weights changed under is refused, not cached)."""

from __future__ import annotations

import random
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import nn

from ..errors import LayerScopeError
from ..fingerprint import architecture_id, weights_fingerprint
from ..hooks import hooked
from ..nested import first_tensor
from ..preprocess import Preprocess
from .param import ImageParam
from .result import FeatureVis
from .transforms import Compose

__all__ = ["Job", "weights_key", "cached"]

Entry = tuple[torch.Tensor, torch.Tensor]  # (3, size, size) image, (steps,) trace
_CACHE: weakref.WeakKeyDictionary[nn.Module, OrderedDict[Hashable, Entry]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_SIZE = 64  # images per model (3 x 224 x 224 floats each: about 0.6 MB)


class _Reached(BaseException):
    """Raised by the hook once the module's call has run: nothing after it needs to."""


def weights_key(named: dict[str, nn.Module]) -> Hashable:
    """The model's weights by their values and its structure: what a result holds for."""
    return weights_fingerprint(named), architecture_id(named)


def cached(model: nn.Module, key: Hashable) -> Entry | None:
    found = _CACHE.get(model)
    return None if found is None else found.get(key)


class Job:
    """A visualization under way (see :func:`~layerscope.featurevis.start`)."""

    def __init__(
        self,
        model: nn.Module,
        name: str,
        chans: list[int],
        keys: dict[int, Hashable],
        weights: Hashable,
        run: _Run | None,
        call: int = 0,
    ) -> None:
        self.module, self.channels, self._model, self._call = name, chans, model, call
        self._keys, self._weights, self._run = keys, weights, run
        # What the cache held at the start, kept: later runs may push it out of the cache.
        self._found = {c: e for c in chans if (e := cached(model, keys[c])) is not None}
        self.steps = run.steps if run else 0

    @property
    def call(self) -> int:
        return self._call

    @property
    def weights(self) -> Hashable:
        """The weights (:func:`weights_key`) it runs for."""
        return self._weights

    @property
    def step(self) -> int:
        return self._run.step if self._run else self.steps

    @property
    def done(self) -> bool:
        return self._run is None or self._run.step >= self._run.steps

    def advance(self, n: int = 1) -> None:
        """Run up to ``n`` more steps."""
        if self._run is not None:
            self._run.advance(n)

    def _entry(self, channel: int) -> Entry | None:
        if channel not in self._keys:
            raise LayerScopeError(f"channel {channel} is not one of this job's {self.channels}")
        if self._run is not None and channel in self._run.channels:
            return None
        return self._found[channel]

    def image(self, channel: int) -> torch.Tensor:
        """(3, size, size) in [0, 1]: ``channel``'s image as it stands (final once done)."""
        found = self._entry(channel)
        if found is not None:
            return found[0]
        assert self._run is not None
        return self._run.image()[self._run.channels.index(channel)]

    def trace(self, channel: int) -> torch.Tensor:
        """The objective at each step so far, for ``channel``."""
        found = self._entry(channel)
        if found is not None:
            return found[1]
        assert self._run is not None
        return self._run.trace[: self._run.step, self._run.channels.index(channel)]

    def result(self) -> FeatureVis:
        """The visualization, once done; cached (a stopped run leaves nothing)."""
        if not self.done:
            raise LayerScopeError(f"the visualization is at step {self.step} of {self.steps}")
        run = self._run
        if run is not None:
            if weights_key(run.named) != self._weights:
                raise LayerScopeError(
                    "the model's weights changed while its units were being visualized: the "
                    "image answers neither the old weights nor the new; run it again"
                )
            cache = _CACHE.setdefault(self._model, OrderedDict())
            tensor = run.image()
            for i, c in enumerate(run.channels):
                self._found[c] = cache[self._keys[c]] = (tensor[i], run.trace[:, i].clone())
                while len(cache) > _CACHE_SIZE:
                    cache.popitem(last=False)
            self._run = None
        for c in self.channels:
            if self._keys[c] in _CACHE.get(self._model, {}):
                _CACHE[self._model].move_to_end(self._keys[c])
        images = torch.stack([self._found[c][0] for c in self.channels])
        traces = torch.stack([self._found[c][1] for c in self.channels], dim=1)
        return FeatureVis(self.module, self.channels, images, traces)


class _Run:
    """The optimization's state: the image's parameters, Adam's, the random streams."""

    def __init__(
        self,
        model: nn.Module,
        named: dict[str, nn.Module],
        name: str,
        call: int,
        chans: list[int],
        size: int,
        steps: int,
        param: str,
        decorrelate: bool,
        tf: Compose | None,
        value: Callable[[torch.Tensor], torch.Tensor],
        lr: float,
        seed: int,
        pre: Preprocess,
        dev: torch.device,
    ) -> None:
        self.model, self.named, self.name, self.call = model, named, name, call
        self.channels, self.steps, self.step, self.tf, self.value = chans, steps, 0, tf, value
        gen = torch.Generator().manual_seed(seed)
        self.rng = random.Random(seed)
        self.param = ImageParam(len(chans), size, size, param, decorrelate=decorrelate,
                                generator=gen).to(dev)  # fmt: skip
        self.mean = torch.tensor(pre.mean, device=dev).view(1, 3, 1, 1)
        self.std = torch.tensor(pre.std, device=dev).view(1, 3, 1, 1)
        self.opt = torch.optim.Adam(self.param.parameters(), lr=lr)
        self.trace = torch.empty(steps, len(chans))

    def image(self) -> torch.Tensor:
        with torch.no_grad():
            return self.param().detach().cpu()

    def advance(self, n: int) -> None:
        name, call, reached, seen = self.name, self.call, [], [0]

        def stop(_m: nn.Module, _a: Any, out: Any) -> None:
            seen[0] += 1
            if seen[0] <= call:  # an earlier call of a module run several times
                return
            t = first_tensor(out)
            if t is None:
                raise LayerScopeError(f"{name} gives no tensor to optimize for")
            reached.append(t)
            raise _Reached

        grads = [(p, p.requires_grad) for p in self.model.parameters()]
        try:
            for p, _ in grads:  # no gradient for the weights: only the image learns
                p.requires_grad_(False)
            with hooked(self.model, {name: stop}, named=self.named, train=False, grad=True):
                for _ in range(min(n, self.steps - self.step)):
                    self._step(reached, seen)
        finally:
            for p, flag in grads:
                p.requires_grad_(flag)

    def _step(self, reached: list[torch.Tensor], seen: list[int]) -> None:
        x = self.param()
        x = self.tf(x, self.rng) if self.tf is not None else x
        reached.clear()
        seen[0] = 0
        try:
            self.model((x - self.mean) / self.std)
        except _Reached:
            pass
        if not reached:
            calls = f"call {self.call} of " if self.call else ""
            raise LayerScopeError(f"{calls}{self.name} did not run in the model's forward")
        values = self.value(reached[0])
        if values.shape != (len(self.channels),):
            raise LayerScopeError(
                f"the objective gave {tuple(values.shape)}: one value per channel "
                f"({len(self.channels)},) is needed"
            )
        self.opt.zero_grad()
        (-values.sum()).backward()
        self.opt.step()
        self.trace[self.step] = values.detach().float().cpu()
        self.step += 1
