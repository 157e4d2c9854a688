"""Payloads of the intervention views: the prediction with channels ablated, and a module's
channel importance."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from ..importance import ChannelImportance
from .payload import class_label, hex_color, palette
from .schema import AblationPayload, ImportancePayload

__all__ = ["ablation_payload", "importance_payload"]


def ablation_payload(
    before: torch.Tensor,
    after: torch.Tensor,
    image_size: tuple[int, int],
    class_names: list[str],
    ablations: dict[str, list[int]],
) -> AblationPayload:
    """Segmentation: ``before`` and ``after`` are (H, W) class indices of the input's pixels.
    Classification: (K,) class scores."""
    out: AblationPayload = {
        "ablations": {k: list(v) for k, v in ablations.items()},
        "kind": "classification" if before.dim() == 1 else "segmentation",
    }
    if before.dim() == 1:
        n = min(5, before.numel())
        tops = [*torch.topk(before, n).indices.tolist(), *torch.topk(after, n).indices.tolist()]
        union = sorted(dict.fromkeys(tops), key=lambda i: -float(after[i]))
        out["scores"] = [
            {"index": i, "label": class_label(class_names, i),
             "before": float(before[i]), "after": float(after[i])}
            for i in union
        ]  # fmt: skip
        return out
    colors = palette(len(class_names))
    b, a = before.to(torch.int64).cpu(), after.to(torch.int64).cpu()
    changed = b != a
    h, w = image_size
    rgba = np.zeros((*a.shape, 4), np.uint8)
    rgba[..., :3] = colors[a.numpy()]
    rgba[..., 3] = np.where(changed.numpy(), 255, 0)
    out["mask_png"] = _png(Image.fromarray(a.to(torch.uint8).numpy(), mode="L"), (w, h), colors)
    out["changed_png"] = _png(Image.fromarray(rgba, mode="RGBA"), (w, h), None)
    out["changed_pixels"] = int(changed.sum())
    out["changed_fraction"] = float(changed.float().mean())
    k = len(class_names)
    cb = torch.bincount(b.flatten(), minlength=k).float() / b.numel()
    ca = torch.bincount(a.flatten(), minlength=k).float() / a.numel()
    present = [i for i in range(k) if cb[i] > 0 or ca[i] > 0]
    present.sort(key=lambda i: -max(float(cb[i]), float(ca[i])))
    out["shares"] = [{"index": i, "name": class_names[i], "color": hex_color(colors[i]),
                      "before": float(cb[i]), "after": float(ca[i])} for i in present]  # fmt: skip
    pairs = torch.stack([b[changed], a[changed]], 1)
    if len(pairs):
        uniq, counts = torch.unique(pairs, dim=0, return_counts=True)
        top = torch.argsort(counts, descending=True)[:5]
        out["transitions"] = [{"before": int(uniq[i, 0]), "after": int(uniq[i, 1]),
                               "pixels": int(counts[i])} for i in top.tolist()]  # fmt: skip
    else:
        out["transitions"] = []
    return out


def _png(image: Image.Image, size: tuple[int, int], palette: np.ndarray | None) -> bytes:
    if palette is not None:
        image = image.convert("P")
        image.putpalette(palette.flatten().tolist())
    image = image.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def importance_payload(
    result: ChannelImportance, name: str, call: int, top: int = 32
) -> ImportancePayload:
    """The ``top`` channels by estimated effect, with the exact effect where it was measured."""
    chans = [int(c) for c in result.order[:top]]
    rho = result.rank_correlation
    return {
        "module": result.module,
        "call": call,
        "target": result.target_class,
        "name": name,
        "score": result.score,
        "channels": chans,
        "estimate": [float(result.estimate[c]) for c in chans],
        "exact": [result.exact.get(c) for c in chans],
        "rank_correlation": None if rho != rho else rho,
    }
