"""Presets (offline), the module tree, and the reductions the views use."""

from __future__ import annotations

import urllib.error

import numpy as np
import pytest
import torch

import layerscope as ls
from layerscope import reduce
from layerscope.models import PretrainedWeightsUnavailable, load_preset
from layerscope.payload import spatial_maps


@pytest.mark.parametrize(
    "name", ["deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large"]
)
def test_presets_build_offline(name):
    preset = load_preset(name, weights=None, weights_backbone=None)
    assert not preset.model.training and not preset.pretrained
    assert len(preset.class_names) == 21 and preset.class_names[15] == "person"
    assert preset.notice and "Random weights" in preset.notice
    assert preset.model.aux_classifier is not None  # same tree as the pretrained model
    assert preset.preprocess.resize == 520


def test_download_failure_falls_back_to_random_with_a_notice(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.warns(PretrainedWeightsUnavailable, match="RANDOM weights"):
        preset = load_preset("deeplabv3_mobilenet_v3_large")
    assert not preset.pretrained and "URLError" in preset.notice


def test_local_weights_file_is_loaded_with_weights_only(tmp_path):
    source = load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    path = tmp_path / "mine.pth"
    torch.save(source.model.state_dict(), path)
    loaded = load_preset("deeplabv3_mobilenet_v3_large", weights=path)
    assert loaded.pretrained and loaded.notice is None
    for (k, a), (_, b) in zip(source.model.state_dict().items(), loaded.model.state_dict().items()):
        assert torch.equal(a, b), k
    with pytest.raises(ls.LayerScopeError, match="does not fit"):
        load_preset("deeplabv3_resnet50", weights=path)
    with pytest.raises(ls.LayerScopeError, match="no preset named"):
        load_preset("deeplabv3_resnet5O")


def test_module_tree(fresh_deeplab, image_batch):
    model = fresh_deeplab
    bare = ls.module_tree(model)
    assert [n["id"] for n in bare] == [n for n, _ in model.named_modules()]
    root = bare[0]
    assert root["total_params"] == sum(p.numel() for p in model.parameters())
    assert root["children"] == ["backbone", "classifier", "aux_classifier"]
    assert all(n["shape"] is None and n["calls"] is None for n in bare)

    acts = ls.capture(model, image_batch, ["backbone.layer4", "backbone"])
    counts = ls.Capturer(model).known_call_counts(image_batch)
    nodes = {n["id"]: n for n in ls.module_tree(model, acts, call_counts=counts)}
    assert nodes["backbone.layer4"]["shape"] == [1, 2048, 12, 12]
    assert nodes["backbone"]["shape"] == {"aux": [1, 1024, 12, 12], "out": [1, 2048, 12, 12]}
    assert nodes["classifier.0.convs"]["calls"] == 0
    assert nodes["backbone.layer1.0.relu"]["calls"] == 3
    assert nodes["backbone.layer1.0.conv1"]["cls"] == "Conv2d"


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
