"""The Ray engine on a local Ray started by the test (two CPUs, bound to 127.0.0.1: no traffic
to any other address), against the local engine on the same images: the same top-k (sources
and scores) and statistics, whatever the split. Ray is shut down afterwards."""

from __future__ import annotations

import os
from pathlib import Path

# Ray reads this when it is imported: a single-node Ray then uses the loopback address only.
# Set before the import below (pytest imports this module when it collects the tests).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import numpy as np
import pytest
import torch
import torchvision

import layerscope as ls
from test_sweep import PRE, Tiny, make_images

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    # The workers import the test model's module (pickled by reference) from the tests folder.
    tests = str(Path(__file__).parent)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": tests}},
    )
    try:
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        yield
    finally:
        ray.shutdown()


def _same(a, b, module, channels):
    for c in channels:
        assert [e.source for e in a.top(module, c)] == [e.source for e in b.top(module, c)], c
        assert [e.score for e in a.top(module, c)] == pytest.approx(
            [e.score for e in b.top(module, c)], rel=1e-5
        )
        assert [e.location for e in a.top(module, c)] == [e.location for e in b.top(module, c)]
    sa, sb = a.stats(module), b.stats(module)
    assert sa.mean == pytest.approx(sb.mean, rel=1e-5, abs=1e-6)
    assert np.array_equal(sa.max, sb.max) and np.array_equal(sa.fraction_zero, sb.fraction_zero)


def test_ray_engine_equals_the_local_one(tmp_path, local_ray):
    make_images(tmp_path / "p", 13)
    (tmp_path / "p" / "broken.jpg").write_text("not an image")
    model = Tiny().eval()
    local = ls.sweep(model, tmp_path / "p", ["relu", "conv"], k=4, preprocess=PRE,
                     batch_size=3, progress=False)  # fmt: skip
    on_ray = ls.sweep(model, tmp_path / "p", ["relu", "conv"], k=4, preprocess=PRE,
                      batch_size=2, engine="ray", progress=False)  # fmt: skip
    assert on_ray.images == local.images == 13
    assert on_ray.skipped[0][0].endswith("broken.jpg") and len(on_ray.skipped) == 1
    _same(on_ray, local, "relu", range(6))
    _same(on_ray, local, "conv", range(6))
    assert list(on_ray.dead("relu")) == [5]
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    a = ls.sweep(net, tmp_path / "p", ["layer3"], k=3, preprocess=PRE, progress=False)
    b = ls.sweep(net, tmp_path / "p", ["layer3"], k=3, preprocess=PRE, engine="ray",
                 batch_size=4, progress=False)  # fmt: skip
    _same(b, a, "layer3", [0, 5, 99, 255])
