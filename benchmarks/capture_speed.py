"""Capture speed and memory against a plain forward, torchvision's feature extractor and TorchLens.

    .venv/bin/python benchmarks/capture_speed.py                  # CPU, DeepLabV3-ResNet50, 520 px
    .venv/bin/python benchmarks/capture_speed.py --device cuda --model deeplabv3_resnet101

What a user pays: every call gets a new input (so the cache misses, and hashing the input and
checking the weights are paid as in real use), with LayerScope's real defaults. For each case the
cold first call (LayerScope's state forgotten: the execution order is learned again, buffers are
fresh) is reported beside the warm median; the order of the cases rotates from round to round.
Memory is measured from outside: the peak resident set size of the process during the case
above what it held before (Linux resets the peak per case), or on a GPU the peak allocated.
Ratios are to a plain ``no_grad`` forward timed in the same rounds. Random weights: timing does
not depend on their values."""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.models.feature_extraction import create_feature_extractor

import layerscope as ls
from layerscope.models import load_preset

FIVE = ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "classifier"]
_STATUS = Path("/proc/self/status")


def _rss_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class Peak:
    """Peak memory of a block above what the process held when it began."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def __enter__(self) -> Peak:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            self.start = _rss_kib("VmRSS") * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated() - self.start
        else:
            self.bytes = _rss_kib("VmHWM") * 1024 - self.start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="deeplabv3_resnet50")
    p.add_argument("--size", type=int, default=520)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--torchlens-reps", type=int, default=1, help="0 skips TorchLens")
    args = p.parse_args()

    device = torch.device(args.device)
    model = load_preset(args.model, weights=None).model.to(device)
    every = [n for n, _ in model.named_modules() if n]
    storage = "cpu" if device.type == "cpu" else None  # on a GPU, keep captures on the GPU
    cap = ls.Capturer(model, storage=storage)
    fx = create_feature_extractor(model, FIVE)
    gen = torch.Generator(device=device).manual_seed(0)

    def new_input() -> torch.Tensor:
        return torch.randn(1, 3, args.size, args.size, device=device, generator=gen)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def quiet(fn: Callable[[], object]) -> Callable[[], object]:
        def run() -> object:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)  # the budget at work, on purpose
                return fn()

        return run

    # A budget belongs to a model: the 4 GiB case has a model of its own, as a user would.
    roomy_model = load_preset(args.model, weights=None).model.to(device)
    roomy_cap = ls.Capturer(roomy_model, storage=storage, memory_budget=4 * 2**30)

    def roomy() -> object:
        return roomy_cap.capture(new_input(), every, stop_early=False)

    cases: dict[str, Callable[[], object]] = {
        "plain forward (no_grad)": lambda: _plain(model, new_input()),
        "five stages (default: cache on, stops after classifier)": quiet(
            lambda: cap.capture(new_input(), FIVE)
        ),
        "five stages, to the end (stop_early=False)": quiet(
            lambda: cap.capture(new_input(), FIVE, stop_early=False)
        ),
        f"every module ({len(every)}), default 1 GiB budget": quiet(
            lambda: cap.capture(new_input(), every, stop_early=False)
        ),
        f"every module ({len(every)}), 4 GiB budget (all float32)": roomy,
        "backbone.layer1 alone (default: early stop)": quiet(
            lambda: cap.capture(new_input(), ["backbone.layer1"])
        ),
        "create_feature_extractor, five stages": lambda: _plain(fx, new_input()),
    }
    _plain(model, new_input())  # torch's own first-call costs are not LayerScope's
    cold: dict[str, float] = {}
    peak: dict[str, int] = {}
    for name, fn in cases.items():
        cap.forget()  # cold: nothing learned, nothing cached, no buffers to reuse
        roomy_cap.forget()
        with Peak(device) as mem:
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            cold[name] = time.perf_counter() - t0
        peak[name] = mem.bytes
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    for r in range(args.reps):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate the first case
            sync()
            t0 = time.perf_counter()
            cases[name]()
            sync()
            times[name].append(time.perf_counter() - t0)

    # The cache on its own: the same input again (its values hashed, the weights checked).
    x = new_input()
    cap.capture(x, ["backbone.layer4"])
    key = "cached module, same input (no forward)"
    times[key] = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        acts = cap.capture(x, ["backbone.layer4"])
        times[key].append(time.perf_counter() - t0)
        assert acts.from_cache

    if args.torchlens_reps:
        try:
            import torchlens

            key = "torchlens.trace (all layers)"
            times[key] = []
            for _ in range(args.torchlens_reps):
                sync()
                t0 = time.perf_counter()
                torchlens.trace(model, new_input())
                sync()
                times[key].append(time.perf_counter() - t0)
        except Exception as exc:  # report, do not hide, a comparison that could not run
            print(f"torchlens.trace failed: {type(exc).__name__}: {exc}")

    base = statistics.median(times["plain forward (no_grad)"])
    print(
        f"{args.model}, {args.size}x{args.size}, {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"warm median of {args.reps} rotated rounds, a new input per call"
    )
    print(f"{'case':56s} {'warm':>10s} {'ratio':>7s} {'cold':>10s} {'peak mem':>9s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        c = f"{_fmt(cold[name])}" if name in cold else ""
        mem = f"{peak[name] / 2**20:6.0f} MiB" if name in peak else ""
        print(f"{name:56s} {_fmt(m):>10s} {m / base:6.3f}x {c:>10s} {mem:>9s}")


def _plain(model: torch.nn.Module, x: torch.Tensor) -> object:
    with torch.no_grad():
        return model(x)


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 0.1 else f"{seconds:7.3f} s "


if __name__ == "__main__":
    main()
