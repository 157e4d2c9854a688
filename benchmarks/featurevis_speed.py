"""Feature visualization: optimization steps per second against the least a hand-written loop
does, and seconds per channel.

    .venv/bin/python benchmarks/featurevis_speed.py           # DeepLabV3-ResNet50, layer4, 224 px

The hand-written baseline is a plain forward to the same module and a backward, with the same
batch (one row per channel) and an Adam step on the input pixels: no parameterization, no
transforms, no colour mixing (the forward stops at the module as LayerScope's does:
``model.backbone`` of DeepLabV3 ends at layer4). LayerScope's steps add the Fourier
parameterization, the colour decorrelation, the sigmoid, Lucid's five random transforms and the
normalisation: the ratio says what they cost. Both run ``--steps`` steps per round, rounds in
shuffled order (seeded), min/median/max over the rounds; the first round of each is its cold one
(LayerScope's cache is cleared before every round: each round computes). Random weights: the
speed does not depend on them."""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

import layerscope as ls
from layerscope.featurevis import optimize
from layerscope.models import load_preset

MODULE = "backbone.layer4"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--channels", type=int, default=2, help="channels optimized as one batch")
    p.add_argument("--steps", type=int, default=32, help="steps per timed round")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    device = torch.device(args.device)
    model = load_preset("deeplabv3_resnet50", weights=None).model.to(device).eval()
    channels = list(range(args.channels))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def ours() -> None:
        optimize._CACHE.pop(model, None)  # each round computes
        ls.visualize(model, MODULE, channels, size=args.size, steps=args.steps, progress=False,
                     device=device)  # fmt: skip

    def by_hand() -> None:
        x = torch.rand(args.channels, 3, args.size, args.size, device=device, requires_grad=True)
        opt = torch.optim.Adam([x], lr=0.05)
        flags = [(q, q.requires_grad) for q in model.parameters()]
        for q, _ in flags:
            q.requires_grad_(False)
        try:
            for _ in range(args.steps):
                out = model.backbone(x)["out"]
                loss = -out[torch.arange(args.channels), channels].mean((1, 2)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        finally:
            for q, flag in flags:
                q.requires_grad_(flag)

    cases = {"LayerScope visualize (fft, standard transforms)": ours,
             "by hand: forward to layer4 + backward + Adam on pixels": by_hand}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    order = random.Random(args.seed)
    for _ in range(args.rounds):
        order.shuffle(names)
        for name in names:
            sync()
            t0 = time.perf_counter()
            cases[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"DeepLabV3-ResNet50 {MODULE}, {args.size} px, {args.channels} channels per batch, "
          f"{args.steps} steps per round, {args.rounds} rounds in shuffled order, {where}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    print(f"{'case':56s} {'steps/s min':>11s} {'median':>8s} {'max':>8s} {'cold s':>8s}")
    rates = {}
    for name, ts in times.items():
        r = sorted(args.steps / t for t in ts)
        rates[name] = statistics.median(r)
        print(f"{name:56s} {r[0]:11.2f} {rates[name]:8.2f} {r[-1]:8.2f} {ts[0]:8.2f}")
    hand = rates[next(n for n in cases if n.startswith("by hand"))]
    ours_rate = rates[next(n for n in cases if n.startswith("LayerScope"))]
    print(f"LayerScope / by hand, steps per second: {ours_rate / hand:.2f}x (goal >= 0.9x)")
    per_channel = 256 / ours_rate / args.channels
    print(
        f"seconds per channel at the default 256 steps, {args.channels} per batch: "
        f"{per_channel:.1f} s"
    )


if __name__ == "__main__":
    main()
