"""The Explorer's Grad-CAM pass: Grad-CAM at the hooked modules for the shown image, class and
region, kept in the model's store (under its budget, only what the views draw: the CAM and the
gradient). A module hooked alone under the overlay runs only what follows it again (its output
was just captured); several at once share one forward and one backward; a module whose captured
output has no spatial map is left out without a pass, and remembered as such."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING

import torch

from ..gradcam_reuse import grad_cam_after_capture
from ..gradients import GradCam, has_cam_maps
from ..gradients import grad_cams as full_pass
from ..nested import first_tensor

if TYPE_CHECKING:
    from .session import Session

__all__ = ["grad_cams"]


def grad_cams(
    s: Session, modules: list[str], cls: int, region: list[float] | None
) -> dict[str, GradCam]:
    """Grad-CAM at every module in ``modules`` that has a spatial map, computed once per image,
    class and region."""
    mask = s.region_mask(region)
    key: Hashable = ("gradcam", cls, tuple(region or ()))
    cached = s.capturer.derived(s.inputs, key)
    have = dict(cached) if cached else {}
    missing = [m for m in modules if m not in have]
    if missing:
        with s.busy("Grad-CAM (forward and backward)"):
            done = _compute(s, missing, cls, mask)
            for name in missing:
                g = done.get(name)
                if g is None:  # no spatial map: kept as known, not asked for again
                    have[name] = (torch.empty(0),) * 4
                    continue
                extra = torch.tensor([g.score, g.pixels], dtype=torch.float64)
                kept = g.mask if g.mask is not None else torch.empty(0, dtype=torch.bool)
                have[name] = (g.cam, g.gradient, extra, kept)
        s.capturer.keep_derived(s.inputs, key, have)
    out = {}
    for name, (cam, gradient, extra, kept) in have.items():
        if not extra.numel():
            continue
        score, pixels = float(extra[0]), int(extra[1])
        out[name] = GradCam(name, cls, cam, torch.empty(0), gradient, torch.empty(0), score,
                            pixels, kept if kept.numel() else None)  # fmt: skip
    return out


def _compute(
    s: Session, modules: list[str], cls: int, mask: torch.Tensor | None
) -> dict[str, GradCam]:
    modules = [m for m in modules if _may_have_map(s, m)]
    if not modules:
        return {}
    if len(modules) == 1:
        one = grad_cam_after_capture(s.model, s.inputs, modules[0], cls, region=mask,
                                     layout=s.layouts.get(modules[0]))  # fmt: skip
        if one is not None:
            return {modules[0]: one}
    layouts = {m: lay for m in modules if (lay := s.layouts.get(m)) is not None}
    out = {}
    for name, g in full_pass(s.model, s.inputs, modules, cls, region=mask, layouts=layouts).items():
        assert isinstance(g, GradCam)  # one image: one result per module
        out[name] = g
    return out


def _may_have_map(s: Session, name: str) -> bool:
    """False when ``name``'s captured output (in the store) has no spatial map."""
    if not s.holds(name):
        return True  # not known without a forward: the pass finds out
    calls = s.capturer.capture(s.inputs, [name]).calls(name)
    t = first_tensor(calls[0]) if calls else None
    return t is not None and has_cam_maps(t, s.layouts.get(name))
