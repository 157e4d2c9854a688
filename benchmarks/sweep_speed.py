"""Dataset sweep: its throughput against plain batched inference, the Ray engine against the local
one, and its peak memory as the number of images grows.

    .venv/bin/python benchmarks/sweep_speed.py       # DeepLabV3-ResNet50, 224 px, batch 8, CPU

Every case of every round reads images never read before: before each one, outside the timed
region, a new set of JPEGs (480 x 360, smooth random shapes and noise; seeded by the run's seed,
the round and the case, so no two sets share content) is written to a folder of its own, synced
and dropped from the OS page cache (posix_fadvise DONTNEED, best effort), so neither the OS nor
LayerScope can have seen them. Plain inference is what a user writes by hand over such files:
open, preprocess (resize 224, centre crop 224, normalise), stack 8, forward under no_grad. The
sweeps use the same preprocessing and batch size. Configurations run interleaved, the order
shuffled per round (seeded), after one warm-up batch so torch's own first-call costs fall on no
case. Printed per case: the first (cold) round, then min/median/max seconds over the warm rounds
(all but the first), the median as images/s and against plain inference. The Ray engine runs on
a local Ray (all the machine's CPUs, loopback only), started by this script: its cold figure
includes starting Ray. Peak memory: the peak resident set of a fresh process sweeping N and then
10 N images (five stages), each in its own process."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

import layerscope as ls
from layerscope.dataset import DEFAULT_PREPROCESS, IMAGE_SUFFIXES
from layerscope.models import load_preset

STAGES = [f"backbone.layer{i}" for i in range(1, 5)] + ["classifier"]


def write_images(folder: Path, n: int, seed: int | list[int]) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        base = rng.integers(0, 256, 3)
        img = Image.new("RGB", (480, 360), tuple(int(v) for v in base))
        draw = ImageDraw.Draw(img)
        for _ in range(12):
            x0, y0 = rng.integers(0, 440), rng.integers(0, 320)
            w, h = rng.integers(20, 200, 2)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
        noise = rng.normal(0, 12, (360, 480, 3))
        pixels = np.clip(np.asarray(img.filter(ImageFilter.GaussianBlur(2)), float) + noise, 0, 255)
        p = folder / f"photo{i:04d}.jpg"
        Image.fromarray(pixels.astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


def fresh_images(folder: Path, n: int, seed: list[int]) -> list[Path]:
    """``n`` JPEGs never seen before, on disk and out of the OS page cache where the OS allows."""
    paths = write_images(folder, n, seed)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # written pages must be clean before the kernel will drop them
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return paths


def plain(model: torch.nn.Module, paths: list[Path], batch: int, device: str) -> None:
    """Batched inference as a user writes it: no hooks, nothing kept."""
    for start in range(0, len(paths), batch):
        x = torch.cat(
            [DEFAULT_PREPROCESS(Image.open(p)).tensor for p in paths[start : start + batch]]
        )
        with torch.no_grad():
            model(x.to(device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def memory_child(folder: str, n: int, batch: int) -> None:
    """In a fresh process: sweep the first ``n`` images of ``folder``, print the peak RSS."""
    torch.manual_seed(0)
    model = load_preset("deeplabv3_resnet50", weights=None).model
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix in IMAGE_SUFFIXES)[:n]
    sw = ls.sweep(model, paths, STAGES, k=16, batch_size=batch, progress=False)
    assert sw.images == n
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    status = Path("/proc/self/status").read_text()
    now_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    print(json.dumps({"images": n, "peak_mib": peak_kib / 1024, "end_mib": now_kib / 1024}))


def memory(folder: Path, n: int, batch: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(folder), "--images", str(n),
         "--batch", str(batch)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3, help="the first is the cold one; at least 2")
    p.add_argument("--seed", type=int, help="seeds the images and the shuffle (default: the clock)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-every-module", action="store_true")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--memory-only", action="store_true")
    p.add_argument("--memory-images", type=int, default=16, help="N for the 1x / 10x memory run")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.images, args.batch)
        return

    if args.rounds < 2 and not args.memory_only:
        p.error("--rounds must be at least 2: the first round is the cold one")
    tmp = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    seed = args.seed if args.seed is not None else time.time_ns() % 2**32
    if args.memory_only:
        report_memory(tmp, seed, args.memory_images, args.batch)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    torch.manual_seed(0)
    model = load_preset("deeplabv3_resnet50", weights=None, device=args.device).model
    every = [n for n, _ in model.named_modules() if n]
    # Each run takes the paths of a fresh set of images (written before the clock starts).
    runs: dict[str, Callable[[list[Path]], object]] = {
        "plain inference": lambda paths: plain(model, paths, args.batch, args.device),
        "sweep, five stages": lambda paths: ls.sweep(
            model, paths, STAGES, batch_size=args.batch, progress=False
        ),
    }
    if not args.no_every_module:
        runs[f"sweep, every module ({len(every)})"] = lambda paths: ls.sweep(
            model, paths, every, batch_size=args.batch, progress=False
        )
    if not args.no_ray:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # a local Ray on loopback only
        import ray

        def on_ray(paths: list[Path]) -> None:
            if not ray.is_initialized():
                ray.init(include_dashboard=False, log_to_driver=False)
            ls.sweep(model, paths, STAGES, batch_size=args.batch, engine="ray", progress=False)

        runs["sweep on Ray (local), five stages"] = on_ray

    print(f"DeepLabV3-ResNet50, random weights, 224 px, batch {args.batch}, {args.images} new "
          f"JPEG images per case and round (never read before), {args.device}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.rounds} rounds "
          f"in shuffled order (seed {seed})")  # fmt: skip
    with torch.no_grad():  # torch's own first-call costs are no case's
        model(torch.zeros(args.batch, 3, 224, 224, device=args.device))
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    order_rng = random.Random(seed)
    for r in range(args.rounds):
        order_rng.shuffle(names)  # no case always follows the same neighbour
        for name in names:
            case = list(runs).index(name)
            folder = tmp / f"round{r}-case{case}"
            paths = fresh_images(folder, args.images, [seed, r, case])  # outside the clock
            t0 = time.perf_counter()
            runs[name](paths)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()  # the last batch's work counts
            times[name].append(time.perf_counter() - t0)
            shutil.rmtree(folder, ignore_errors=True)
    plain_warm = times["plain inference"][1:]
    if max(plain_warm) > 2 * min(plain_warm):
        print(f"WARNING: plain inference spread {min(plain_warm):.2f}-{max(plain_warm):.2f} s "
              "(over 2x): the machine is loaded, these figures are not comparable")  # fmt: skip
    base = statistics.median(plain_warm)
    print(f"{'':36} {'cold s':>8} {'min s':>8} {'median s':>8} {'max s':>8} "
          f"{'img/s':>8} {'vs plain':>9}")  # fmt: skip
    for name, ts in times.items():
        warm = ts[1:]
        m = statistics.median(warm)
        print(f"{name:36} {ts[0]:8.2f} {min(warm):8.2f} {m:8.2f} {max(warm):8.2f} "
              f"{args.images / m:8.2f} {base / m:8.2f}x")  # fmt: skip
    print(
        f"min/median/max over the {args.rounds - 1} warm round(s); img/s and vs plain "
        "(plain's time / this one's: above 1x is faster) from the medians"
    )
    if not args.no_ray:
        local = statistics.median(times["sweep, five stages"][1:])
        ray_t = statistics.median(times["sweep on Ray (local), five stages"][1:])
        print(f"Ray engine / local engine, five stages (warm): {local / ray_t:.2f}x")
        ray.shutdown()
    if not args.no_memory:
        report_memory(tmp, seed + 1, args.memory_images, args.batch)
    shutil.rmtree(tmp, ignore_errors=True)


def report_memory(tmp: Path, seed: int, n: int, batch: int) -> None:
    write_images(tmp / "memory", 10 * n, seed)
    one = memory(tmp / "memory", n, batch)
    ten = memory(tmp / "memory", 10 * n, batch)
    print(f"peak memory (resident), five stages: {n} images {one['peak_mib']:.0f} MiB, "
          f"{10 * n} images {ten['peak_mib']:.0f} MiB "
          f"({(ten['peak_mib'] / one['peak_mib'] - 1) * 100:+.1f} %); at the end "
          f"{one['end_mib']:.0f} and {ten['end_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
