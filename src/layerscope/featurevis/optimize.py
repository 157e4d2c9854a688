"""Feature visualization: optimize an input image until a unit of the model answers strongly.

Several channels run as one batch (row n optimizes ``channels[n]``); the forward stops at the
module (nothing after it runs); only the image's parameters are optimized (Adam), the model's
weights do not move and get no gradient, and the model is left as it was found (hooks, modes,
``requires_grad``, weights bit-identical). Results are cached per model by (weights, module,
channel, settings), a few dozen at most."""

from __future__ import annotations

import random
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image
from torch import nn

from ..capture import resolve_modules
from ..errors import ArgumentError, LayerScopeError
from ..fingerprint import architecture_id, weights_fingerprint
from ..hooks import hooked
from ..nested import first_tensor
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .param import ImageParam
from .transforms import Compose, standard

__all__ = ["FeatureVis", "visualize"]

Objective = str | Callable[[torch.Tensor], torch.Tensor]
_CACHE: weakref.WeakKeyDictionary[nn.Module, OrderedDict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)
_CACHE_SIZE = 64  # images per model (3 x 224 x 224 floats each: about 0.6 MB)


class _Reached(BaseException):
    """Raised by the hook once the module has run: nothing after it needs to."""


@dataclass(frozen=True)
class FeatureVis:
    """``tensor``: (N, 3, size, size) in [0, 1], one per channel; ``images``: the same as PIL
    images; ``trace``: (steps, N) the objective at each step (under that step's transforms)."""

    module: str
    channels: list[int]
    tensor: torch.Tensor
    trace: torch.Tensor

    @property
    def images(self) -> list[Image.Image]:
        arr = (self.tensor.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(a) for a in arr]

    def montage(self, cols: int | None = None, gap: int = 2) -> Image.Image:
        """The images in a grid, left to right, then down."""
        images = self.images
        cols = cols or min(len(images), 8)
        rows = -(-len(images) // cols)
        h, w = images[0].height, images[0].width
        sheet = Image.new("RGB", (cols * (w + gap) - gap, rows * (h + gap) - gap), "white")
        for i, im in enumerate(images):
            r, c = divmod(i, cols)
            sheet.paste(im, (c * (w + gap), r * (h + gap)))
        return sheet


def _objective(objective: Objective, channels: list[int], name: str) -> Callable[..., Any]:
    """(module output) -> (N,) value per row, row n for ``channels[n]``."""
    if callable(objective):
        return objective
    if objective not in ("channel", "neuron"):
        raise ArgumentError(
            f"objective must be 'channel', 'neuron' or a function of the module's output, "
            f"got {objective!r}"
        )
    index = torch.tensor(channels)

    def value(out: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(out.shape[0])
        if out.dim() == 2:  # (N, C): the unit is the channel
            return out[rows, index]
        if out.dim() != 4:
            raise LayerScopeError(
                f"{name} gives {tuple(out.shape)}: 'channel' and 'neuron' need (N, C, H, W) or "
                "(N, C); pass objective= a function of the output"
            )
        maps = out[rows, index]  # (N, H, W)
        if objective == "channel":
            return maps.mean((1, 2))
        h, w = maps.shape[-2:]
        return maps[:, h // 2, w // 2]

    return value


def visualize(
    model: nn.Module,
    module: str,
    channels: int | Sequence[int],
    *,
    size: int = 224,
    steps: int = 256,
    param: str = "fft",
    decorrelate: bool = True,
    transforms: str | Compose | None = "standard",
    objective: Objective = "channel",
    lr: float = 0.05,
    seed: int = 0,
    preprocess: Preprocess | None = None,
    device: str | torch.device | None = None,
    progress: bool | Callable[[int, int], None] = True,
) -> FeatureVis:
    """Optimize one image per channel of ``module`` to maximize ``objective`` (the channel's
    mean, ``"neuron"``: its centre unit, or a function of the module's output returning one
    value per row). ``param``: ``"fft"``, ``"maco"`` or ``"pixel"`` (see
    :mod:`layerscope.featurevis.param`); ``transforms``: ``"standard"`` (Lucid's), ``None``
    or a :class:`~layerscope.featurevis.transforms.Compose`; ``preprocess``: whose ``mean``
    and ``std`` normalize the image for the model (default ImageNet's). Same seed, same images
    on the CPU. ``progress``: a text bar (or a callable ``(step, steps)``)."""
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    chans = [channels] if isinstance(channels, int) else list(channels)
    if not chans or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in chans):
        raise ArgumentError(f"channels must be non-negative integers, got {channels!r}")
    if param not in ("fft", "maco", "pixel"):
        raise ArgumentError(f"param must be 'fft', 'maco' or 'pixel', got {param!r}")
    if steps < 1 or size < 8:
        raise ArgumentError(f"steps must be >= 1 and size >= 8, got {steps} and {size}")
    pre = preprocess or Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    dev = torch.device(device) if device is not None else _device_of(model)
    settings = (size, steps, param, decorrelate, _key(transforms), _key(objective), lr, seed,
                tuple(pre.mean), tuple(pre.std))  # fmt: skip
    cache = _CACHE.setdefault(model, OrderedDict())
    weights = (weights_fingerprint(named), architecture_id(named))  # values and structure
    keys = {c: (weights, name, c, settings) for c in chans}
    todo = list(dict.fromkeys(c for c in chans if keys[c] not in cache))
    if todo:
        tensor, trace = _optimize(model, named, name, todo, size, steps, param, decorrelate,
                                  transforms, objective, lr, seed, pre, dev, progress)  # fmt: skip
        for i, c in enumerate(todo):
            cache[keys[c]] = (tensor[i], trace[:, i])
            while len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
    for c in chans:
        cache.move_to_end(keys[c])
    images = torch.stack([cache[keys[c]][0] for c in chans])
    traces = torch.stack([cache[keys[c]][1] for c in chans], dim=1)
    return FeatureVis(name, chans, images, traces)


def _optimize(
    model: nn.Module,
    named: dict[str, nn.Module],
    name: str,
    chans: list[int],
    size: int,
    steps: int,
    param: str,
    decorrelate: bool,
    transforms: str | Compose | None,
    objective: Objective,
    lr: float,
    seed: int,
    pre: Preprocess,
    dev: torch.device,
    progress: bool | Callable[[int, int], None],
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    image = ImageParam(len(chans), size, size, param, decorrelate=decorrelate, generator=gen)
    image = image.to(dev)
    tf = standard((size, size)) if transforms == "standard" else transforms
    if tf is not None and not isinstance(tf, Compose):
        raise ArgumentError(f"transforms must be 'standard', None or a Compose, got {tf!r}")
    value = _objective(objective, chans, name)
    mean = torch.tensor(pre.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=dev).view(1, 3, 1, 1)
    opt = torch.optim.Adam(image.parameters(), lr=lr)
    reached: list[torch.Tensor] = []

    def stop(_m: nn.Module, _a: Any, out: Any) -> None:
        t = first_tensor(out)
        if t is None:
            raise LayerScopeError(f"{name} gives no tensor to optimize for")
        reached.append(t)
        raise _Reached

    trace = torch.empty(steps, len(chans))
    bar = _bar(progress, steps)
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in grads:  # no gradient for the weights: only the image learns
            p.requires_grad_(False)
        with hooked(model, {name: stop}, named=named, train=False, grad=True):
            for step in range(steps):
                x = image()
                x = tf(x, rng) if tf is not None else x
                reached.clear()
                try:
                    model((x - mean) / std)
                except _Reached:
                    pass
                if not reached:
                    raise LayerScopeError(f"{name} did not run in the model's forward")
                values = value(reached[0])
                if values.shape != (len(chans),):
                    raise LayerScopeError(
                        f"the objective gave {tuple(values.shape)}: one value per channel "
                        f"({len(chans)},) is needed"
                    )
                opt.zero_grad()
                (-values.sum()).backward()
                opt.step()
                trace[step] = values.detach().float().cpu()
                bar(step + 1)
    finally:
        for p, flag in grads:
            p.requires_grad_(flag)
        for p in model.parameters():
            p.grad = None if p.grad is None else p.grad  # untouched: no gradient was asked
    with torch.no_grad():
        final = image().detach().cpu()
    return final, trace


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _key(obj: Any) -> Hashable:
    """Settings as a cache key: names as they are, anything else by identity."""
    return obj if obj is None or isinstance(obj, str) else ("object", id(obj))


def _bar(progress: bool | Callable[[int, int], None], steps: int) -> Callable[[int], None]:
    if callable(progress):
        return lambda done: progress(done, steps)
    if not progress:
        return lambda done: None
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="feature visualization", leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)
        if done >= steps:
            bar.close()

    return update
