"""How long each example notebook takes top to bottom, as a lecturer running it pays.

    .venv/bin/python benchmarks/notebook_speed.py                       # every example notebook
    .venv/bin/python benchmarks/notebook_speed.py deeplabv3_anatomy      # one of them

Each notebook runs headless in a fresh kernel (nbclient, as ``jupyter nbconvert --execute``
does) in a new temporary folder (so nothing a previous run saved beside it is reused), with the
notebook's own defaults: 520 px images, pretrained weights where they can be downloaded, random
weights otherwise (said in the output). Per-cell times come from the kernel's execution
timestamps. Beside them, in the same run, a plain ``no_grad`` 520 px forward of DeepLabV3-ResNet50
(the median of three after one warm-up), so the totals can be read as "about N forwards".
Kernel start-up is counted in the total, as it is for a person pressing "Run all"."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "example_notebooks"


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _cell_seconds(cell: nbformat.NotebookNode) -> float | None:
    times = cell.get("metadata", {}).get("execution", {})
    start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
    if not start or not end:
        return None
    return _stamp(end) - _stamp(start)


def run_notebook(path: Path, timeout: int) -> tuple[float, list[tuple[float, int, str]]]:
    """Total wall time, and (seconds, cell number, first line) of every code cell."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="notebook_speed_") as folder:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", record_timing=True,
            resources={"metadata": {"path": folder}},
        )  # fmt: skip
        start = time.perf_counter()
        client.execute(env=dict(os.environ))
        total = time.perf_counter() - start
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    if errors:
        raise SystemExit(f"{path.name} raised: {errors[0].ename}: {errors[0].evalue}")
    cells = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            seconds = _cell_seconds(cell)
            first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
            cells.append((seconds or 0.0, i, first[:70]))
    return total, cells


def plain_forward_seconds(size: int) -> float:
    from torchvision.models.segmentation import deeplabv3_resnet50

    model = deeplabv3_resnet50(weights=None, weights_backbone=None).eval()
    x = torch.randn(1, 3, size, size)
    times = []
    with torch.no_grad():
        model(x)  # warm-up
        for _ in range(3):
            start = time.perf_counter()
            model(torch.randn(1, 3, size, size))
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook stems (default: every example)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds a cell may take")
    parser.add_argument("--slowest", type=int, default=5)
    args = parser.parse_args()
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.stem in args.names]
    forward = plain_forward_seconds(520)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"LAYERSCOPE_WEIGHTS={os.environ.get('LAYERSCOPE_WEIGHTS', '(default)')}")  # fmt: skip
    print(f"plain 520 px forward of DeepLabV3-ResNet50: {forward:.2f} s (median of 3)\n")
    for path in paths:
        total, cells = run_notebook(path, args.timeout)
        print(f"{path.name}: {total:.1f} s in all ({total / forward:.0f} plain forwards), "
              f"{len(cells)} code cells")  # fmt: skip
        for seconds, i, first in sorted(cells, reverse=True)[: args.slowest]:
            print(f"    cell {i:3d}  {seconds:6.1f} s  {first}")
        print()
    # After the notebooks too: a machine that got busier shows here.
    print(f"plain forward again after the notebooks: {plain_forward_seconds(520):.2f} s")


if __name__ == "__main__":
    main()
