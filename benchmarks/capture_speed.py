"""Capture speed and memory against a plain forward, torchvision's feature extractor and TorchLens.

    .venv/bin/python benchmarks/capture_speed.py                  # CPU, DeepLabV3-ResNet50, 520 px
    .venv/bin/python benchmarks/capture_speed.py --device cuda --model deeplabv3_resnet101

Every figure is a median over interleaved repetitions, as a ratio to a plain ``no_grad`` forward
timed in the same run. Random weights: timing does not depend on their values."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torchvision.models.feature_extraction import create_feature_extractor

import layerscope as ls
from layerscope.models import load_preset

FIVE = ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "classifier"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--torchlens-reps", type=int, default=1, help="0 skips TorchLens")
    args = p.parse_args()

    device = torch.device(args.device)
    model = load_preset(args.model, weights=None).model.to(device)
    x = torch.randn(1, 3, args.size, args.size, device=device)
    every = [n for n, _ in model.named_modules() if n]
    storage = "cpu" if device.type == "cpu" else None  # on a GPU, keep captures on the GPU
    cap = ls.Capturer(model, storage=storage)
    fx = create_feature_extractor(model, FIVE)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def five_full() -> None:
        cap.capture(x, FIVE, cache=False, stop_early=False)

    def five() -> None:
        cap.capture(x, FIVE, cache=False)

    reports = []

    def all_modules() -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            reports.append(cap.capture(x, every, cache=False, stop_early=False).memory)

    def early() -> None:
        cap.capture(x, ["backbone.layer1"], cache=False)

    def feature_extractor() -> None:
        with torch.no_grad():
            fx(x)

    def all_modules_roomy() -> None:
        cap.memory_budget = 4 * 2**30
        try:
            reports.append(cap.capture(x, every, cache=False, stop_early=False).memory)
        finally:
            cap.memory_budget = 2**30

    # Warm up and learn the execution order.
    plain()
    cap.capture(x, ["backbone.layer4"], cache=False)
    cases = {
        "plain forward (no_grad)": plain,
        "five stages, hooks only (stop_early=False)": five_full,
        "five stages (default: stops after classifier)": five,
        f"every module ({len(every)}), 1 GiB budget": all_modules,
        f"every module ({len(every)}), 4 GiB budget (all float32)": all_modules_roomy,
        "backbone.layer1 alone, early stop": early,
        "create_feature_extractor, five stages": feature_extractor,
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times[name].append(time.perf_counter() - t0)

    # The cache on its own: an every-module capture in between would rightly evict it.
    cap.capture(x, ["backbone.layer4"])
    times["cached module (no forward)"] = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        acts = cap.capture(x, ["backbone.layer4"])
        times["cached module (no forward)"].append(time.perf_counter() - t0)
        assert acts.from_cache

    if args.torchlens_reps:
        try:
            import torchlens

            times["torchlens.trace (all layers)"] = []
            for _ in range(args.torchlens_reps):
                sync()
                t0 = time.perf_counter()
                torchlens.trace(model, x)
                sync()
                times["torchlens.trace (all layers)"].append(time.perf_counter() - t0)
        except Exception as exc:  # report, do not hide, a comparison that could not run
            print(f"torchlens.trace failed: {type(exc).__name__}: {exc}")

    base = statistics.median(times["plain forward (no_grad)"])
    print(
        f"{args.model}, {args.size}x{args.size}, {device}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, median of {args.reps}"
    )
    print(f"{'case':52s} {'median':>10s} {'ratio':>8s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        shown = f"{m * 1000:8.2f} ms" if m < 0.1 else f"{m:8.3f} s "
        print(f"{name:52s} {shown:>10s} {m / base:8.3f}x")
    for r in reports[-2:]:
        print(
            f"memory: every-module capture peaked at {r.peak_bytes / 2**20:.0f} MiB of a "
            f"{r.budget_bytes / 2**20:.0f} MiB budget; {len(r.reduced)} modules in bfloat16, "
            f"{len(r.evicted)} evicted"
        )


if __name__ == "__main__":
    main()
