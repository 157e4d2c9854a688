"""The reductions the views use, against numpy; on the GPU when there is one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope import reduce
from layerscope.models import load_preset
from layerscope.spatial import spatial_maps


def test_reductions_agree_with_numpy():
    g = torch.Generator().manual_seed(0)
    t = torch.relu(torch.randn(1, 6, 5, 7, generator=g))
    maps, _ = spatial_maps(t)  # the (C, H, W) maps of the one sample
    a = maps.numpy()
    s = reduce.stats(maps)
    assert s.mean == pytest.approx(a.mean(), rel=1e-5) and s.std == pytest.approx(a.std(), rel=1e-4)
    assert s.zero_fraction == pytest.approx((a == 0).mean()) and s.count == a.size
    counts, edges = reduce.histogram(maps, bins=10)
    ref, ref_edges = np.histogram(a, bins=10, range=(a.min(), a.max()))
    assert counts.sum() == a.size and np.allclose(edges, ref_edges)
    assert np.abs(counts - ref).sum() <= 2  # histc and numpy may put an edge value apart
    assert np.allclose(reduce.aggregate(maps, "mean"), a.mean(0), atol=1e-6)
    assert np.allclose(reduce.aggregate(maps, "max"), a.max(0))
    assert np.allclose(reduce.aggregate(maps, "l2"), np.sqrt((a**2).sum(0)), atol=1e-5)
    top = reduce.topk_channels(maps, 3)
    assert list(top) == list(np.argsort(-a.reshape(6, -1).mean(1))[:3])
    assert np.array_equal(reduce.channel_map(maps, 2), a[2])
    assert np.allclose(reduce.value_at(maps, 1, 3), a[:, 1, 3])
    with pytest.raises(IndexError, match="6 channels"):
        reduce.channel_map(maps, 6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_capture_and_reduce_on_the_gpu(image_batch):
    from conftest import build_deeplab

    model = build_deeplab().cuda()
    acts = ls.capture(model, image_batch, ["backbone.layer4"], storage=None)
    t = acts["backbone.layer4"]
    assert t.device.type == "cuda"
    s = reduce.stats(spatial_maps(t)[0])
    assert s.count == t[0].numel()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_explorer_keeps_captures_on_the_gpu():
    preset = load_preset("deeplabv3_mobilenet_v3_large", weights=None, device="cuda")
    ex = ls.Explorer(
        preset.model,
        preprocess=preset.preprocess.with_size(128),
        class_names=preset.class_names,
        hooked_modules=["backbone.4"],
    )
    assert ex.activations["backbone.4"].device.type == "cuda"
    assert ex._layer["kind"] == "maps" and ex._error == ""
