"""The Ray engine of dissect and ablation_effect on a local Ray started by the test (two CPUs,
bound to 127.0.0.1: no traffic to any other address), against the local engine on the same
images: the same thresholds, counts and skipped images, whatever the split. Ray is shut down
afterwards."""

from __future__ import annotations

import pytest
import torch

import layerscope as ls
from test_dissect import CLASSES, PRE, RAW, Levels, levels_data, make_data
from test_dissect_ablation import Segmenter

ray = pytest.importorskip("ray")


def test_ray_dissection_equals_the_local_one(tmp_path, local_ray):
    """A channel left open by the sketch pass and settled in the IoU pass (its finer counts and
    buckets merged from the workers), a skipped image, an unreadable one."""
    levels_data(tmp_path, packed=False)
    (tmp_path / "lab" / "im04.png").unlink()  # skipped: no mask
    (tmp_path / "img" / "broken.png").write_text("not an image")
    model = Levels().eval()
    # One image per forward in both engines: a convolution's last bits depend on its batch.
    runs = [ls.dissect(model, tmp_path / "img", ["conv", "relu"], masks=tmp_path / "lab",
                       classes=CLASSES, preprocess=RAW, batch_size=1, engine=engine,
                       progress=False)  # fmt: skip
            for engine in ("local", "ray")]  # fmt: skip
    local, on_ray = runs
    assert on_ray.images == local.images == 9
    assert sorted(on_ray.skipped) == sorted(local.skipped) and len(local.skipped) == 2
    assert not local.exact["relu"][0] and local.record["passes"] == 2  # settled in the IoU pass
    for m in ("conv", "relu"):
        assert torch.equal(on_ray.threshold(m), local.threshold(m))
        assert torch.equal(on_ray.exact[m], local.exact[m])
        assert torch.equal(on_ray.hits[m], local.hits[m])
        assert torch.equal(on_ray.fired[m], local.fired[m])
    assert torch.equal(on_ray.area, local.area)


def test_ray_ablation_effect_equals_the_local_one(tmp_path, local_ray):
    make_data(tmp_path, 6)
    model = Segmenter().eval()
    kw = dict(masks=tmp_path / "lab", classes=CLASSES, repeats=2, preprocess=PRE, batch_size=4)
    local = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0, 1])}, **kw)
    on_ray = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0, 1])},
                                engine="ray", **kw)  # fmt: skip
    assert torch.equal(on_ray.confusion, local.confusion)
    assert on_ray.table() == local.table()
