"""Interventions: an edit at backbone.layer3 and at backbone.layer4 against a plain forward and a
hand-written hook, on new images and on a seen one.

    .venv/bin/python benchmarks/intervene_speed.py          # DeepLabV3-ResNet50, 520 px, CPU

For each edited module, three rows:

- "new image" (the headline): every timed call gets an image LayerScope has never seen (a fresh
  random tensor of the sample image's shape, made outside the timed region), so the cache
  misses: one forward until the edited module (keeping what stands in) and the edited rest. The
  baseline (unedited output) is not asked for, as a user who only reads ``res.output`` pays.
- "seen image": one image, edited again with a new edit each round; the prefix and the edited
  module's output come from LayerScope's cache, so only what follows the module runs.
- "hand-written hook, new image": what a user writes by hand (a forward hook that clones the
  output and zeroes the channels, one forward under no_grad), on a new image.
- "what follows it, by hand": for torchvision's segmentation models (a backbone of named stages
  and a classifier), the stages after the edited one, the classifier and the upsampling run by
  hand on the edited output, computed beforehand: the floor under the "seen image" row, which
  cannot run less than what follows the edit.

All are timed against a plain forward in the same rounds, the order of the cases shuffled per
round (seeded), and printed as min/median/max over the rounds beside the cold first call
(LayerScope's state forgotten first: nothing cached, the execution order learned again; the
process's one-time costs are paid before, by a warm-up). Every LayerScope result (timed or
cold) is checked, outside the timed region, equal to the hand-written hook's output.
Channel importance has its own benchmark: ``benchmarks/importance_speed.py``."""

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seeds the shuffle and the new images")
    p.add_argument("--modules", default="backbone.layer3,backbone.layer4")
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

    named = dict(model.named_modules())

    def by_hand(module: str) -> Callable[[torch.Tensor, list[int]], torch.Tensor]:
        def run(inp: torch.Tensor, channels: list[int]) -> torch.Tensor:
            def hook(m, a, out):
                out = out.clone()
                out[:, channels] = 0
                return out

            handle = named[module].register_forward_hook(hook)
            try:
                with torch.no_grad():
                    return model(inp)["out"]
            finally:
                handle.remove()

        return run

    def plain(inp: torch.Tensor, channels: list[int]) -> None:
        with torch.no_grad():
            model(inp)

    def edited(module: str) -> Callable[[torch.Tensor, list[int]], ls.Intervention]:
        def run(inp: torch.Tensor, channels: list[int]) -> ls.Intervention:
            return ls.intervene(model, inp, {module: ls.Ablate(channels)})

        return run

    def suffix(module: str) -> Callable[[torch.Tensor, list[int]], object] | None:
        """What follows ``module`` in a torchvision segmentation model, by hand, on its output
        for the seen image computed once, outside the clock, edited (None for other models)."""
        stages = getattr(getattr(model, "backbone", None), "keys", None)
        head, stage = module.partition(".")[::2]
        if stages is None or head != "backbone" or stage not in list(stages()):
            return None
        rest = list(stages())[list(stages()).index(stage) + 1 :]
        with torch.no_grad():  # the unedited output: what a seen image has cached
            base = ls.capture(model, x, [module])[module].clone()

        def run(inp: torch.Tensor, channels: list[int]) -> torch.Tensor:
            h = base.clone()  # the edit, as LayerScope applies it to the cached output
            h[:, channels] = 0
            return tail(h, inp.shape[-2:])

        def tail(h: torch.Tensor, size: torch.Size) -> torch.Tensor:
            with torch.no_grad():
                for name in rest:
                    h = model.backbone[name](h)
                out = model.classifier(h)
                return torch.nn.functional.interpolate(out, size=size, mode="bilinear",
                                                       align_corners=False)  # fmt: skip

        return run

    # Each case: (what it runs, whether it gets a new image each call, the module it edits).
    Case = tuple[Callable[[torch.Tensor, list[int]], object], bool, str]
    cases: dict[str, Case] = {PLAIN: (plain, True, "")}
    modules = args.modules.split(",")
    for module in modules:
        cases[f"{module}: new image"] = (edited(module), True, module)
        cases[f"{module}: seen image"] = (edited(module), False, module)
        cases[f"{module}: hand-written hook, new image"] = (by_hand(module), True, module)
        floor = suffix(module)
        if floor is not None:
            cases[f"{module}: what follows it, by hand"] = (floor, False, module)

    def timed(name: str, channels: list[int]) -> float:
        fn, fresh, module = cases[name]
        inp = new_image() if fresh else x  # made before the clock starts
        sync()
        t0 = time.perf_counter()
        res = fn(inp, channels)
        sync()
        took = time.perf_counter() - t0
        if isinstance(res, ls.Intervention):  # checked outside the timed region
            assert torch.equal(res.output["out"], by_hand(module)(inp, channels)), (
                f"{name}: differs from the hand-written hook"
            )
        elif isinstance(res, torch.Tensor):  # the floor computes the same output
            assert torch.allclose(res, by_hand(module)(inp, channels), atol=1e-4), name
        return took

    # The process's one-time costs (torch's first calls, LayerScope's lazy set-up) fall on a
    # warm-up call, not on whichever case happens to be timed cold first.
    plain(x, [])
    for module in modules:
        edited(module)(new_image(), [0])
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

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{args.model}, {tuple(x.shape[-2:])} px, {device_name}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, edit: Ablate of 2 channels, "
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
    print("every LayerScope result equals the hand-written hook's: yes")


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 0.1 else f"{seconds:7.3f} s "


if __name__ == "__main__":
    main()
