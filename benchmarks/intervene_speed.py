"""Interventions: an edit at backbone.layer4 against a full forward, and channel importance.

    .venv/bin/python benchmarks/intervene_speed.py          # DeepLabV3-ResNet50, 520 px, CPU

The edited forward reuses the cached outputs of what finished before layer4 (the first call
captures them once: reported as "cold"); the figure is the warm median against a plain forward
timed in the same rounds, with a new edit each round, and each result is checked equal to a full
edited forward (hooks, nothing reused). Channel importance: the time for the first-order estimate
of every channel (one forward and backward) plus exact ablations of the top 32, and the rank
correlation between estimate and exact. Random weights: timing does not depend on their values,
but the correlation does (pretrained weights give the meaningful one)."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import layerscope as ls
from layerscope.models import load_preset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--module", default="backbone.layer4")
    p.add_argument("--exact-top", type=int, default=32)
    p.add_argument("--pretrained", action="store_true", help="torchvision's weights (download)")
    args = p.parse_args()
    preset = load_preset(args.model, weights="DEFAULT" if args.pretrained else None,
                         device=args.device)  # fmt: skip
    model = preset.model
    x = preset.preprocess.with_size(args.size)(ls.sample_image()).tensor.to(args.device)

    def plain() -> None:
        with torch.no_grad():
            model(x)

    def by_hand(channels: list[int]) -> torch.Tensor:
        def hook(m, a, out):
            out = out.clone()
            out[:, channels] = 0
            return out

        handle = dict(model.named_modules())[args.module].register_forward_hook(hook)
        try:
            with torch.no_grad():
                return model(x)["out"]
        finally:
            handle.remove()

    plain()
    t0 = time.perf_counter()
    first = ls.intervene(model, x, {args.module: ls.Ablate([0])})
    cold = time.perf_counter() - t0
    assert torch.equal(first.output["out"], by_hand([0]))
    plain_times, edit_times = [], []
    for r in range(args.reps):
        chans = [r + 1, 100 + r]
        t0 = time.perf_counter()
        plain()
        plain_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        res = ls.intervene(model, x, {args.module: ls.Ablate(chans)})
        edit_times.append(time.perf_counter() - t0)
        assert torch.equal(res.output["out"], by_hand(chans)), "differs from a full edited forward"
    base, edit = statistics.median(plain_times), statistics.median(edit_times)
    with torch.no_grad():
        pred = model(x)["out"][0].argmax(0)
    cls = int(torch.bincount(pred.flatten()).argmax())
    t0 = time.perf_counter()
    imp = ls.channel_importance(model, x, args.module, cls, exact_top=args.exact_top)
    importance = time.perf_counter() - t0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model}, {args.size} px, {name}, {torch.get_num_threads()} threads, "
          f"edit: Ablate at {args.module}")  # fmt: skip
    print(f"{'plain forward (median)':52s} {base * 1000:9.1f} ms")
    print(f"{'edited forward, warm (median, reusing the prefix)':52s} {edit * 1000:9.1f} ms "
          f"{edit / base:6.3f}x")  # fmt: skip
    print(f"{'edited forward, cold (captures the prefix once)':52s} {cold * 1000:9.1f} ms")
    print("every edited result equals a full edited forward: yes")
    print(f"{f'channel importance, {len(imp.estimate)} estimated + {len(imp.exact)} exact':52s} "
          f"{importance * 1000:9.1f} ms")  # fmt: skip
    print(f"{'rank correlation, estimate vs exact (Spearman)':52s} {imp.rank_correlation:9.3f}")


if __name__ == "__main__":
    main()
