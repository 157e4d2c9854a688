"""Network Dissection against brute force (every image hooked by hand, numpy's exact quantile,
IoU by hand), hand-made detector units that must be found, skipped images and bad masks,
resuming without counting an image twice, and the file format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import layerscope as ls
from layerscope.dissect import sketch
from layerscope.errors import LayerScopeError, UnknownModuleError

PRE = ls.Preprocess(resize=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
RAW = ls.Preprocess(resize=None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
CLASSES = ["background", "square", "disc"]


class Strided(nn.Module):
    """A random convolution at half the input's resolution: its maps are upsampled 2x."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.relu = nn.ReLU()
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)))


class Detectors(nn.Module):
    """Channel 0 is red minus green and blue (red squares), channel 1 blue minus red and green
    (blue discs), channel 2 a random kernel whose weights sum to zero for each colour: it gives
    nothing on flat colour and answers the background's noise."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.bias.zero_()
            self.conv.weight[0, :, 1, 1] = torch.tensor([1.0, -1.0, -1.0])
            self.conv.weight[1, :, 1, 1] = torch.tensor([-1.0, -1.0, 1.0])
            w = torch.randn(3, 3, 3, generator=g)
            self.conv.weight[2] = w - w.mean((1, 2), keepdim=True)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def make_data(root: Path, n: int, size: int = 48, mask_scale: int = 1, seed: int = 0,
              side: int = 10, radius: int = 6) -> tuple[list[Path], Path]:  # fmt: skip
    """Images of grey noise with a red square and a blue disc, and their label PNGs (0
    background, 1 square, 2 disc, 255 around the disc and on the top two rows), ``mask_scale``
    times larger."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "lab").mkdir(exist_ok=True)
    paths = []
    for i in range(n):
        grey = rng.integers(40, 200, (size, size, 1), dtype=np.uint8)
        img = np.repeat(grey, 3, 2)
        lab = np.zeros((size, size), np.uint8)
        y, x = rng.integers(1, size - side, 2)
        img[y : y + side, x : x + side] = (255, 0, 0)
        lab[y : y + side, x : x + side] = 1
        yy, xx = np.mgrid[:size, :size]
        cy, cx = rng.integers(radius + 1, size - radius, 2)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        disc = r2 < radius**2
        img[disc] = (0, 0, 255)
        lab[disc] = 2
        lab[(r2 >= radius**2) & (r2 < (radius + 2) ** 2)] = 255  # VOC's unlabelled outline
        lab[:2] = 255
        p = root / "img" / f"im{i:02d}.png"
        Image.fromarray(img).save(p)
        big = np.kron(lab, np.ones((mask_scale, mask_scale), np.uint8))
        Image.fromarray(big, mode="L").save(root / "lab" / f"im{i:02d}.png")
        paths.append(p)
    return paths, root / "lab"


def by_hand(model, paths, labdir, module, pre_size, quantile, batch=1):
    """Hook every image by hand; numpy's quantile; bilinear upsampling; IoU summed over images.
    ``batch``: images per forward, as the dissection ran them (a convolution's last bits
    depend on the batch it runs in)."""
    out = {}
    h = dict(model.named_modules())[module].register_forward_hook(
        lambda m, a, o: out.__setitem__("o", o.detach().clone())
    )
    maps, masks = [], []
    try:
        for start in range(0, len(paths), batch):
            with torch.no_grad():
                model(torch.cat([PRE(p).tensor for p in paths[start : start + batch]]))
            maps.extend(out["o"])
        for p in paths:
            img = np.asarray(Image.open(p).convert("RGB"))
            lab = np.asarray(Image.open(labdir / (p.stem + ".png"))).astype(np.int64)
            # nearest neighbour at each input pixel's centre, through the resize
            ys = np.floor((np.arange(pre_size) + 0.5) * img.shape[0] / pre_size)
            xs = np.floor((np.arange(pre_size) + 0.5) * img.shape[1] / pre_size)
            ys = (ys * lab.shape[0] / img.shape[0]).astype(int)
            xs = (xs * lab.shape[1] / img.shape[1]).astype(int)
            masks.append(lab[ys][:, xs])
    finally:
        h.remove()
    acts = torch.stack(maps)  # (N, C, h, w)
    c = acts.shape[1]
    values = acts.transpose(0, 1).reshape(c, -1).numpy()
    thresholds = np.array(
        [np.quantile(v, 1 - quantile, method="inverted_cdf") for v in values], np.float32
    )
    iou = lambda t: iou_at(acts, np.stack(masks), t, pre_size)  # noqa: E731
    return values, thresholds, iou


def iou_at(acts, m, thresholds, size):
    """IoU by hand of units thresholded at ``thresholds``: masks ``m`` (N, H, W)."""
    # the bilinear values in float64: the upsampled value itself, not a float32 rounding of it
    up = F.interpolate(acts.double(), (size, size), mode="bilinear", align_corners=False)
    t = torch.as_tensor(np.asarray(thresholds)).double()
    fires = (up > t[None, :, None, None]).numpy()
    c = acts.shape[1]
    labelled = m != 255
    inter = np.zeros((c, 3), np.int64)
    union = np.zeros((c, 3), np.int64)
    for k in range(3):
        is_k = m == k
        for ch in range(c):
            f = fires[:, ch] & labelled
            inter[ch, k] = (f & is_k).sum()
            union[ch, k] = (f | is_k).sum()
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def dissect(model, root, **kw):
    kw.setdefault("preprocess", PRE)
    kw.setdefault("progress", False)
    return ls.dissect(model, root / "img", ["relu"] if "modules" not in kw else kw.pop("modules"),
                      masks=root / "lab", classes=CLASSES, **kw)  # fmt: skip


def test_thresholds_iou_and_labels_equal_brute_force(tmp_path):
    model = Strided().eval()
    paths, labdir = make_data(tmp_path, 10)
    d = dissect(model, tmp_path, quantile=0.02, min_iou=0.05, batch_size=3)
    values, thresholds, iou_of = by_hand(model, paths, labdir, "relu", 32, 0.02, batch=3)
    iou = iou_of(thresholds)
    assert d.images == 10 and d.skipped == [] and d.concepts == CLASSES
    # 10 images x 16 x 16 positions: the 52nd largest, within the exactly kept values
    assert torch.equal(d.threshold("relu"), torch.from_numpy(thresholds))
    assert bool(d.exact["relu"].all())
    assert torch.equal(d.iou("relu"), torch.from_numpy(iou).float())
    for c in range(6):
        best = int(iou[c].argmax())
        want = CLASSES[best] if iou[c, best] >= 0.05 else None
        got = d.label("relu", c)
        assert (got.name if got else None) == want
        if got:
            assert got.iou == pytest.approx(iou[c, best]) and got.index == best
    assert d.labels("relu") == [d.label("relu", c) for c in range(6)]
    labelled = [(c, d.label("relu", c)) for c in range(6) if d.label("relu", c)]
    assert labelled, "the test needs labelled units"
    for name in {lab.name for _, lab in labelled}:
        units = d.units(name)
        assert [u[1] for u in units] == sorted(
            [c for c, lab in labelled if lab.name == name], key=lambda c: -iou[c].max()
        )
        assert [u[2] for u in units] == sorted((u[2] for u in units), reverse=True)


def test_thresholds_from_the_histograms_are_within_the_rank_error(tmp_path, monkeypatch):
    """No value kept exactly: each threshold comes from the fine histogram (or a narrower
    pass); its rank is within 0.1 % of the values of numpy's, and the IoU is brute force's
    wherever the threshold is the same."""
    monkeypatch.setattr(sketch, "TOP_EXACT", 0)
    model = Strided().eval()
    paths, labdir = make_data(tmp_path, 10)
    d = dissect(model, tmp_path, quantile=0.02, batch_size=4)
    values, thresholds, iou_of = by_hand(model, paths, labdir, "relu", 32, 0.02, batch=4)
    got = d.threshold("relu").numpy()
    assert not d.exact["relu"].all()  # the test is about the inexact path
    for c in range(6):
        above = int((values[c] > got[c]).sum())
        exact = int((values[c] > thresholds[c]).sum())
        assert abs(above - exact) <= int(0.001 * values.shape[1]), c
    # The IoU of the thresholds found, whichever pass found them (the sketch pass, or the IoU
    # pass from its buckets), is brute force's at those thresholds.
    assert torch.equal(d.iou("relu"), torch.from_numpy(iou_of(got)).float())
    assert d.record["passes"] == 2


def _thresholds(data: torch.Tensor, quantile: float, splits: list[int]) -> sketch.ChannelThresholds:
    """Drive the sketch by hand over (N, C, P) values, batches cut at ``splits``."""
    th = sketch.ChannelThresholds(data.shape[1])
    while not th.done:
        lv = th.level
        total = sketch.SketchPart.empty(lv)
        for a, b in zip(splits, splits[1:]):
            part = sketch.SketchPart.empty(lv)
            part.update(data[a:b][:, lv.channels()], lv, quantile)
            total.merge(part)
        th.resolve(total, quantile)
    return th


def test_the_sketch_is_within_its_rank_error_and_independent_of_the_split(monkeypatch):
    """Many values: exponential and normal tails, negatives, a point mass at the quantile, zeros
    past it (ReLU), an outlier 30 orders of magnitude up, NaNs left out."""
    monkeypatch.setattr(sketch, "TOP_EXACT", 0)
    g = torch.Generator().manual_seed(0)
    n, p = 40, 2048
    data = torch.empty(n, 8, p)
    data[:, 0] = torch.empty(n, p).exponential_(generator=g)
    data[:, 1] = torch.randn(n, p, generator=g) - 5
    data[:, 2] = torch.relu(torch.randn(n, p, generator=g) - 2.9)  # > 99.5 % zeros
    data[:, 3] = torch.rand(n, p, generator=g)
    data[0, 3, 0] = 1e30  # the window at the outlier: the quantile lies far below it
    data[:, 4] = torch.rand(n, p, generator=g) * 1e-3 + 1
    data[:, 4, ::50] = 2.0  # 2 %: the 0.5 % quantile sits on this point mass
    data[:, 5] = torch.randn(n, p, generator=g)
    data[:, 5, ::3] = float("nan")
    data[:, 6] = torch.rand(n, p, generator=g) * 1e-3 + 1  # dense: a narrower pass
    # Two clusters 0.4 % apart in one fine bin, the quantile inside the lower: no value of the
    # bin is within the rank error; a narrower pass tells them apart.
    data[:, 7] = torch.rand(n, p, generator=g) * 0.5
    data[:, 7, :8] = 1.004 + torch.rand(n, 8, generator=g) * 1e-3
    data[:, 7, 8:16] = 1.0 + torch.rand(n, 8, generator=g) * 1e-3
    q = 0.005
    th = _thresholds(data, q, [0, 7, 20, 40])
    again = _thresholds(data, q, [0, 1, 2, 33, 40])
    assert torch.equal(th.threshold, again.threshold)
    flat = data.transpose(0, 1).reshape(8, -1).numpy()
    for c in range(8):
        v = flat[c][~np.isnan(flat[c])]
        exact = np.quantile(v, 1 - q, method="inverted_cdf")
        t = float(th.threshold[c])
        assert abs(int((v > t).sum()) - int((v > exact).sum())) <= 0.001 * len(v), c
        if th.exact[c]:
            assert t == exact
    assert th.exact[2] and float(th.threshold[2]) == 0.0
    assert th.exact[4] and float(th.threshold[4]) == 2.0


def test_detector_units_are_labelled_and_a_random_unit_is_not(tmp_path):
    """Masks at twice the images' size: scaled to them, through the (identity) preprocessing."""
    make_data(tmp_path, 12, size=64, mask_scale=2, side=4, radius=2)
    d = ls.dissect(Detectors().eval(), tmp_path / "img", ["relu"], masks=tmp_path / "lab",
                   classes=CLASSES, preprocess=RAW, progress=False)  # fmt: skip
    square, disc, noise = (d.label("relu", c) for c in range(3))
    assert square is not None and square.name == "square" and square.iou > 0.9
    assert disc is not None and disc.name == "disc" and disc.iou > 0.9
    assert noise is None
    assert d.units("square") == [("relu", 0, square.iou)]
    summary = d.summary()
    assert summary[0].labelled == 2 and summary[0].concepts == 2
    assert "relu" in repr(summary) and "square (1)" in repr(summary)


def test_images_without_a_fitting_mask_are_skipped_and_bad_values_named(tmp_path):
    model = Strided().eval()
    make_data(tmp_path, 6)
    (tmp_path / "lab" / "im01.png").unlink()
    Image.fromarray(np.zeros((48, 30), np.uint8), mode="L").save(tmp_path / "lab" / "im02.png")
    d = dissect(model, tmp_path)
    reasons = dict(d.skipped)
    assert d.images == 4 and len(d.skipped) == 2
    assert "no mask" in reasons[str(tmp_path / "img" / "im01.png")]
    assert "aspect ratio" in reasons[str(tmp_path / "img" / "im02.png")]
    bad = np.zeros((48, 48), np.uint8)
    bad[5, 5] = 7
    Image.fromarray(bad, mode="L").save(tmp_path / "lab" / "im03.png")
    with pytest.raises(LayerScopeError, match=r"im03\.png.*class value 7.*3 classes"):
        dissect(model, tmp_path)
    with pytest.raises(UnknownModuleError, match="did you mean 'relu'"):
        dissect(model, tmp_path, modules=["rleu"])


def _run(model, root, path, stop_after=None, **kw):
    def stop(done, total):
        if stop_after is not None and done >= stop_after:
            raise KeyboardInterrupt

    kw.setdefault("batch_size", 2)
    return dissect(model, root, path=path, progress=stop, **kw)


@pytest.mark.parametrize("stop_after", [4, 13])  # in the sketch pass; in the IoU pass
def test_an_interrupted_dissection_resumes_without_counting_an_image_twice(tmp_path, stop_after):
    model = Strided().eval()
    make_data(tmp_path, 9)
    whole = dissect(model, tmp_path, batch_size=2, quantile=0.02)
    path = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tmp_path, path, stop_after, quantile=0.02)
    header = json.loads(_meta(path))
    assert header["passes"] == (0 if stop_after < 9 else 1)
    resumed = _run(model, tmp_path, path, quantile=0.02)
    assert torch.equal(resumed.area, whole.area)  # each image's pixels counted once
    for name in ("threshold", "iou"):
        assert torch.equal(getattr(resumed, name)("relu"), getattr(whole, name)("relu"))
    assert torch.equal(resumed.hits["relu"], whole.hits["relu"])
    assert torch.equal(resumed.fired["relu"], whole.fired["relu"])
    assert resumed.images == whole.images == 9


def _meta(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return f.metadata()["layerscope"]


def test_resuming_over_changed_images_or_masks_is_refused(tmp_path):
    model = Strided().eval()
    paths, labdir = make_data(tmp_path, 8)
    path = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tmp_path, path, 4)
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(paths[0])
    with pytest.raises(LayerScopeError, match="changed since"):
        _run(model, tmp_path, path)
    with pytest.raises(LayerScopeError, match="quantile differ"):
        _run(model, tmp_path, path, quantile=0.1)
    other = Strided().eval()
    with torch.no_grad():
        other.conv.bias += 1
    with pytest.raises(LayerScopeError, match="model weights differ"):
        _run(other, tmp_path, path)


def test_save_and_load_round_trip_and_a_crafted_file_is_refused(tmp_path):
    model = Strided().eval()
    make_data(tmp_path, 5)
    d = dissect(model, tmp_path, quantile=0.05)
    path = d.save(tmp_path / "d.safetensors")
    back = ls.Dissection.load(path, model=model)
    assert back.concepts == d.concepts and back.images == d.images and back.classes == CLASSES
    for m in ("threshold", "iou"):
        assert torch.equal(getattr(back, m)("relu"), getattr(d, m)("relu"))
    assert [back.label("relu", c) for c in range(6)] == [d.label("relu", c) for c in range(6)]
    assert back.min_iou == d.min_iou and back.quantile == d.quantile
    with pytest.raises(LayerScopeError, match="other weights"):
        ls.Dissection.load(path, model=Detectors())

    tensors, header = load_file(str(path)), json.loads(_meta(path))

    def crafted(t, h, name="bad.safetensors"):
        p = tmp_path / name
        save_file(t, str(p), metadata={"layerscope": json.dumps(h)})
        return p

    wrong = dict(tensors, **{"relu/hits": tensors["relu/hits"][:, :2].contiguous()})
    with pytest.raises(LayerScopeError, match=r"bad\.safetensors.*relu/hits is \(6, 2\)"):
        ls.Dissection.load(crafted(wrong, header))
    with pytest.raises(LayerScopeError, match="modules must be"):
        ls.Dissection.load(crafted(tensors, {k: v for k, v in header.items() if k != "modules"}))
    missing = {k: v for k, v in tensors.items() if k != "relu/fired"}
    with pytest.raises(LayerScopeError, match="'relu/fired' is missing"):
        ls.Dissection.load(crafted(missing, header))
    floats = dict(tensors, counted=tensors["counted"].double())
    with pytest.raises(LayerScopeError, match="counted is"):
        ls.Dissection.load(crafted(floats, header))
    with pytest.raises(LayerScopeError, match="images must be"):
        ls.Dissection.load(crafted(tensors, dict(header, images=99)))
    lying = dict(tensors, **{"relu/fired": tensors["relu/fired"] + 1})
    with pytest.raises(LayerScopeError, match="disagree"):
        ls.Dissection.load(crafted(lying, header))
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(LayerScopeError, match="not a readable dissection file"):
        ls.Dissection.load(tmp_path / "junk.safetensors")


@pytest.mark.parametrize("size", [(32, 32), (60, 61), (97, 80), (10, 10), (7, 100)])
def test_the_pixels_that_fire_are_those_of_bilinear_upsampling(size):
    """Only the blocks whose largest value exceeds the threshold are computed: the pixels found
    are those of the whole map upsampled (float64, align_corners=False), at any scale."""
    from layerscope.dissect.tally import unit_hits

    g = torch.Generator().manual_seed(sum(size))
    acts = torch.relu(torch.randn(3, 5, 13, 11, generator=g))
    acts[0, 0, 4:7, 3:6] = 2.0  # a plateau over the threshold
    t = torch.quantile(acts.transpose(0, 1).reshape(5, -1), 0.9, dim=1)
    t[1] = 0.0  # a threshold at a plateau (the zeros): they never fire
    pairs, pixels, values = unit_hits(acts, t, size)
    up = F.interpolate(acts.double(), size, mode="bilinear", align_corners=False)
    want = (up > t.double()[None, :, None, None]).reshape(15, -1).nonzero()
    got = torch.stack([pairs, pixels], 1)
    got = got[torch.argsort(got[:, 0] * size[0] * size[1] + got[:, 1])]
    assert torch.equal(got, want)
    order = torch.argsort(pairs * size[0] * size[1] + pixels)
    assert torch.allclose(values[order], up.reshape(15, -1)[want[:, 0], want[:, 1]], rtol=1e-12)


class Levels(nn.Module):
    """Channel 0 is 10 + the red value: 256 levels 1/255 apart, 16 of them in each fine bin of
    the sketch (1/128 of an octave at 10). Channel 1 is a random mix."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0] = 1.0
            self.conv.weight[1, :, 0, 0] = torch.tensor([0.3, -0.7, 0.5])
            self.conv.bias.copy_(torch.tensor([10.0, 0.0]))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def levels_data(tmp_path, packed=True):
    """Images whose reds are 251 for 1 % of the pixels and 250 for 2 % (``packed``), or 240 to
    255 for 6 pixels of each image (a fine bin of several levels, a few values each)."""
    paths, labdir = make_data(tmp_path, 10, size=32)
    rng = np.random.default_rng(1)
    for p in paths:
        img = np.asarray(Image.open(p)).copy()
        red = rng.integers(0, 200, (32, 32))
        pick = rng.random((32, 32))
        if packed:
            red[pick < 0.03] = 250
            red[pick < 0.01] = 251
        else:
            red.flat[rng.choice(32 * 32, 6, replace=False)] = rng.integers(240, 256, 6)
        img[..., 0] = red
        Image.fromarray(img.astype(np.uint8)).save(p)
    return paths, labdir


def test_a_quantile_packed_in_one_value_takes_more_passes_and_is_exact(tmp_path):
    """The quantile (top 0.5 %) sits inside a point mass holding more than 0.1 % of the values,
    in a fine bin with other levels. The IoU pass cannot settle it from its buckets; a sketch
    pass one key wide finds it exactly, and an IoU pass counts that channel alone (the other
    is counted once, and each class's pixels once)."""
    paths, labdir = levels_data(tmp_path)
    model = Levels().eval()
    d = ls.dissect(model, tmp_path / "img", ["relu"], masks=labdir, classes=CLASSES,
                   preprocess=RAW, batch_size=4, progress=False)  # fmt: skip
    values, thresholds, iou_of = by_hand(model, paths, labdir, "relu", 32, 0.005, batch=4)
    assert d.record["passes"] == 4  # sketch, IoU, sketch one key wide, IoU of channel 0
    assert float(d.threshold("relu")[0]) == thresholds[0] == np.float32(10 + 251 / 255)
    assert bool(d.exact["relu"][0])
    assert torch.equal(d.iou("relu"), torch.from_numpy(iou_of(d.threshold("relu"))).float())


def test_a_threshold_left_open_is_settled_in_the_iou_pass(tmp_path):
    """60 values in one fine bin (more than 0.1 % of the 10240), 4 or so for each level: the
    sketch pass leaves channel 0 open; the IoU pass histograms it finer, takes the candidate
    threshold nearest the quantile's rank, and counts its pixels from the buckets over it."""
    paths, labdir = levels_data(tmp_path, packed=False)
    model = Levels().eval()
    d = ls.dissect(model, tmp_path / "img", ["relu"], masks=labdir, classes=CLASSES,
                   preprocess=RAW, batch_size=4, progress=False)  # fmt: skip
    values, thresholds, iou_of = by_hand(model, paths, labdir, "relu", 32, 0.005, batch=4)
    assert d.record["passes"] == 2
    t = float(d.threshold("relu")[0])
    assert not d.exact["relu"][0] and t != thresholds[0]  # an edge between two levels
    exact = int((values[0] > thresholds[0]).sum())
    assert abs(int((values[0] > t).sum()) - exact) <= int(0.001 * values.shape[1])
    assert torch.equal(d.iou("relu"), torch.from_numpy(iou_of(d.threshold("relu"))).float())


@pytest.mark.parametrize("stop_after", [14, 24, 34])  # in the 2nd, 3rd and 4th pass
def test_a_dissection_of_four_passes_resumes_alike_from_any_of_them(tmp_path, stop_after):
    """Checkpoints in an IoU pass with open channels (their finer counts and buckets), in the
    narrower sketch pass and in the last IoU pass: resumed, the same as uninterrupted."""
    levels_data(tmp_path)
    model = Levels().eval()
    kw = dict(modules=["relu"], preprocess=RAW, batch_size=4)
    whole = dissect(model, tmp_path, **kw)
    path = tmp_path / "run.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tmp_path, path, stop_after, **kw)
    assert json.loads(_meta(path))["passes"] == stop_after // 10
    resumed = _run(model, tmp_path, path, **kw)
    assert resumed.record["passes"] == whole.record["passes"] == 4
    assert torch.equal(resumed.area, whole.area)
    assert torch.equal(resumed.threshold("relu"), whole.threshold("relu"))
    assert torch.equal(resumed.hits["relu"], whole.hits["relu"])
    assert torch.equal(resumed.fired["relu"], whole.fired["relu"])


class Pairs(torch.utils.data.Dataset):
    """(image, mask) pairs as torchvision's VOCSegmentation gives them: PIL images."""

    def __init__(self, paths, labdir):
        self.paths, self.labdir = paths, labdir

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        p = self.paths[i]
        return Image.open(p).convert("RGB"), Image.open(self.labdir / (p.stem + ".png"))


def test_a_dataset_of_image_and_mask_pairs_equals_the_folders(tmp_path):
    model = Strided().eval()
    paths, labdir = make_data(tmp_path, 6)
    pairs = Pairs(paths, labdir)
    d = ls.dissect(model, pairs, ["relu"], masks=pairs, classes=CLASSES, preprocess=PRE,
                   batch_size=3, quantile=0.05, progress=False)  # fmt: skip
    folders = dissect(model, tmp_path, batch_size=3, quantile=0.05)
    assert d.images == 6 and d.skipped == []
    assert torch.equal(d.threshold("relu"), folders.threshold("relu"))
    assert torch.equal(d.iou("relu"), folders.iou("relu"))


def test_a_preprocessing_function_masks_cannot_follow_is_refused(tmp_path):
    """A function may crop: masks taken as a resize of the whole image would be compared with
    units that saw another part (found by a hostile pass: IoU 0.30 for a perfect detector)."""
    make_data(tmp_path, 2, size=32, side=4, radius=2)

    def squash(image):
        return RAW(image).tensor[0]

    with pytest.raises(ls.LayerScopeError, match=r"Preprocess.from_transforms"):
        ls.dissect(Detectors().eval(), tmp_path / "img", ["relu"], masks=tmp_path / "lab",
                   classes=CLASSES, preprocess=squash, progress=False)  # fmt: skip
    with pytest.raises(ls.LayerScopeError, match=r"ls.Preprocess"):
        ls.ablation_effect(Detectors().eval(), tmp_path / "img", {"relu": ls.Ablate([0])},
                           masks=tmp_path / "lab", classes=CLASSES, preprocess=squash)  # fmt: skip


class _Stored(nn.Module):
    """Module ``act`` outputs stored maps, image i's chosen by pixel (0, 0)'s red value."""

    def __init__(self, maps: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("maps", maps)
        self.act = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.maps[(x[:, 0, 0, 0] * 255).round().long()].clone())


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, masks: list[torch.Tensor]) -> None:
        self.masks = masks

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, i: int):
        pixels = np.zeros((16, 16, 3), np.uint8)
        pixels[0, 0, 0] = i
        return Image.fromarray(pixels), self.masks[i]


def test_nan_and_infinite_activations_give_one_threshold_whatever_the_batches():
    """Found by a hostile pass: a NaN anywhere in a batch sent it down a path that turned +inf
    into the largest float, so the threshold depended on the batch size."""
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(4, 2, 8, 8, generator=g)
    maps[0, 0, 3, 3] = float("inf")
    maps[1, 1, 0, 0] = float("nan")
    pairs = _Pairs(list(torch.randint(0, 2, (4, 16, 16), generator=g)))
    found = [
        ls.dissect(_Stored(maps).eval(), pairs, ["act"], masks=pairs, classes=["a", "b"],
                   preprocess=RAW, quantile=1e-6, batch_size=b, progress=False).threshold("act")
        for b in (1, 2, 4)
    ]  # fmt: skip
    assert float(found[0][0]) == float("inf")
    assert all(torch.equal(found[0], f) for f in found[1:])


def test_a_first_pass_checkpoint_whose_counts_disagree_is_refused(tmp_path):
    """Found by a hostile pass: the first pass's parts were not checked against each other, so a
    crafted checkpoint stopped the resume with torch's own RuntimeError."""
    model = Strided().eval()
    make_data(tmp_path, 6)
    path = tmp_path / "ck.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _run(model, tmp_path, path, stop_after=2)
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    key = next(k for k in tensors if k.endswith("/part/top"))
    tensors[key] = tensors[key][:-1]  # one channel short
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(LayerScopeError, match="part/top"):
        _run(model, tmp_path, path)
