"""The Explorer's Dataset panel against independent truths: the patches and statistics are the
sweep's (itself checked against brute force in test_sweep.py); opening an example shows that
image (the model input equals the file's, prepared by hand), keeps the module and channel, and
marks the unit where the Explorer's own geometry puts that cell, on a map whose value there is
the example's score; ``explorer.sweep`` equals ``layerscope.sweep``; errors show in the widget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import layerscope as ls
from layerscope.errors import LayerScopeError
from layerscope.widget.schema import decode_array
from test_sweep import PRE, Tiny, make_images


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    paths = make_images(folder, 10)
    model = Tiny().eval()
    sw = ls.sweep(model, folder, ["relu", "head"], k=4, preprocess=PRE, progress=False)
    return model, paths, sw


def _explorer(model, sw, **kw):
    return ls.Explorer(model, ls.sample_image("chelsea"), preprocess=PRE, sweep=sw,
                       hooked_modules=["relu"], **kw)  # fmt: skip


def test_the_panel_shows_the_sweeps_top_images_and_statistics(swept):
    model, paths, sw = swept
    ex = _explorer(model, sw, selected_channel=2)
    d = ex._dataset
    assert (d["module"], d["channel"], d["images"]) == ("relu", 2, 10)
    top = sw.top("relu", 2)
    assert [e["source"] for e in d["examples"]] == [str(t.source) for t in top]
    assert [e["score"] for e in d["examples"]] == [t.score for t in top]
    # Each patch is the crop under the unit's receptive field, as a thumbnail of it.
    crop = top[0].crop()
    assert d["examples"][0]["crop_size"] == [crop.height, crop.width]
    stats = sw.stats("relu")
    assert np.array_equal(decode_array(d["mean"]), stats.mean)
    assert decode_array(d["dead"]).tolist() == [5] == sw.dead("relu").tolist()
    ex.selected_channel = 0
    assert ex._dataset["channel"] == 0
    assert [e["score"] for e in ex._dataset["examples"]] == [t.score for t in sw.top("relu", 0)]


def test_opening_an_example_shows_its_image_with_the_unit_marked(swept):
    model, paths, sw = swept
    ex = _explorer(model, sw, selected_channel=1)
    best = sw.top("relu", 1)[2]
    ex.show_example(2)
    by_hand = PRE(Image.open(best.source).convert("RGB")).tensor
    assert torch.equal(ex.inputs.cpu(), by_hand)
    assert (ex.selected_module, ex.selected_channel) == ("relu", 1)
    assert ex.image_name == str(best.source)
    # The channel map shows the example's score at the marked unit (same preprocessing).
    row, col = best.location
    assert decode_array(ex._channel["map"])[row, col] == pytest.approx(best.score, rel=1e-5)
    # The marked cell is where the Explorer's geometry puts cell (row, col) of that map.
    g = ex.prepared.geometry
    y0, x0, y1, x1 = g.cell_box(tuple(ex._layer["map_size"]), row, col)
    assert ex._unit_mark["cell"] == pytest.approx([y0, x0, y1, x1])
    field = ex._unit_mark["field"]
    assert field[0] <= y0 and field[1] <= x0 and field[2] >= y1 and field[3] >= x1
    assert ex.view.unit == ex._unit_mark
    fig = ex.figure("overlay")
    assert [s.line.color for s in fig.layout.shapes] == ["#00e5ff", "#00e5ff"]
    # The widget's photo shows the same outlines (its view is sent with the mark).
    assert ex._view_image["layout"]["shapes"] == fig.to_dict()["layout"]["shapes"]
    ex.set_image(ls.sample_image())  # another image: the mark goes
    assert ex._unit_mark == {} and ex.view.unit is None


def test_explorer_sweep_equals_layerscope_sweep_and_reports_progress(swept, tmp_path):
    model, paths, sw = swept
    ex = ls.Explorer(model, ls.sample_image(), preprocess=PRE, hooked_modules=["relu", "conv"])
    assert ex._dataset == {}
    seen = []
    ex.observe(lambda c: seen.append(dict(c["new"])), names="_status")
    mine = ex.sweep(paths[0].parent)
    assert ex.dataset_sweep is mine and mine.modules == ["relu", "conv"]
    alone = ls.sweep(model, paths[0].parent, ["conv"], preprocess=PRE, progress=False)
    for c in range(6):
        assert [e.score for e in mine.top("conv", c)] == [e.score for e in alone.top("conv", c)]
    counts = [s["done"] for s in seen if s.get("unit") == "images"]
    assert counts and counts[-1] == 10 and counts == sorted(counts)
    assert seen[-1]["state"] == "idle"
    assert ex._dataset["module"] == ex.selected_module


def test_figures_export_and_errors(swept, tmp_path):
    model, paths, sw = swept
    ex = _explorer(model, sw, selected_channel=3)
    fig = ex.figure("dataset")
    colours = fig.data[-1].marker.color
    assert colours[3] == "#e45756" and colours[5] == "#b0b0b0" and colours[0] == "#4c78a8"
    assert len(fig.layout.images) == len(sw.top("relu", 3))
    html = ex.to_html(tmp_path / "x.html").read_text()
    assert "dataset mean" in html
    ex.hooked_modules = ["relu", "conv"]  # the sweep has no conv: the panel says why
    assert "no conv" in ex._dataset["missing"]
    with pytest.raises(LayerScopeError, match="no conv"):
        ex.figure("dataset")
    ex.selected_module = "relu"
    with pytest.raises(LayerScopeError, match="example 9 does not exist"):
        ex.show_example(9)
    shown = ex._dataset
    ex._handle_custom_msg({"kind": "show-example", "rank": 9}, [])  # a click from the browser
    assert "example 9 does not exist" in ex._error
    # A failed click leaves the panel as it was: the same patches and statistics.
    assert ex._dataset == shown and ex._dataset["examples"]
    assert ex.view.dataset == shown
    assert "show_example" in ex.last_traceback  # where it failed, for the curious
    with pytest.raises(LayerScopeError, match="takes a layerscope.Sweep"):
        ls.Explorer(model, ls.sample_image(), preprocess=PRE, sweep="sweep.safetensors")
    loaded = ls.Sweep.load(sw.save(tmp_path / "s.safetensors"))  # without its images
    ex.dataset_sweep = loaded
    assert all(e["crop"] == b"" for e in ex._dataset["examples"])
    with pytest.raises(LayerScopeError, match="without its images"):
        ex.show_example(0)


def test_the_montage_is_the_crops_best_first(swept):
    _, _, sw = swept
    top = sw.top("relu", 2)
    sheet = sw.montage("relu", 2, side=40, cols=2)
    assert sheet.size == (2 * 42, 2 * 42)
    for i, e in enumerate(top):
        crop = e.crop()
        crop.thumbnail((40, 40))
        r, c = divmod(i, 2)
        x, y = c * 42 + 1 + (40 - crop.width) // 2, r * 42 + 1 + (40 - crop.height) // 2
        tile = sheet.crop((x, y, x + crop.width, y + crop.height))
        assert np.array_equal(np.asarray(tile), np.asarray(crop)), i


def test_images_of_several_sizes_each_get_their_units_field(tmp_path):
    """Two aspect ratios: two input sizes (in one batch), each with its own receptive fields;
    every example then has a unit to mark and a crop of the field's size."""
    rng = np.random.default_rng(0)
    for i, size in enumerate([(40, 60), (60, 40), (40, 60), (60, 40), (50, 50)]):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    model = Tiny().eval()
    pre = ls.Preprocess(resize=32)  # the shorter side: three input shapes
    sw = ls.sweep(model, tmp_path, ["relu"], k=5, preprocess=pre, batch_size=8, progress=False)
    assert sorted(sw.fields["relu"]) == ["32x32", "32x48", "48x32"]
    for c in range(4):
        for e in sw.top("relu", c):
            prepared, field, cell = sw.unit_boxes("relu", e.index, e.location)
            assert field is not None and cell is not None
            rf = sw.fields["relu"]["x".join(map(str, prepared.geometry.input_size))]
            assert e.crop().size == (
                round(field[3]) - round(field[1]),
                round(field[2]) - round(field[0]),
            )
            assert field[2] - field[0] == pytest.approx(rf.size[0] * prepared.geometry.scale[0])


def test_crops_of_a_new_sweep_are_its_own(tmp_path):
    """The crop cache serves a sweep's own patches only: after a sweep is dropped and a new one
    made over other images (Python may give it the same id), the thumbnails are the new ones."""
    import gc
    import io

    from layerscope.widget.dataset_view import CropCache

    model, cache = Tiny().eval(), CropCache()

    def thumb_and_colour(folder, seed):
        """The cached thumbnail's colour, and the colour of the image it should come from."""
        rng = np.random.default_rng(seed)
        folder.mkdir()
        # One image of one flat colour: the same (module, image, unit) key as in the other
        # sweep, and a thumbnail of any patch has the image's colour.
        colour = rng.integers(60, 256, 3).astype(np.uint8)
        Image.fromarray(np.broadcast_to(colour, (40, 48, 3)).copy()).save(folder / "0.png")
        sw = ls.sweep(model, folder, ["relu"], k=1, preprocess=PRE, progress=False)
        ex = sw.top("relu", 0)[0]
        jpeg, _ = cache.get(sw, "relu", ex.index, (0, 0))
        pixels = np.asarray(Image.open(io.BytesIO(jpeg))).reshape(-1, 3).astype(int)
        shown = np.median(pixels[pixels.sum(1) > 120], axis=0)  # not the black padding
        return shown, np.asarray(Image.open(ex.source))[0, 0].astype(int)

    thumb_and_colour(tmp_path / "a", 0)
    gc.collect()
    shown, truth = thumb_and_colour(tmp_path / "b", 1)
    assert np.abs(shown - truth).max() <= 12, (shown, truth)


def test_a_sweep_of_other_weights_is_refused(swept):
    """A sweep made with other weights (here: the same architecture, one filter changed, as after
    more training) would put its scores on units of maps this model computes, where they do not
    hold: the Explorer refuses it, from the constructor and from the setter."""
    model, _, sw = swept
    other = Tiny().eval()
    with torch.no_grad():
        other.conv.weight[1] *= -1.5
    # The independent truth: at the sweep's best unit of channel 1, the other model's value is
    # not the stated score (a by-hand hook on the other model).
    best = sw.top("relu", 1)[0]
    out = {}
    h = other.relu.register_forward_hook(lambda m, a, o: out.__setitem__("o", o.clone()))
    with torch.no_grad():
        other(PRE(best.source).tensor)
    h.remove()
    row, col = best.location
    assert float(out["o"][0, 1, row, col]) != pytest.approx(best.score, rel=1e-3)
    with pytest.raises(LayerScopeError, match="made with another model"):
        _explorer(other, sw)
    ex = ls.Explorer(other, ls.sample_image("chelsea"), preprocess=PRE, hooked_modules=["relu"])
    with pytest.raises(LayerScopeError, match="made with another model"):
        ex.dataset_sweep = sw
    assert ex.dataset_sweep is None and ex._dataset == {}
    mine = _explorer(model, sw)  # its own model: accepted
    assert mine.dataset_sweep is sw
