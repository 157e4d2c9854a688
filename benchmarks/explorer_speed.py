"""What the Explorer's clicks cost in the kernel (no browser): switching between hooked modules
with and without the Grad-CAM overlay, and a channel change.

    .venv/bin/python benchmarks/explorer_speed.py          # DeepLabV3-ResNet50, 520 px, CPU

Grad-CAM at every hooked module comes from one forward and one backward, kept in the model's
store: the first Grad-CAM pays it (cold), switching modules afterwards reads it (warm). The row
"one module's Grad-CAM" is what each switch cost before (a forward and a backward per click).
Random weights: timing does not depend on their values."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

import layerscope as ls
from layerscope.models import load_preset

HOOKED = ["backbone.layer2", "backbone.layer3", "backbone.layer4"]


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    warnings.simplefilter("ignore", ResourceWarning)
    preset = load_preset(args.model, weights=None, device=args.device)
    ex = ls.Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(args.size),
                     class_names=preset.class_names, hooked_modules=HOOKED)  # fmt: skip
    rows: dict[str, list[float]] = {"switch hooked module, no overlay": []}
    for i in range(args.reps * len(HOOKED)):
        rows["switch hooked module, no overlay"].append(
            timed(lambda i=i: setattr(ex, "selected_module", HOOKED[i % len(HOOKED)]))
        )
    start = ex.selected_channel
    rows["channel change"] = [  # always a channel other than the one shown
        timed(lambda c=c: setattr(ex, "selected_channel", (start + 1 + c) % 512))
        for c in range(args.reps)
    ]
    rows["one module's Grad-CAM (forward + backward)"] = [
        timed(lambda: ex.grad_cam("backbone.layer3")) for _ in range(max(2, args.reps // 2))
    ]
    cold = timed(lambda: setattr(ex, "overlay", "gradcam"))
    assert ex.errors == {} and ex._gradcam["module"] == ex.selected_module
    rows["switch hooked module under Grad-CAM"] = []
    for i in range(args.reps * len(HOOKED)):
        rows["switch hooked module under Grad-CAM"].append(
            timed(lambda i=i: setattr(ex, "selected_module", HOOKED[i % len(HOOKED)]))
        )
        assert ex._gradcam["module"] == HOOKED[i % len(HOOKED)]
    # A module hooked while the overlay is on: its capture (a forward until it), then its
    # Grad-CAM (what follows it, with autograd, from its captured output, and the backward).
    # Each a module never captured before, late and early in the forward.
    for label, new in (
        ("hook a new late module under Grad-CAM", ["backbone.layer4.0", "backbone.layer4.1",
                                                   "backbone.layer4.2"]),
        ("hook a new early module under Grad-CAM", ["backbone.layer1.0", "backbone.layer1.1",
                                                    "backbone.layer1.2"]),
    ):  # fmt: skip
        rows[f"{label} ({new[0].rsplit('.', 1)[0]})"] = []
        for name in new:
            before = list(ex.hooked_modules)
            rows[f"{label} ({new[0].rsplit('.', 1)[0]})"].append(
                timed(lambda n=name, b=before: setattr(ex, "hooked_modules", [*b, n]))
            )
            assert ex.errors == {} and ex._gradcam["module"] == name, ex.errors
            ex.hooked_modules = before
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model}, {args.size} px, {name}, {torch.get_num_threads()} threads, "
          f"hooked: {', '.join(HOOKED)}")  # fmt: skip
    print(f"{'first Grad-CAM overlay (all hooked modules, cold)':52s} {cold * 1000:9.1f} ms")
    for label, ts in rows.items():
        print(f"{label:52s} {statistics.median(ts) * 1000:9.1f} ms (median of {len(ts)})")


if __name__ == "__main__":
    main()
