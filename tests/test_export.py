"""Export to a self-contained HTML file drawn from the same view-states as the widget, and the
comparison figures."""

from __future__ import annotations

import re

import numpy as np
import pytest

import layerscope as ls
from layerscope import Explorer
from layerscope.models import load_preset


@pytest.fixture
def explorer():
    preset = load_preset("deeplabv3_mobilenet_v3_large", weights=None)
    return Explorer(preset.model, "astronaut", preprocess=preset.preprocess.with_size(128),
                    class_names=preset.class_names,
                    hooked_modules=["backbone.4", "classifier.4"])  # fmt: skip


def test_to_html_is_self_contained(explorer, tmp_path):
    path = explorer.to_html(tmp_path / "report.html")
    text = path.read_text()
    assert "<h2>backbone.4</h2>" in text and "<h2>classifier.4</h2>" in text
    assert "<h2>Prediction</h2>" in text
    # The widget's own partial plotly.js is inlined once; nothing is fetched from the network.
    from layerscope.widget.export import PLOTLY_BUNDLE

    bundle = PLOTLY_BUNDLE.read_text()
    assert len(bundle) < 1_500_000 and text.count(bundle[:200]) == 1
    assert not re.search(r"<script[^>]+src=[\"']https?://", text)
    assert text.count('class="plot plotly-graph-div"') >= 2 * 5
    assert path.stat().st_size < 3_000_000  # was 6.5 MB with the full plotly.js for three
    # The selected module's section is the view-state on screen: same channel, same maps.
    assert f"channel {explorer.selected_channel} of" in text


def test_compare_two_images_and_two_models(explorer):
    explorer.hooked_modules = ["backbone.4"]
    cmp = explorer.compare(image="chelsea")
    assert cmp.a.shape == cmp.b.shape and cmp.module == "backbone.4"
    direct = explorer.activations["backbone.4"][0, explorer.selected_channel].numpy()
    assert np.allclose(cmp.a, direct, atol=1e-6)  # "this image" is the explorer's own
    assert np.allclose(cmp.difference, cmp.a - cmp.b)
    assert np.abs(cmp.difference).max() > 1e-3  # two different photos: the maps differ
    other = explorer.compare(image="astronaut")  # the same photo: no difference at all
    assert np.abs(other.difference).max() == 0
    fig = cmp.figure()
    assert len(fig.data) == 3 and fig.data[0].zmax == fig.data[1].zmax  # a shared scale
    assert fig.data[2].zmin == -fig.data[2].zmax  # the difference is centred on zero
    other = load_preset("deeplabv3_mobilenet_v3_large", weights=None).model  # other weights
    by_model = explorer.compare(model=other, channel="aggregate")
    assert by_model.what == "mean over channels" and not np.allclose(by_model.a, by_model.b)
    same = explorer.compare(model=explorer.model)
    assert np.abs(same.difference).max() == 0
    with pytest.raises(ls.LayerScopeError, match="either image= .* or model="):
        explorer.compare()
