"""Feature visualization: optimize an input image until a unit of the model answers strongly.

Several channels run as one batch (row n optimizes ``channels[n]``); the forward stops at the
module (nothing after it runs); only the image's parameters are optimized (Adam), the model's
weights do not move and get no gradient, and the model is left as it was found (hooks, modes,
``requires_grad``, weights bit-identical). Results are cached per model by (weights, module,
channel, settings), a few dozen at most."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import nn

from ..capture import resolve_modules
from ..errors import ArgumentError, LayerScopeError, OutOfRangeError
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from .job import Job, _Run, cached, weights_key
from .result import FeatureVis
from .transforms import Compose, standard

__all__ = ["FeatureVis", "Job", "start", "visualize"]

Objective = str | Callable[[torch.Tensor], torch.Tensor]
MAX_STEPS, MAX_SIZE = 100_000, 2048  # beyond: a typo, not a visualization (size 20000: ~5 GB)


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
        if out.dim() == 2 and int(index.max()) < out.shape[1]:  # (N, C): the unit is the channel
            return out[rows, index]
        if out.dim() != 4:
            raise LayerScopeError(
                f"{name} gives {tuple(out.shape)}: 'channel' and 'neuron' need (N, C, H, W) or "
                "(N, C); pass objective= a function of the output"
            )
        if int(index.max()) >= out.shape[1]:
            raise OutOfRangeError(
                f"channel {int(index.max())} is out of range: {name} has {out.shape[1]} "
                f"channels (0-{out.shape[1] - 1})"
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
    call: int = 0,
    progress: bool | Callable[[int, int], None] = True,
) -> FeatureVis:
    """Optimize one image per channel of ``module`` to maximize ``objective`` (the channel's
    mean, ``"neuron"``: its centre unit, or a function of the module's output returning one
    value per row). ``param``: ``"fft"``, ``"maco"`` or ``"pixel"`` (see
    :mod:`layerscope.featurevis.param`); ``transforms``: ``"standard"`` (Lucid's), ``None``
    or a :class:`~layerscope.featurevis.transforms.Compose`; ``preprocess``: whose ``mean``
    and ``std`` normalize the image for the model (default ImageNet's). ``call``: which call of
    a module run several times per forward (a Bottleneck's ReLU runs three). Same seed, same
    images on the CPU. ``progress``: a text bar (or a callable ``(step, steps)``)."""
    job = start(model, module, channels, size=size, steps=steps, param=param,
                decorrelate=decorrelate, transforms=transforms, objective=objective, lr=lr,
                seed=seed, preprocess=preprocess, device=device, call=call)  # fmt: skip
    bar = _bar(progress, steps) if not job.done else (lambda done: None)
    while not job.done:
        job.advance(1)
        bar(job.step)
    return job.result()


def start(
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
    call: int = 0,
) -> Job:
    """:func:`visualize` in steps, for a caller that does other work between them (the
    widget, which answers clicks meanwhile): ``job.advance(n)`` runs n steps, ``job.image()``
    is the image so far, ``job.result()`` the visualization once ``job.done``. Channels whose
    result is cached are not optimized again; the same seed gives the same images however the
    steps are split."""
    named = dict(model.named_modules())
    (name,) = resolve_modules(model, [module], named)
    chans = [channels] if isinstance(channels, int) else list(channels)
    if not chans or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in chans):
        raise ArgumentError(f"channels must be non-negative integers, got {channels!r}")
    check_settings(size=size, steps=steps, param=param, seed=seed, lr=lr, call=call,
                   decorrelate=decorrelate)  # fmt: skip
    pre = preprocess or Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    dev = torch.device(device) if device is not None else _device_of(model)
    settings = (size, steps, param, decorrelate, _key(transforms), _key(objective), lr, seed,
                tuple(pre.mean), tuple(pre.std), call)  # fmt: skip
    weights = weights_key(named)
    keys: dict[int, Hashable] = {c: (weights, name, c, settings) for c in chans}
    todo = list(dict.fromkeys(c for c in chans if cached(model, keys[c]) is None))
    tf = standard((size, size)) if transforms == "standard" else transforms
    if tf is not None and not isinstance(tf, Compose):
        raise ArgumentError(f"transforms must be 'standard', None or a Compose, got {tf!r}")
    run = _Run(model, named, name, call, todo, size, steps, param, decorrelate, tf,
               _objective(objective, todo, name), lr, seed, pre, dev) if todo else None  # fmt: skip
    return Job(model, name, chans, keys, weights, run, call)


def check_settings(**settings: Any) -> None:
    """Refuse, naming what is allowed, settings :func:`start` cannot run with (any of
    ``size``, ``steps``, ``param``, ``seed``, ``lr``, ``call``, ``decorrelate``)."""
    for what in ("steps", "size", "seed", "call"):
        v = settings.get(what, 0)
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArgumentError(f"{what} must be an integer, got {v!r}")
    steps, size = settings.get("steps", 1), settings.get("size", 8)
    if not 1 <= steps <= MAX_STEPS or not 8 <= size <= MAX_SIZE:
        raise ArgumentError(
            f"steps must be 1-{MAX_STEPS} and size 8-{MAX_SIZE} px, got {steps} and {size}"
        )
    if settings.get("call", 0) < 0 or not 0 <= settings.get("seed", 0) < 2**63:
        raise ArgumentError("call must be >= 0 and seed in 0 .. 2**63 - 1")
    lr = settings.get("lr", 1.0)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise ArgumentError(f"lr must be a positive number, got {lr!r}")
    if settings.get("param", "fft") not in ("fft", "maco", "pixel"):
        raise ArgumentError(f"param must be 'fft', 'maco' or 'pixel', got {settings['param']!r}")
    if not isinstance(settings.get("decorrelate", True), bool):
        raise ArgumentError(f"decorrelate must be True or False, got {settings['decorrelate']!r}")


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
