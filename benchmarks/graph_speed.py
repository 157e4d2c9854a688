"""The graph of a big model: EfficientNet-B7 (1,105 modules), random weights.

    .venv/bin/python benchmarks/graph_speed.py            # Python side, then the browser
    .venv/bin/python benchmarks/graph_speed.py --no-browser

Python side: recording the first forward with and without the flow recorder (what the graph
adds to the Explorer's first forward), the graph and its layered drawing at the Explorer's
opening level (the stages collapsed), one stage and one block expanded, and the spec's size.
Browser side (JupyterLab + Chromium, as benchmarks/browser_speed.py): from the toolbar's Graph
click to the graph on screen, and from a tree caret's click (expanding a stage) to the graph
showing its blocks. Each figure: min / median / max of the repeats, the first (cold) apart."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import layerscope as ls  # noqa: E402
from layerscope.graph import graph_of, layered  # noqa: E402
from layerscope.graph.draw import drawing, graph_spec  # noqa: E402
from layerscope.graph.record import record  # noqa: E402
from layerscope.widget.spec import for_browser  # noqa: E402


def _stats(xs: list[float]) -> str:
    return f"min {min(xs):.1f}  median {statistics.median(xs):.1f}  max {max(xs):.1f} ms"


def _both(g):
    return g.nodes, g.edges


def timed(fn, reps: int) -> tuple[float, list[float]]:
    out = []
    for _ in range(reps + 1):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out[0], out[1:]


def python_side(reps: int, size: int) -> None:
    torch.manual_seed(0)
    model = torchvision.models.efficientnet_b7(weights=None).eval()
    x = torch.randn(1, 3, size, size)
    print(f"EfficientNet-B7, {sum(1 for _ in model.named_modules())} modules, {size} px input")

    def plain() -> None:
        with torch.no_grad():
            model(x)

    cold, warm = timed(plain, reps)
    print(f"forward alone                   cold {cold:.0f} ms   {_stats(warm)}")
    cold, warm = timed(lambda: record(model, x), reps)
    print(f"forward recorded                cold {cold:.0f} ms   {_stats(warm)}")
    rec = record(model, x)
    print(f"  events recorded: {len(rec.events)}")

    def opening():
        g = graph_of(model, rec, depth=1)
        return g, layered(g.nodes, g.edges)

    cold, warm = timed(opening, reps)
    g, _ = opening()
    print(f"graph + layout, stages ({len(g.nodes)} nodes)  cold {cold:.1f}  {_stats(warm)}")
    for depth in (2, 99):  # the blocks; every module without children
        cold, warm = timed(lambda d=depth: layered(*_both(graph_of(model, rec, depth=d))), reps)
        n = len(graph_of(model, rec, depth=depth).nodes)
        print(f"graph + layout, depth {depth} ({n} nodes)  cold {cold:.1f}  {_stats(warm)}")
    g.expand("features.3")

    def expand_block():
        g.open_only(["features", "features.3", "features.3.1"])
        return layered(g.nodes, g.edges)

    cold, warm = timed(expand_block, reps)
    print(f"stage 3 and one block open ({len(g.nodes)} nodes)  cold {cold:.1f}  {_stats(warm)}")
    spec = graph_spec({**drawing(g), "hooked": [], "selected": ""})
    cold, warm = timed(lambda: for_browser(graph_spec({**drawing(g), "hooked": [],
                                                       "selected": ""})), reps)  # fmt: skip
    size_kb = len(json.dumps(for_browser(spec))) / 1e3
    print(f"spec built and encoded          {_stats(warm)}  ({size_kb:.0f} KB as JSON)")


def browser_side(reps: int, size: int) -> None:
    from browser.lab import KERNEL_IDLE, quickstart_page, run_cell

    on_screen = """async ([click, want]) => {
      const plot = document.querySelector('.layerscope-plot-graph');
      const shown = () => !plot.hidden && plot._fullData && plot._fullData.some(
        (d) => d.meta && d.meta.role === 'modules' && d.customdata.includes(want));
      const t0 = performance.now();
      const done = new Promise((resolve) => {
        const obs = new MutationObserver(() => {
          if (shown()) { obs.disconnect(); requestAnimationFrame(() => resolve()); }
        });
        obs.observe(plot, {subtree: true, childList: true, attributes: true});
      });
      document.querySelector(click).click();
      const late = new Promise((resolve) => setTimeout(() => resolve("late"), 60000));
      if ((await Promise.race([done, late])) === "late") {
        throw new Error(`${want} not drawn in 60 s`);
      }
      return performance.now() - t0;
    }"""
    with quickstart_page({"LAYERSCOPE_WEIGHTS": "none"}) as page:
        run_cell(page, "import torchvision, layerscope as ls\n"
                       "m = torchvision.models.efficientnet_b7(weights=None).eval()\n"
                       f"big = ls.Explorer(m, image_size={size}, class_names=[str(i) for i in "
                       "range(1000)])\nbig", timeout=300_000)  # fmt: skip
        page.wait_for_selector('.layerscope-node[data-id="features.3"]', timeout=300_000)
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)

        def settle() -> None:
            page.wait_for_function(KERNEL_IDLE, timeout=120_000)
            page.wait_for_timeout(400)

        settle()
        opened, expanded = [], []
        caret = '.layerscope-node[data-id="features.3"] .layerscope-caret'
        for _ in range(reps + 1):
            opened.append(page.evaluate(on_screen, [".layerscope-show-graph", "features.3"]))
            settle()
            expanded.append(page.evaluate(on_screen, [caret, "features.3.1"]))
            settle()
            page.click(caret)  # closed again
            settle()
            page.click(".layerscope-show-graph")  # hidden again
            settle()
    print("browser (JupyterLab + Chromium, headless):")
    print(f"Graph click -> drawn, stages    cold {opened[0]:.0f} ms   {_stats(opened[1:])}")
    print(f"stage opened in the tree -> drawn  cold {expanded[0]:.0f} ms   {_stats(expanded[1:])}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--no-browser", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    python_side(args.reps, args.size)
    if not args.no_browser:
        browser_side(args.reps, args.size)
    _ = ls  # the package under test


if __name__ == "__main__":
    main()
