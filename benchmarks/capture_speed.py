"""Capture speed and memory against a plain forward, torchvision's feature extractor and TorchLens.

    .venv/bin/python benchmarks/capture_speed.py                  # CPU, DeepLabV3-ResNet50, 520 px
    .venv/bin/python benchmarks/capture_speed.py --device cuda --model deeplabv3_resnet101

What a user pays: every call gets a new input (so the cache misses, and hashing the input and
checking the weights are paid as in real use), with LayerScope's real defaults. For each case the
cold first call (LayerScope's state forgotten: the execution order is learned again, buffers are
fresh) is reported beside the warm min/median/max; the order of the cases is shuffled every round
(seeded), so no case always follows the same neighbour.
Memory is measured from outside: the peak resident set size of the process during the case
above what it held before (Linux resets the peak per case), or on a GPU the peak allocated.
Ratios are to a plain ``no_grad`` forward timed in the same rounds. Random weights: timing does
not depend on their values.

Not every row does the same work as the plain forward: the default "five stages" capture stops
after ``classifier`` and skips ``aux_classifier``, which the plain forward pays for (its
``stop_early=False`` sibling is printed beside it), and "every module" within the default 1 GiB
budget is lossy at the default size: under each LayerScope row that kept anything in less than
float32 (and under every "every module" row) a line counts, from the returned captures of the
cold call and of the last timed call, the module outputs kept in float32, in bfloat16 and dropped
by the budget, and a lossy row's name says LOSSY."""

from __future__ import annotations

import argparse
import random
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torchvision.models.feature_extraction import create_feature_extractor

import layerscope as ls
from layerscope.models import load_preset
from layerscope.nested import iter_tensors

FIVE = ["backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4", "classifier"]
_STATUS = Path("/proc/self/status")


def _rss_kib(field: str) -> int:
    for line in _STATUS.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def stored_as(acts: ls.Activations) -> dict[str, int]:
    """How the memory budget kept each requested module's outputs, counted from the captures
    themselves: floats in float32, in bfloat16, dropped (evicted: no output returned), never ran
    (a container such as a ModuleList), or anything else (another dtype, mixed)."""
    evicted = set(acts.memory.evicted) if acts.memory else set()
    counts = {"float32": 0, "bfloat16": 0, "dropped": 0, "never ran": 0, "other": 0}
    for name in acts.requested:
        calls = acts.calls(name)
        if not calls:
            counts["dropped" if name in evicted else "never ran"] += 1
            continue
        dtypes = {t.dtype for c in calls for t in iter_tensors(c) if t.is_floating_point()}
        if dtypes == {torch.float32}:
            counts["float32"] += 1
        elif torch.bfloat16 in dtypes:  # the budget's reduced precision (these models: float32)
            counts["bfloat16"] += 1
        else:
            counts["other"] += 1
    return counts


def _describe(counts: dict[str, int]) -> str:
    text = (
        f"{counts['float32']} in float32, {counts['bfloat16']} in bfloat16, "
        f"{counts['dropped']} dropped"
    )
    extra = "".join(f", {counts[k]} {k}" for k in ("never ran", "other") if counts[k])
    return text + extra


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
    p.add_argument("--seed", type=int, default=0, help="seeds the per-round shuffle of the cases")
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

    reused = ReusedBuffers(model, every)
    # A budget belongs to a model: the 4 GiB case has a model of its own, as a user would.
    roomy_model = load_preset(args.model, weights=None).model.to(device)
    roomy_cap = ls.Capturer(roomy_model, storage=storage, memory_budget=4 * 2**30)

    def roomy() -> object:
        return roomy_cap.capture(new_input(), every, stop_early=False)

    cases: dict[str, Callable[[], object]] = {
        "plain forward (no_grad)": lambda: _plain(model, new_input()),
        "five stages (default: stop_early, skips aux_classifier)": quiet(
            lambda: cap.capture(new_input(), FIVE)
        ),
        "five stages, to the end (stop_early=False)": quiet(
            lambda: cap.capture(new_input(), FIVE, stop_early=False)
        ),
        f"every module ({len(every)}), default {cap.memory_budget / 2**30:g} GiB budget": quiet(
            lambda: cap.capture(new_input(), every, stop_early=False)
        ),
        f"every module ({len(every)}), 4 GiB budget (float32)": roomy,
        "backbone.layer1 alone (default: early stop)": quiet(
            lambda: cap.capture(new_input(), ["backbone.layer1"])
        ),
        "create_feature_extractor, five stages": lambda: _plain(fx, new_input()),
        f"hand-written hooks, clone every call ({len(every)})": lambda: _by_hand(
            model, every, new_input()
        ),
        f"hand-written hooks, copy into buffers kept ({len(every)})": lambda: reused(new_input()),
    }
    _plain(model, new_input())  # torch's own first-call costs are not LayerScope's
    cold: dict[str, float] = {}
    peak: dict[str, int] = {}
    # How each capture's outputs were stored (counted outside the timed region; the result is
    # let go before the next call, as the benchmark did before, so it holds no extra memory).
    kept_cold: dict[str, dict[str, int]] = {}
    kept_last: dict[str, dict[str, int]] = {}
    for name, fn in cases.items():
        cap.forget()  # cold: nothing learned, nothing cached, no buffers to reuse
        roomy_cap.forget()
        reused.buffers.clear()
        with Peak(device) as mem:
            sync()
            t0 = time.perf_counter()
            out = fn()
            sync()
            cold[name] = time.perf_counter() - t0
        peak[name] = mem.bytes
        if isinstance(out, ls.Activations):
            kept_cold[name] = stored_as(out)
        del out
    times: dict[str, list[float]] = {k: [] for k in cases}
    names = list(cases)
    order_rng = random.Random(args.seed)
    for _ in range(args.reps):
        order_rng.shuffle(names)  # no case always follows the same neighbour
        for name in names:
            sync()
            t0 = time.perf_counter()
            out = cases[name]()
            sync()
            times[name].append(time.perf_counter() - t0)
            if isinstance(out, ls.Activations):
                kept_last[name] = stored_as(out)
            del out

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
        f"{args.reps} rounds in shuffled order (seed {args.seed}), a new input per call"
    )
    plain = times["plain forward (no_grad)"]
    if max(plain) > 2 * min(plain):
        print(
            f"WARNING: plain forward spread {min(plain):.3f}-{max(plain):.3f} s (over 2x): "
            "the machine is loaded, these figures are not comparable"
        )
    hdr = f"{'case':56s} {'min':>10s} {'median':>10s} {'max':>10s} {'ratio':>7s} {'cold':>10s}"
    print(f"{hdr} {'peak mem':>9s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        c = f"{_fmt(cold[name])}" if name in cold else ""
        mem = f"{peak[name] / 2**20:6.0f} MiB" if name in peak else ""
        spread = f"{_fmt(min(ts)):>10s} {_fmt(m):>10s} {_fmt(max(ts)):>10s}"
        first, last = kept_cold.get(name), kept_last.get(name, kept_cold.get(name))
        lossy = any(k and (k["bfloat16"] or k["dropped"]) for k in (first, last))
        label = f"{name}, LOSSY" if lossy else name
        print(f"{label:56s} {spread} {m / base:6.3f}x {c:>10s} {mem:>9s}")
        if first and last and (lossy or name.startswith("every module")):
            if first == last:
                where = f"cold and last call: {_describe(first)}"
            else:
                where = f"cold call: {_describe(first)}; last call: {_describe(last)}"
            verdict = "LOSSY, not what a float32 capture gives" if lossy else "lossless"
            print(f"    {verdict}: of {sum(first.values())} module outputs, {where}")


def _by_hand(model: torch.nn.Module, names: list[str], x: torch.Tensor) -> object:
    """What a user writes by hand to keep every module's output: a forward hook per module
    cloning each call's tensor output (before an in-place op can change it), removed after."""
    kept: dict[str, list[object]] = {}
    named = dict(model.named_modules())

    def hook(name: str) -> Callable[..., None]:
        def keep(_m: torch.nn.Module, _a: object, out: object) -> None:
            value = out.detach().clone() if isinstance(out, torch.Tensor) else out
            kept.setdefault(name, []).append(value)

        return keep

    handles = [named[n].register_forward_hook(hook(n)) for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return kept


class ReusedBuffers:
    """A careful hand-written lossless capture of every module: a forward hook per module
    copying each call's tensor output (a copy is needed: an in-place op after the module would
    change it) into a buffer kept from the call before, so no memory is allocated after the first
    call. What it keeps is overwritten by the next call: a comparison, not something to hand a
    user."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        self.model, self.names = model, names
        self.buffers: dict[tuple[str, int], torch.Tensor] = {}

    def __call__(self, x: torch.Tensor) -> object:
        kept: dict[str, list[object]] = {}
        named = dict(self.model.named_modules())

        def hook(name: str) -> Callable[..., None]:
            def keep(_m: torch.nn.Module, _a: object, out: object) -> None:
                calls = kept.setdefault(name, [])
                if isinstance(out, torch.Tensor):
                    key = (name, len(calls))
                    buf = self.buffers.get(key)
                    if buf is None or buf.shape != out.shape or buf.dtype != out.dtype:
                        buf = self.buffers[key] = torch.empty_like(out)
                    out = buf.copy_(out.detach())
                calls.append(out)

            return keep

        handles = [named[n].register_forward_hook(hook(n)) for n in self.names]
        try:
            with torch.no_grad():
                self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        return kept


def _plain(model: torch.nn.Module, x: torch.Tensor) -> object:
    with torch.no_grad():
        return model(x)


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms" if seconds < 0.1 else f"{seconds:7.3f} s "


if __name__ == "__main__":
    main()
