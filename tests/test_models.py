"""Presets build offline, fall back to random weights with one readable notice, and load local
weights files safely."""

from __future__ import annotations

import urllib.error

import pytest
import torch

import layerscope as ls
from layerscope.models import PretrainedWeightsUnavailable, load_preset


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


def test_the_explorer_shows_the_offline_notice_once(monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(self, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    monkeypatch.setenv("LAYERSCOPE_IMAGE_SIZE", "96")
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ex = ls.Explorer("deeplabv3_mobilenet_v3_large")
    # The widget shows the notice; no second copy as a warning with a file path above it.
    assert not [w for w in caught if issubclass(w.category, PretrainedWeightsUnavailable)]
    assert "RANDOM weights" in ex._notice and "(download failed)" in ex._title
