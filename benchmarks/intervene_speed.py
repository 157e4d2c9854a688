"""Interventions: an edit at backbone.layer4 against a full forward, and channel importance.

    .venv/bin/python benchmarks/intervene_speed.py          # DeepLabV3-ResNet50, 520 px, CPU

Two edited-forward rows, because they measure different things:

- "new image each call" (the headline): every timed call gets an image LayerScope has never seen
  (a fresh random tensor of the sample image's shape, made outside the timed region), so the
  cache misses: the call pays the baseline forward, capturing the prefix that finished before
  layer4, and the edited forward that reuses it. This is what editing a new image costs.
- "same image, cache hit": one image, edited again with a new edit each round; the baseline
  and the prefix come from LayerScope's cache, so only layer4, the heads and the upsampling run.

Both are timed against a plain forward in the same rounds, the order of the three cases shuffled
per round (seeded), and printed as min/median/max over the rounds beside the cold first call
(LayerScope's state forgotten first: nothing cached, the execution order learned again; the
process's one-time costs are paid before, by a warm-up plain forward and edit). Every
result (timed or cold) is checked, outside the timed region, equal to a full edited forward
(hooks, nothing reused). Channel importance: the time for the first-order estimate of every
channel (one forward and backward) plus exact ablations of the top 32, and the rank correlation
between estimate and exact. Random weights: timing does not depend on their values, but the
correlation does (pretrained weights give the meaningful one)."""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

import layerscope as ls
from layerscope.models import load_preset

PLAIN = "plain forward (no_grad)"
NEW = "edited forward, new image each call (cache miss)"
SAME = "edited forward, same image, cache hit"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seeds the shuffle and the new images")
    p.add_argument("--module", default="backbone.layer4")
    p.add_argument("--exact-top", type=int, default=32)
    p.add_argument("--pretrained", action="store_true", help="torchvision's weights (download)")
    args = p.parse_args()
    preset = load_preset(args.model, weights="DEFAULT" if args.pretrained else None,
                         device=args.device)  # fmt: skip
    model = preset.model
    device = torch.device(args.device)
    x = preset.preprocess.with_size(args.size)(ls.sample_image()).tensor.to(device)
    gen = torch.Generator(device=device).manual_seed(args.seed)

    def new_image() -> torch.Tensor:
        return torch.randn(x.shape, dtype=x.dtype, device=device, generator=gen)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def by_hand(inp: torch.Tensor, channels: list[int]) -> torch.Tensor:
        def hook(m, a, out):
            out = out.clone()
            out[:, channels] = 0
            return out

        handle = dict(model.named_modules())[args.module].register_forward_hook(hook)
        try:
            with torch.no_grad():
                return model(inp)["out"]
        finally:
            handle.remove()

    def plain(inp: torch.Tensor, channels: list[int]) -> None:
        with torch.no_grad():
            model(inp)

    def edited(inp: torch.Tensor, channels: list[int]) -> ls.Intervention:
        return ls.intervene(model, inp, {args.module: ls.Ablate(channels)})

    # Each case: (what it runs, whether it gets a new image each call).
    cases: dict[str, tuple[Callable[[torch.Tensor, list[int]], object], bool]] = {
        PLAIN: (plain, True),
        NEW: (edited, True),
        SAME: (edited, False),
    }

    def timed(name: str, channels: list[int]) -> float:
        fn, fresh = cases[name]
        inp = new_image() if fresh else x  # made before the clock starts
        sync()
        t0 = time.perf_counter()
        res = fn(inp, channels)
        sync()
        took = time.perf_counter() - t0
        if isinstance(res, ls.Intervention):  # checked outside the timed region
            assert torch.equal(res.output["out"], by_hand(inp, channels)), (
                f"{name}: differs from a full edited forward"
            )
        return took

    # The process's one-time costs (torch's first calls, LayerScope's lazy set-up) fall on a
    # warm-up call, not on whichever case happens to be timed cold first.
    plain(x, [])
    edited(new_image(), [0])
    cold: dict[str, float] = {}
    for name in cases:
        ls.Capturer(model).forget()  # cold: nothing cached, the execution order learned again
        cold[name] = timed(name, [0])
    times: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    order_rng = random.Random(args.seed)
    for r in range(args.reps):
        order_rng.shuffle(names)  # no case always follows the same neighbour
        chans = [r + 1, 100 + r]  # a new edit each round
        for name in names:
            times[name].append(timed(name, chans))

    with torch.no_grad():
        pred = model(x)["out"][0].argmax(0)
    cls = int(torch.bincount(pred.flatten()).argmax())
    t0 = time.perf_counter()
    imp = ls.channel_importance(model, x, args.module, cls, exact_top=args.exact_top)
    importance = time.perf_counter() - t0
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model}, {tuple(x.shape[-2:])} px, {name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, edit: Ablate at {args.module}, "
          f"{args.reps} rounds in shuffled order (seed {args.seed})")  # fmt: skip
    base_ts = times[PLAIN]
    if max(base_ts) > 2 * min(base_ts):
        print(
            f"WARNING: plain forward spread {_fmt(min(base_ts)).strip()} to "
            f"{_fmt(max(base_ts)).strip()} (over 2x): "
            "the machine is loaded, these figures are not comparable"
        )
    base = statistics.median(base_ts)
    print(f"{'case':50s} {'min':>10s} {'median':>10s} {'max':>10s} {'ratio':>7s} {'cold':>10s}")
    for key in cases:
        ts = times[key]
        m = statistics.median(ts)
        print(f"{key:50s} {_fmt(min(ts)):>10s} {_fmt(m):>10s} {_fmt(max(ts)):>10s} "
              f"{m / base:6.3f}x {_fmt(cold[key]):>10s}")  # fmt: skip
    print("ratio: median / plain median; cold: the first call, LayerScope's state forgotten")
    print("every edited result equals a full edited forward: yes")
    label = f"channel importance, {len(imp.estimate)} estimated + {len(imp.exact)} exact"
    print(f"{label:50s} {_fmt(importance):>10s}  (same image, after the rounds)")
    print(f"{'rank correlation, estimate vs exact (Spearman)':50s} {imp.rank_correlation:10.3f}")


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 0.1 else f"{seconds:7.3f} s "


if __name__ == "__main__":
    main()
