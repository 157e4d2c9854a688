"""The Ray engine on a local Ray started by the test (two CPUs, bound to 127.0.0.1: no traffic
to any other address), against the local engine on the same images: the same top-k (sources
and scores) and statistics, whatever the split. Ray is shut down afterwards."""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import layerscope as ls
from layerscope.errors import LayerScopeError
from test_sweep import PRE, Tiny, make_images

ray = pytest.importorskip("ray")


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


# A user's own module next to the notebook: importable on the driver only (its folder is put on
# sys.path after Ray started, so Ray's workers do not see it). The model's layers come from a
# second such module, the preprocessing from a third: every one must reach the workers.
USER_LAYERS = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))
"""

USER_MODEL = """
import torch
from torch import nn

import hlayers


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.block = hlayers.Block(3, 5)
        self.head = nn.Linear(5, 2)

    def forward(self, x):
        return self.head(self.block(x).mean((2, 3)))
"""

USER_PREPROCESS = '''
import numpy as np
import torch

SIZE = 24


def prepare(image):
    """A plain callable: RGB PIL image -> (3, SIZE, SIZE) tensor."""
    a = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32) / 255.0
    return torch.from_numpy(a).permute(2, 0, 1) - 0.5
'''

# A model whose forward (and a preprocessing that) imports a helper lazily: nothing on the driver
# can tell that the workers will need ``hlazyhelp``, so it cannot be shipped; the sweep must say
# so, naming it.
USER_LAZY = """
import torch
from torch import nn


class LazyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x):
        import hlazyhelp

        return hlazyhelp.twice(self.conv(x))


def prepare(image):
    import hlazyhelp

    return hlazyhelp.twice(torch.zeros(3, 8, 8))
"""


def _driver_only(tmp_path, monkeypatch, files):
    code = tmp_path / "code"
    code.mkdir()
    for name, text in files.items():
        (code / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(code))
    for name in files:  # a stale copy from another test must not stand in
        monkeypatch.delitem(sys.modules, name, raising=False)
    return code


def _workers_can_import(name):
    @ray.remote(num_cpus=0)
    def probe(module):
        return importlib.util.find_spec(module) is not None

    return ray.get(probe.remote(name))


def test_a_model_from_the_users_own_module_runs_on_ray(tmp_path, monkeypatch, local_ray):
    _driver_only(
        tmp_path,
        monkeypatch,
        {"hlayers": USER_LAYERS, "hmodel": USER_MODEL, "hprep": USER_PREPROCESS},
    )
    import hmodel
    import hprep

    assert not _workers_can_import("hmodel")  # the situation of the issue, on this machine
    make_images(tmp_path / "p", 7)
    model = hmodel.Net().eval()
    local = ls.sweep(model, tmp_path / "p", ["block.relu"], k=3, preprocess=hprep.prepare,
                     batch_size=3, progress=False)  # fmt: skip
    registered = set(ray.cloudpickle.list_registry_pickle_by_value())
    on_ray = ls.sweep(model, tmp_path / "p", ["block.relu"], k=3, preprocess=hprep.prepare,
                      batch_size=2, engine="ray", progress=False)  # fmt: skip
    assert on_ray.images == local.images == 7 and not on_ray.skipped
    _same(on_ray, local, "block.relu", range(5))
    # By hand: channel 0's best image is the one with the largest activation anywhere.
    with torch.no_grad():
        peaks = [model.block(hprep.prepare(Image.open(p))[None])[0, 0].max().item()
                 for p in make_images(tmp_path / "q", 7)]  # fmt: skip
    assert on_ray.top("block.relu", 0)[0].score == pytest.approx(max(peaks), rel=1e-5)
    # The user's process is left as found: nothing stays registered for pickling by value.
    assert set(ray.cloudpickle.list_registry_pickle_by_value()) == registered


def test_a_module_the_workers_cannot_import_is_named(tmp_path, monkeypatch, local_ray):
    code = _driver_only(
        tmp_path,
        monkeypatch,
        {"hlazy": USER_LAZY, "hlazyhelp": "def twice(x):\n    return 2 * x\n"},
    )
    import hlazy

    make_images(tmp_path / "p", 3)
    model = hlazy.LazyNet().eval()
    assert ls.sweep(model, tmp_path / "p", ["conv"], k=2, preprocess=PRE, progress=False).images
    with pytest.raises(LayerScopeError) as caught:
        ls.sweep(model, tmp_path / "p", ["conv"], k=2, preprocess=PRE, engine="ray",
                 progress=False)  # fmt: skip
    message = str(caught.value)
    assert "'hlazyhelp'" in message and "py_modules" in message
    assert str(code / "hlazyhelp.py") in message  # what to pass, found on the driver
    # The same from the preprocessing: an error, not every image listed as unreadable.
    with pytest.raises(LayerScopeError, match="'hlazyhelp'.*py_modules"):
        ls.sweep(Tiny().eval(), tmp_path / "p", ["conv"], k=2, preprocess=hlazy.prepare,
                 engine="ray", progress=False)  # fmt: skip
