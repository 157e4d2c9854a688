"""The Explorer's Concepts panel against independent truths: what it shows of each unit is what
``layerscope.dissect`` found (itself checked against brute force in test_dissect.py), counted
again here from ``Dissection.label``; its tiles are the units' captured maps (a capture by
hand) and their sweep's best patches; the channel card and the grid's tiles name their unit;
``explorer.dissect`` equals ``layerscope.dissect``; a dissection of other weights is refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import layerscope as ls
from layerscope.errors import LayerScopeError
from layerscope.widget.schema import decode_array
from test_dissect import CLASSES, RAW, make_data


class Units(nn.Module):
    """Six units: 0 and 3 red detectors (red squares), 1 and 4 blue ones (blue discs; 4 at
    half the gain), 2 and 5 zero-sum random kernels that answer the background's noise."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            for c, gain in ((0, 1.0), (3, 1.0)):
                self.conv.weight[c, :, 1, 1] = gain * torch.tensor([1.0, -1.0, -1.0])
            for c, gain in ((1, 1.0), (4, 0.5)):
                self.conv.weight[c, :, 1, 1] = gain * torch.tensor([-1.0, -1.0, 1.0])
            for c in (2, 5):
                w = torch.randn(3, 3, 3, generator=g)
                self.conv.weight[c] = w - w.mean((1, 2), keepdim=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


@pytest.fixture(scope="module")
def dissected(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    paths, labels = make_data(root, 10, size=64, side=4, radius=2)  # shapes under 0.5 %
    model = Units().eval()
    d = ls.dissect(model, root / "img", ["relu"], masks=labels, classes=CLASSES,
                   preprocess=RAW, progress=False)  # fmt: skip
    return model, paths, labels, d


def _explorer(model, paths, **kw):
    kw.setdefault("hooked_modules", ["relu"])
    return ls.Explorer(model, Image.open(paths[0]), preprocess=RAW, **kw)


def test_the_panel_shows_what_the_dissection_found(dissected):
    model, paths, _, d = dissected
    ex = _explorer(model, paths, dissection=d)
    p = ex._concepts
    by_hand = [d.label("relu", c) for c in range(6)]
    names = [c.name if c else None for c in by_hand]
    assert names == ["square", "disc", None, "square", "disc", None]  # the units' own shapes
    shown = [p["names"][i] if i >= 0 else None for i in decode_array(p["label"])]
    assert shown == names
    assert np.allclose(decode_array(p["iou"]), [c.iou if c else 0 for c in by_hand])
    counts = {n: names.count(n) for n in set(names) - {None}}
    assert dict(zip(p["concepts"], p["units"])) == counts
    # The concept listed first (most units; the masks' class order on a tie) and its units,
    # best IoU first, each tile its captured map on this image.
    assert p["picked"] == "square" and p["picked_units"] == [c for _, c, _ in d.units("square")]
    out = ls.capture(model, RAW(Image.open(paths[0]).convert("RGB")).tensor, ["relu"])["relu"]
    for tile in p["tiles"]:
        assert np.array_equal(decode_array(tile["map"]), out[0, tile["channel"]].numpy())
    fig = ex.figure("concepts")
    assert fig.data[0].meta["role"] == "concepts" and list(fig.data[0].x) == p["concepts"]
    assert [t.meta["channel"] for t in fig.data[1:]] == p["picked_units"]
    assert ex.figure("concepts").layout.title.text.startswith("Concepts of relu: 4 of 6 units")


def test_picking_a_concept_lists_its_units_and_a_bad_name_is_refused(dissected):
    model, paths, _, d = dissected
    ex = _explorer(model, paths, dissection=d)
    ex.selected_concept = "disc"
    assert ex._concepts["picked_units"] == [c for _, c, _ in d.units("disc")] == [1, 4]
    out = ls.capture(model, RAW(Image.open(paths[0]).convert("RGB")).tensor, ["relu"])["relu"]
    for tile, c in zip(ex._concepts["tiles"], [1, 4], strict=True):
        assert tile["channel"] == c
        assert np.array_equal(decode_array(tile["map"]), out[0, c].numpy())
    with pytest.raises(Exception, match="no concept 'disk'.*disc"):
        ex.selected_concept = "disk"
    assert ex._concepts["everywhere"] == {"square": ["relu"], "disc": ["relu"]}


def test_the_channel_card_and_the_tiles_name_their_unit(dissected):
    model, paths, _, d = dissected
    ex = _explorer(model, paths, dissection=d, selected_channel=4)
    disc = d.label("relu", 4)
    assert ex.figure("channel").layout.title.text.endswith(f"disc (IoU {disc.iou:.2f})")
    names = {t.meta["channel"]: t.name for t in ex.figure("grid").data}
    assert names[4] == f"#4 disc {disc.iou:.2f}" and names[2] == "#2"
    ex.dissection = None
    assert ex.figure("channel").layout.title.text.endswith("channel 4 of 6")


def test_the_tiles_show_each_units_best_dataset_patch(dissected, tmp_path):
    model, paths, _, d = dissected
    sw = ls.sweep(model, paths, ["relu"], k=2, preprocess=RAW, progress=False)
    ex = _explorer(model, paths, dissection=d, sweep=sw)
    tiles = ex._concepts["tiles"]
    for tile in tiles:
        best = sw.top("relu", tile["channel"])[0].crop()
        assert Image.open(io.BytesIO(tile["patch"])).size == best.size  # small: not shrunk
    for tile in tiles:  # the same picture the Dataset panel shows as the channel's first
        ex.selected_channel = tile["channel"]
        assert tile["patch"] == ex._dataset["examples"][0]["crop"]
    fig = ex.figure("concepts")
    assert all(im.source.startswith("data:image/jpeg;base64,") for im in fig.layout.images)
    assert len(fig.layout.images) == len(ex._concepts["tiles"])
    html = ex.to_html(tmp_path / "out.html").read_text()
    assert "Concepts of relu" in html


def test_explorer_dissect_is_layerscope_dissect(dissected):
    model, paths, labels, d = dissected
    ex = _explorer(model, paths)
    with pytest.raises(ls.NotReadyError, match=r"explorer.dissect"):
        ex.figure("concepts")
    got = ex.dissect(paths[0].parent, masks=labels, classes=CLASSES)
    assert torch.equal(got.iou("relu"), d.iou("relu"))
    assert torch.equal(got.threshold("relu"), d.threshold("relu"))
    assert ex.dissection is got and ex._concepts["module"] == "relu"
    assert ex._status["state"] == "idle"


def test_a_dissection_of_other_weights_is_refused(dissected):
    model, paths, _, d = dissected
    other = Units().eval()
    with torch.no_grad():
        other.conv.weight[2] *= 2
    with pytest.raises(LayerScopeError, match="another model"):
        _explorer(other, paths, dissection=d)
    with pytest.raises(LayerScopeError, match="takes a layerscope.Dissection"):
        _explorer(model, paths, dissection="d.safetensors")


def test_another_call_or_another_dissection_shows_no_stale_names(dissected):
    """Found by a hostile pass: a second call's maps under the first call's labels; a concept
    name kept from no dissection (or another) shown as "0 units"."""

    class TwiceUnits(Units):
        """relu runs twice: after conv, and after an identity conv2."""

        def __init__(self) -> None:
            super().__init__()
            self.conv2 = nn.Conv2d(6, 6, 1)
            with torch.no_grad():
                self.conv2.weight.copy_(torch.eye(6).view(6, 6, 1, 1))
                self.conv2.bias.zero_()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv2(self.relu(self.conv(x))))

    model, paths, labels, _ = dissected
    twice = TwiceUnits().eval()
    d = ls.dissect(twice, paths[0].parent, ["relu"], masks=labels, classes=CLASSES,
                   preprocess=RAW, progress=False)  # fmt: skip
    ex = _explorer(twice, paths, dissection=d, selected_call=1)
    assert "first call" in ex._concepts["missing"]
    assert ex.figure("channel").layout.title.text.endswith("of 6")  # no label at call 1
    ex.selected_call = 0
    assert ex._concepts["picked"] == "square"
    plain = _explorer(model, paths, selected_concept="whatever")
    plain.dissection = dissected[3]
    assert plain.selected_concept == "" and plain._concepts["picked"] == "square"
