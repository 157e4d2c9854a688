"""What does a channel respond to? A sweep over many images keeps, for every channel of the
chosen modules, the images that excite it most (Zeiler and Fergus, 2014: the nine strongest
activations of each feature map over a validation set, shown as the patch under the unit's
receptive field), and each channel's statistics over all images.

>>> sw = layerscope.sweep(model, "photos/", ["backbone.layer4"], k=9)
>>> [(e.source, e.score) for e in sw.top("backbone.layer4", 42)]
>>> sw.top("backbone.layer4", 42)[0].crop()       # the receptive field of the best unit
>>> sw.stats("backbone.layer4").mean, sw.dead("backbone.layer4")

Locally by default; ``engine="ray"`` runs the same sweep on Ray Data (an actor pool holding the
model, partial results merged on the driver)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..capture import resolve_modules
from ..errors import LayerScopeError
from ..preprocess import Preprocess
from ..receptive import receptive_fields
from .format import (
    check_same_preprocess,
    describe_preprocess,
    first_difference,
    load_sweep,
    model_fingerprint,
    preprocess_args,
    read_header,
)
from .identify import content_digest
from .local import Every, interrupts_deferred, run_local
from .result import ChannelStats, Example, Sweep
from .sources import IMAGE_SUFFIXES, open_sources
from .topk import ChannelTopK

__all__ = ["sweep", "Sweep", "Example", "ChannelStats", "IMAGE_SUFFIXES", "DEFAULT_PREPROCESS"]

DEFAULT_PREPROCESS = Preprocess(resize=224, crop=(224, 224))  # ImageNet's evaluation transform
CHECKPOINT_SECONDS = 20.0


def sweep(
    model: nn.Module,
    images: Any,
    modules: str | list[str],
    *,
    k: int = 16,
    preprocess: Preprocess | Any = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device | None = None,
    engine: str = "local",
    path: str | Path | None = None,
    progress: bool | Any = True,
) -> Sweep:
    """Sweep ``images`` through ``model`` and keep each channel's ``k`` best images.

    ``images``: a folder (searched recursively for .jpg .jpeg .png .bmp .gif .webp .tif .tiff), a
    list of paths, a torch Dataset returning an image or ``(image, target)``, or an iterable of
    image tensors. ``preprocess``: a :class:`Preprocess` or any callable taking an RGB PIL image and
    returning a tensor (default: resize to 224 and centre-crop 224 x 224). ``device``: where the
    model runs (default: where its parameters are; it is moved back afterwards). Unreadable files,
    dangling symlinks, and images whose pixels or preprocessed input hold NaN or infinite values are
    skipped and listed in ``sweep.skipped``. ``path``: checkpoint there as the sweep goes (about
    every 20 s) and at the end; run again with the same arguments, a sweep continues where it
    stopped; it refuses to when the preprocessing function (by its code and values) or an image's
    contents (file bytes, tensor values; a Dataset's items by index) changed. ``progress``: a
    progress bar (tqdm), or a callable ``(done, total)``."""
    if k < 1:
        raise LayerScopeError(f"k must be at least 1, got {k}")
    if engine not in ("local", "ray"):
        raise LayerScopeError(f"engine must be 'local' or 'ray', got {engine!r}")
    named = dict(model.named_modules())
    names = resolve_modules(model, modules, named)
    home = next((p.device for p in model.parameters()), None)  # where the model goes back
    if device is not None:
        model.to(device)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    pre = preprocess if preprocess is not None else DEFAULT_PREPROCESS
    sources = open_sources(images)
    fingerprint = model_fingerprint(model)
    result = _start(Path(path) if path else None, names, k, sources, fingerprint, pre)
    todo = [i for i in range(len(sources)) if i not in result.processed]
    bar = _progress(progress, len(sources), len(result.processed))
    every = Every(CHECKPOINT_SECONDS)
    traced: set[tuple[int, ...]] = set()  # image shapes (C, H, W) already traced

    def done(
        counted: list[int],
        skipped: list[tuple[int, str]],
        shapes: list[Any],
        partial: dict[str, ChannelTopK],
    ) -> None:
        for shape in shapes:  # each input size has its own grid of units
            if tuple(shape[1:]) not in traced:  # once: a module with no field would retrace
                _fields(model, result, names, shape, dev)
                traced.add(tuple(shape[1:]))
        digests = {  # to recognise the image on resume
            i: content_digest(sources.items[i]) for i in counted if sources.kind != "dataset"
        }
        with interrupts_deferred():  # the batch's counts and its record change together
            for name, part in partial.items():
                result.states[name].merge(part)
            result.images += len(counted)
            result.skipped.extend((sources.labels[i], why) for i, why in skipped)
            result.digests.update((i, d) for i, d in digests.items() if d is not None)
            result.processed.update(counted)
            result.processed.update(i for i, _ in skipped)
        bar(len(counted) + len(skipped))
        if path and every():
            result.save(path)

    job = (model, sources, names, result.states, todo)
    try:
        if engine == "ray":
            from .ray_engine import run_ray

            run_ray(*job, preprocess=pre, batch_size=batch_size, device=dev, done=done)
        else:
            run_local(
                *job,
                num_workers=num_workers,
                preprocess=pre,
                batch_size=batch_size,
                device=dev,
                done=done,
            )
    finally:
        bar(None)
        if device is not None and home is not None:
            model.to(home)
        if path and result.processed:
            result.save(path)  # also after an interrupt: what was counted is kept
    if result.images == 0:
        reasons = "; ".join(f"{s}: {why}" for s, why in result.skipped[:3])
        raise LayerScopeError(f"no image could be read ({len(result.skipped)} skipped: {reasons})")
    result.sources, result.prepare = sources, lambda i: sources.prepare(i, pre)
    return result


def _start(
    path: Path | None, names: list[str], k: int, sources: Any, fingerprint: str, pre: Any
) -> Sweep:
    """A new sweep, or the one checkpointed at ``path`` when it is the same sweep."""
    desc = describe_preprocess(pre)
    if path is not None and path.is_file():
        header = read_header(path)
        mismatch = [
            what
            for what, ours, theirs in (
                ("model weights", fingerprint, header["model"]["fingerprint"]),
                ("modules", names, header["modules"]),
                ("k", k, header["k"]),
                ("preprocessing", desc, header["preprocess"]),
                ("images", sources.labels, header["sources"]),
            )
            if ours != theirs
        ]
        if mismatch:
            detail = ""
            if "images" in mismatch:
                detail = f"; {first_difference(sources.labels, header['sources'])}"
            raise LayerScopeError(
                f"{str(path)!r} holds another sweep (its {', '.join(mismatch)} differ"
                f"{detail}): give another path, or delete it to start over"
            )
        check_same_preprocess(pre, header["preprocess"], repr(str(path)))
        loaded = load_sweep(path)
        changed = [
            i for i, d in sorted(loaded.digests.items()) if content_digest(sources.items[i]) != d
        ]
        if changed:
            raise LayerScopeError(
                f"{str(path)!r} was swept over other contents: {len(changed)} image(s) changed "
                f"since, first {sources.labels[changed[0]]!r}; resuming would mix old and new "
                "images: give another path, or delete it to start over"
            )
        return loaded
    states = {n: ChannelTopK(k) for n in names}
    sweep = Sweep(names, k, states, list(sources.labels), fingerprint, desc)
    sweep.preprocess_args = preprocess_args(pre)
    return sweep


def _fields(model: nn.Module, result: Sweep, names: list[str], shape: Any, dev: Any) -> None:
    """Receptive fields of the swept modules for an input shape seen for the first time."""
    key = f"{shape[-2]}x{shape[-1]}"
    if all(key in result.fields.get(n, {}) for n in names) or len(shape) != 4:
        return
    fields = receptive_fields(model, torch.zeros(1, *shape[1:], device=dev))
    for n in names:
        if n in fields:
            result.fields.setdefault(n, {})[key] = fields[n]


def _progress(progress: Any, total: int, start: int) -> Any:
    if callable(progress) and not isinstance(progress, bool):
        count = [start]

        def report(n: int | None) -> None:
            if n is not None:
                count[0] += n
                progress(count[0], total)

        return report
    if not progress:
        return lambda n: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=start, unit="image", desc="sweep")

    def update(n: int | None) -> None:
        if n is None:
            bar.close()
        else:
            bar.update(n)

    return update
