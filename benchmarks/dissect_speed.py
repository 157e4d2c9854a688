"""Dissection: its throughput against a sweep of the same modules, and its memory as the number
of images grows.

    .venv/bin/python benchmarks/dissect_speed.py     # DeepLabV3-ResNet50, 224 px, batch 8, CPU

DeepLabV3-ResNet50 with random weights (``weights=None, weights_backbone=None``), modules
``backbone.layer3`` and ``backbone.layer4`` (3072 channels), generated JPEGs (480 x 360, smooth
random shapes and noise, as ``sweep_speed.py`` writes them) and label PNGs of the same size
(random shapes of 21 classes, a 255 border), in a temporary folder. Both run the same
preprocessing (resize and centre crop to ``--size``) and batch size; the sweep keeps 16 images
per channel, the dissection runs its passes (usually two: thresholds, then IoU; the count is
printed). The first round is cold (torch's first calls, the file cache); then ``--rounds``
rounds in a shuffled (seeded) order, min/median/max seconds each, images/s and the ratio from
the medians.

Memory, at N and 10 N images (``--memory-images``, at ``--memory-size`` px so that 10 N stays
quick), each in a fresh process: the bytes of the dissection's running state (the sketches'
and the IoU counts' tensors, largest over the run), the peak of Python's own allocations
(tracemalloc: the per-image bookkeeping, a few hundred bytes an image) and the peak resident
set."""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from sweep_speed import write_images
from torchvision.models.segmentation import deeplabv3_resnet50

import layerscope as ls
from layerscope.dissect.state import RunState

MODULES = ["backbone.layer3", "backbone.layer4"]


def write_masks(folder: Path, images: list[Path], seed: int) -> Path:
    """A label PNG per image: shapes of classes 0-20 on background 0, a border of 255."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for p in images:
        lab = Image.new("L", (480, 360), 0)
        draw = ImageDraw.Draw(lab)
        for _ in range(6):
            x0, y0 = rng.integers(0, 440), rng.integers(0, 320)
            w, h = rng.integers(20, 200, 2)
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=int(rng.integers(1, 21)))
        draw.rectangle([0, 0, 479, 359], outline=255, width=3)
        lab.save(folder / (p.stem + ".png"))
    return folder


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False).eval()


def tensor_bytes(obj: object) -> int:
    """Bytes of the tensors an object holds, in its attributes and theirs."""
    if isinstance(obj, torch.Tensor):
        return obj.nbytes
    if hasattr(obj, "__dict__"):
        return sum(tensor_bytes(v) for v in vars(obj).values())
    return 0


def state_bytes() -> list[int]:
    """Record, through RunState.merge, the largest byte size of the running state's tensors."""
    largest = [0]
    merge = RunState.merge

    def measured(self: RunState, part: object) -> None:
        merge(self, part)  # type: ignore[arg-type]
        held = [*self.parts.values(), *self.tallies.values(), *self.thresholds.values()]
        largest[0] = max(largest[0], sum(tensor_bytes(s) for s in held))

    RunState.merge = measured  # type: ignore[method-assign]
    return largest


def memory_child(folder: str, n: int, size: int, batch: int) -> None:
    """In a fresh process: dissect the first ``n`` images of ``folder``; print the figures."""
    model = build()
    paths = sorted((Path(folder) / "img").glob("*.jpg"))[:n]
    largest = state_bytes()
    tracemalloc.start()
    pre = ls.Preprocess(resize=size, crop=(size, size))
    d = ls.dissect(model, paths, MODULES, masks=Path(folder) / "lab", batch_size=batch,
                   preprocess=pre, progress=False)  # fmt: skip
    _, peak = tracemalloc.get_traced_memory()
    assert d.images == n
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"state": largest[0], "python": peak, "rss_mib": rss}))


def memory(folder: Path, n: int, size: int, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(folder), "--images", str(n),
         "--size", str(size), "--batch", str(batch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="warm rounds, after the cold one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-images", type=int, default=8, help="N for the N / 10 N run")
    p.add_argument("--memory-size", type=int, default=96)
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.images, args.size, args.batch)
        return
    tmp = Path(tempfile.mkdtemp(prefix="dissect-bench-"))
    try:
        run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace, tmp: Path) -> None:
    model = build()
    images = write_images(tmp / "img", args.images, args.seed)
    labels = write_masks(tmp / "lab", images, args.seed)
    pre = ls.Preprocess(resize=args.size, crop=(args.size, args.size))
    passes: list[int] = []

    def dissect() -> None:
        def count(done: int, total: int) -> None:
            passes.append(total)

        ls.dissect(model, images, MODULES, masks=labels, preprocess=pre,
                   batch_size=args.batch, progress=count)  # fmt: skip

    cases = {
        "sweep (k=16)": lambda: ls.sweep(model, images, MODULES, k=16, preprocess=pre,
                                          batch_size=args.batch, progress=False),
        "dissect": dissect,
    }  # fmt: skip
    print(f"DeepLabV3-ResNet50, random weights, {' + '.join(MODULES)}, {args.size} px, batch "
          f"{args.batch}, {args.images} images, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, seed {args.seed}")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases)
    rng = random.Random(args.seed)
    for r in range(args.rounds + 1):
        if r:
            rng.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - t0)
    print(f"{'':14} {'cold s':>8} {'min s':>8} {'median s':>9} {'max s':>8} {'img/s':>7}")
    for name, ts in times.items():
        warm = ts[1:]
        m = statistics.median(warm)
        print(f"{name:14} {ts[0]:8.2f} {min(warm):8.2f} {m:9.2f} {max(warm):8.2f} "
              f"{args.images / m:7.2f}")  # fmt: skip
    ratio = statistics.median(times["dissect"][1:]) / statistics.median(times["sweep (k=16)"][1:])
    n_passes = round(passes[-1] / args.images) if passes else 0
    print(
        f"dissect / sweep (medians): {ratio:.2f}x, with {n_passes} passes over the images "
        "(goal: <= 2.2x with two)"
    )
    if not args.no_memory:
        n, size = args.memory_images, args.memory_size
        folder = tmp / "memory"
        found = write_images(folder / "img", 10 * n, args.seed + 1)
        write_masks(folder / "lab", found, args.seed + 1)
        one, ten = (memory(folder, k, size, args.batch) for k in (n, 10 * n))
        print(f"memory at {size} px: {n} images -> {10 * n} images")
        print(
            f"  dissection state (tensors): {one['state'] / 2**20:.2f} -> "
            f"{ten['state'] / 2**20:.2f} MiB (3072 channels x (sketch + 21 concepts))"
        )
        print(
            f"  Python allocations (tracemalloc peak): {one['python'] / 2**20:.2f} -> "
            f"{ten['python'] / 2**20:.2f} MiB"
        )
        print(f"  peak resident set: {one['rss_mib']:.0f} -> {ten['rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
