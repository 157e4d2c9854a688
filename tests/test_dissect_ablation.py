"""ablation_effect against a by-hand loop (plain forward hooks zeroing the units, per-class IoU or
accuracy summed over the images), its seeded random control, and the model left as found."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import layerscope as ls
from conftest import hook_snapshot
from layerscope.errors import LayerScopeError
from test_dissect import CLASSES, PRE, make_data


class Pixelwise(nn.Module):
    """A per-pixel linear map written elementwise: no batched matrix product, so an image's
    result does not depend on the batch it runs in (the by-hand loop runs one at a time)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight[None, :, :, None, None] if x.dim() == 4 else self.weight[None]
        b = self.bias[None, :, None, None] if x.dim() == 4 else self.bias[None]
        return (x[:, None] * w).sum(2) + b


class Segmenter(nn.Module):
    """Units 0 and 1 find red and blue; 2-5 random. Class 1 (square) follows unit 0, class 2
    (disc) unit 1, with a little of every unit; class 0 is a constant."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        w = torch.randn(6, 3, generator=g) * 0.3
        w[0], w[1] = torch.tensor([1.0, -1.0, -1.0]), torch.tensor([-1.0, -1.0, 1.0])
        self.feat = Pixelwise(w, torch.zeros(6))
        self.relu = nn.ReLU()
        head = torch.randn(3, 6, generator=g) * 0.2
        head[1, 0] = head[2, 1] = 3.0
        self.head = Pixelwise(head, torch.tensor([0.3, 0.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.feat(x)))


class Classifier(nn.Module):
    """The Segmenter's units, averaged over the image: a class vector."""

    def __init__(self) -> None:
        super().__init__()
        s = Segmenter()
        self.feat, self.relu = s.feat, s.relu
        g = torch.Generator().manual_seed(4)
        self.head = Pixelwise(torch.randn(3, 6, generator=g), torch.zeros(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.feat(x)).mean((2, 3)))


def _zeroing(units):
    def hook(_m, _a, out):
        out = out.clone()
        out[:, list(units)] = 0
        return out

    return hook


def by_hand_iou(model, paths, labdir, units):
    """Per class: intersections and unions summed over the images, one image at a time."""
    inter, union = np.zeros(3, np.int64), np.zeros(3, np.int64)
    h = model.feat.register_forward_hook(_zeroing(units)) if units else None
    try:
        for p in paths:
            with torch.no_grad():
                pred = model(PRE(p).tensor)[0].argmax(0).numpy()
            lab = np.asarray(Image.open(labdir / (p.stem + ".png"))).astype(np.int64)
            rows = np.floor((np.arange(32) + 0.5) * 48 / 32).astype(int)
            lab = lab[rows][:, rows]
            ok = lab != 255
            for k in range(3):
                inter[k] += ((pred == k) & (lab == k) & ok).sum()
                union[k] += (((pred == k) | (lab == k)) & ok).sum()
    finally:
        if h is not None:
            h.remove()
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def test_ablation_effect_equals_a_by_hand_loop(tmp_path):
    model = Segmenter().eval()
    paths, labdir = make_data(tmp_path, 7)
    eff = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0])}, masks=labdir,
                             classes=CLASSES, repeats=3, seed=5, preprocess=PRE,
                             batch_size=10)  # fmt: skip
    rows = {r.concept: r for r in eff.table()}
    assert list(rows) == CLASSES and eff.images == 7
    base = by_hand_iou(model, paths, labdir, [])
    edited = by_hand_iou(model, paths, labdir, [0])
    controls = [by_hand_iou(model, paths, labdir, draw["relu"]) for draw in eff.controls]
    assert len(eff.controls) == 3 and all(len(d["relu"]) == 1 for d in eff.controls)
    assert all(0 not in d["relu"] for d in eff.controls)  # never the edited units
    for k, name in enumerate(CLASSES):
        assert rows[name].without == base[k]
        assert rows[name].with_edit == edited[k]
        assert rows[name].random_mean == statistics.fmean(c[k] for c in controls)
        assert rows[name].random_std == statistics.stdev(c[k] for c in controls)
    assert rows["square"].with_edit < 0.5 * rows["square"].without  # its detector is gone
    assert "square" in repr(eff.table()) and "±" in repr(eff.table())

    again = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0])}, masks=labdir,
                               classes=CLASSES, repeats=3, seed=5, preprocess=PRE)  # fmt: skip
    assert again.controls == eff.controls and again.table() == eff.table()
    other = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0])}, masks=labdir,
                               classes=CLASSES, repeats=3, seed=6, preprocess=PRE)  # fmt: skip
    assert other.controls != eff.controls


def test_a_classifier_is_measured_by_accuracy_against_labels(tmp_path):
    model = Classifier().eval()
    paths, _ = make_data(tmp_path, 9)
    labels = [i % 3 for i in range(9)]
    eff = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([1, 4])}, masks=labels,
                             control=None, preprocess=PRE, batch_size=2)  # fmt: skip
    correct = np.zeros((2, 3))
    for row, units in enumerate(([], [1, 4])):
        h = model.feat.register_forward_hook(_zeroing(units)) if units else None
        for p, y in zip(paths, labels):
            with torch.no_grad():
                correct[row, y] += int(model(PRE(p).tensor)[0].argmax()) == y
        if h is not None:
            h.remove()
    table = eff.table()
    assert eff.metric == "accuracy" and [r.support for r in table] == [3, 3, 3]
    assert [r.without for r in table] == list(correct[0] / 3)
    assert [r.with_edit for r in table] == list(correct[1] / 3)
    assert table[0].random_mean is None and eff.controls == []
    # Half of the six units edited: a control can only be the other half, whatever the seed.
    half = ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([0, 1, 2])},
                              masks=labels, repeats=3, seed=1, preprocess=PRE)  # fmt: skip
    assert half.controls == [{"relu": (3, 4, 5)}] * 3


def test_the_model_is_left_as_found_even_when_an_edit_fails(tmp_path):
    model = Segmenter().train()
    make_data(tmp_path, 3)
    before = hook_snapshot(model)
    with pytest.raises(LayerScopeError, match="out of range"):
        ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Ablate([99])},
                           masks=tmp_path / "lab", classes=CLASSES, preprocess=PRE)  # fmt: skip
    assert model.training and all(m.training for m in model.modules())
    assert hook_snapshot(model) == before
    # dissect: a module without a spatial map is refused from inside the forward
    classifier = Classifier().train()
    before = hook_snapshot(classifier)
    with pytest.raises(LayerScopeError, match=r"\(N, C, H, W\) maps"):
        ls.dissect(classifier, tmp_path / "img", ["head"], masks=tmp_path / "lab",
                   classes=CLASSES, preprocess=PRE, progress=False)  # fmt: skip
    assert classifier.training and hook_snapshot(classifier) == before
    with pytest.raises(LayerScopeError, match="Ablate or Scale"):
        ls.ablation_effect(model, tmp_path / "img", {"relu": ls.Patch(torch.zeros(1))},
                           masks=tmp_path / "lab", preprocess=PRE)  # fmt: skip


def test_deeplab_is_dissected_against_its_own_predictions(tmp_path, deeplab):
    """torchvision's model: its output dict's 'out' is the class map, VOC's names its classes;
    and an ablation of layer4 units with the VOC-named table. The model is left as found."""
    make_data(tmp_path, 2, size=64)
    pre = ls.Preprocess(resize=(64, 64))
    before = hook_snapshot(deeplab)
    d = ls.dissect(deeplab, tmp_path / "img", ["backbone.layer4"], masks=deeplab,
                   preprocess=pre, progress=False)  # fmt: skip
    assert d.classes[:3] == ["__background__", "aeroplane", "bicycle"] and len(d.classes) == 21
    assert d.iou("backbone.layer4").shape == (2048, len(d.concepts))
    assert int(d.area.sum()) == 2 * 64 * 64  # every pixel has the model's label
    eff = ls.ablation_effect(deeplab, tmp_path / "img", {"backbone.layer4": ls.Ablate([1, 2])},
                             masks=deeplab, repeats=2, preprocess=pre)  # fmt: skip
    assert all(r.without == 1.0 for r in eff.table())  # its own predictions, unedited
    assert hook_snapshot(deeplab) == before and not deeplab.training


def test_masks_from_another_segmentation_model_equal_its_predictions_saved(tmp_path):
    """A segmentation model as the masks: its argmax at the input's size, as if its predictions
    had been saved as label PNGs."""
    from test_dissect import Strided

    paths, _ = make_data(tmp_path, 5)
    segmenter = Segmenter().eval()
    saved = tmp_path / "predicted"
    saved.mkdir()
    for p in paths:
        with torch.no_grad():
            pred = segmenter(PRE(p).tensor)[0].argmax(0).numpy().astype(np.uint8)
        Image.fromarray(pred, mode="L").resize((48, 48), Image.NEAREST).save(
            saved / f"{p.stem}.png"
        )
    model = Strided().eval()
    kw = dict(classes=CLASSES, preprocess=PRE, quantile=0.05, batch_size=5, progress=False)
    by_model = ls.dissect(model, tmp_path / "img", ["relu"], masks=segmenter, **kw)
    by_files = ls.dissect(model, tmp_path / "img", ["relu"], masks=saved, **kw)
    assert torch.equal(by_model.area, by_files.area)
    assert torch.equal(by_model.iou("relu"), by_files.iou("relu"))
