"""The dataset sweep against brute force (every image hooked by hand, ranked), with ties and a
dead channel; unreadable files; the on-disk format; resuming after an interrupt or a killed
process; crops under the receptive field."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import layerscope as ls
from layerscope.dataset import Sweep

PRE = ls.Preprocess(resize=(32, 32))


class Tiny(nn.Module):
    """Channel 4 is constant (every image ties), channel 5 never exceeds zero (dead)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1)
        with torch.no_grad():
            self.conv.weight[4:] = 0
            self.conv.bias[4] = 1.0
            self.conv.bias[5] = -1.0
        self.relu = nn.ReLU()
        self.head = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.relu(self.conv(x)).mean((2, 3)))


def make_images(folder: Path, n: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, (40 + i % 3, 48, 3), dtype=np.uint8)
        p = folder / ("sub" if i % 2 else "") / f"img{i:02d}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(pixels).save(p)
        paths.append(p)
    return sorted(paths)


def brute_force(model, paths, module, k):
    """Hook every image by hand, one at a time; rank by score, then by image index."""
    rows = []
    out = {}
    h = dict(model.named_modules())[module].register_forward_hook(
        lambda m, a, o: out.__setitem__("o", o.detach().clone())
    )
    try:
        for p in paths:
            with torch.no_grad():
                model(PRE(p).tensor)
            rows.append(out["o"][0])
    finally:
        h.remove()
    maps = torch.stack(rows)  # (N, C, H, W)
    flat = maps.flatten(2)
    best, where = flat.max(2)
    top = {}
    for c in range(maps.shape[1]):
        order = sorted(range(len(paths)), key=lambda i: (-float(best[i, c]), i))[:k]
        top[c] = [(str(paths[i]), float(best[i, c]), divmod(int(where[i, c]), maps.shape[-1]))
                  for i in order]  # fmt: skip
    return top, maps


def test_top_k_and_statistics_equal_brute_force(tmp_path):
    model = Tiny().eval()
    paths = make_images(tmp_path / "photos", 11)
    sw = ls.sweep(
        model, tmp_path / "photos", ["relu"], k=4, preprocess=PRE, batch_size=3, progress=False
    )
    top, maps = brute_force(model, paths, "relu", 4)
    assert sw.images == 11 and sw.skipped == []
    for c in range(6):
        got = [(e.source, e.score, e.location) for e in sw.top("relu", c)]
        assert [g[0] for g in got] == [t[0] for t in top[c]], c  # ties: the lower index first
        assert [g[1] for g in got] == pytest.approx([t[1] for t in top[c]])
        assert [g[2] for g in got] == [t[2] for t in top[c]]
    assert [e.source for e in sw.top("relu", 4)] == [str(p) for p in paths[:4]]  # all tie
    a = maps.numpy()
    stats = sw.stats("relu")
    assert stats.mean == pytest.approx(a.mean((0, 2, 3)), rel=1e-5, abs=1e-6)
    assert stats.max == pytest.approx(a.max((0, 2, 3)))
    assert stats.fraction_zero == pytest.approx((a == 0).mean((0, 2, 3)))
    assert list(sw.dead("relu")) == [5]


def test_channel_top_k_with_zeros_infinities_and_nans_against_numpy():
    """Batches with and without non-finite values (the two paths of ChannelTopK.update), merged
    in any split, against numpy over all images at once: NaN and infinities are no score."""
    from layerscope.dataset.topk import ChannelTopK

    rng = np.random.default_rng(3)
    x = np.maximum(rng.normal(size=(12, 5, 4, 6)), 0).astype(np.float32)  # many exact zeros
    # Non-finite values in images 0-4 only: the batches of images 5-11 take the fast path.
    x[2, 1, 2, 3] = np.nan
    x[4, 2, 0, 0] = np.inf
    x[4, 2, 1, 1] = -np.inf
    x[:5, 4] = np.nan
    x[3, 0, 1, 2] = 50.0
    flat = x.reshape(12, 5, -1)
    finite = np.isfinite(flat)
    scores = np.where(finite, flat, -np.inf).max(2)  # (N, C)
    whole = ChannelTopK(4)
    whole.update(torch.from_numpy(x), torch.arange(12))
    for split in ([0, 5, 12], [0, 3, 8, 12]):
        parts = ChannelTopK(4)
        for a, b in zip(split, split[1:]):
            part = ChannelTopK(4)
            part.update(torch.from_numpy(x[a:b]), torch.arange(a, b))
            parts.merge(part)
        for st in (whole, parts):
            for c in range(5):
                order = sorted(range(12), key=lambda i: (-scores[i, c], i))[:4]
                assert st.ids[c].tolist() == order
                assert st.scores[c].numpy() == pytest.approx(scores[order, c])
            assert st.ids[0, 0] == 3 and (st.rows[0, 0], st.cols[0, 0]) == (1, 2)
            values = np.where(finite, flat, 0)
            assert st.total.numpy() == pytest.approx(values.sum((0, 2)), rel=1e-6)
            assert st.count.tolist() == finite.sum((0, 2)).tolist()
            assert st.zeros.tolist() == ((flat == 0) & finite).sum((0, 2)).tolist()
            peak = np.where(finite, flat, -np.inf).max((0, 2))
            assert st.peak.numpy() == pytest.approx(peak)


def test_a_real_network_in_one_batch_or_many(tmp_path):
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    paths = make_images(tmp_path / "p", 9)
    one = ls.sweep(
        net, paths, ["layer2", "avgpool"], k=3, preprocess=PRE, batch_size=9, progress=False
    )
    many = ls.sweep(
        net, paths, ["layer2", "avgpool"], k=3, preprocess=PRE, batch_size=2, progress=False
    )
    top, _ = brute_force(net, paths, "layer2", 3)
    for c in (0, 17, 127):
        assert [e.source for e in one.top("layer2", c)] == [t[0] for t in top[c]]
        assert [(e.source, e.location) for e in one.top("layer2", c)] == [
            (e.source, e.location) for e in many.top("layer2", c)
        ]
        assert [e.score for e in one.top("layer2", c)] == pytest.approx(
            [e.score for e in many.top("layer2", c)], rel=1e-5
        )
    assert one.top("avgpool", 3)[0].location == (0, 0)  # a 1x1 map


def test_unreadable_files_are_skipped_and_reported(tmp_path):
    model = Tiny().eval()
    make_images(tmp_path / "mix", 3)
    (tmp_path / "mix" / "notes.jpg").write_text("not an image")
    good = tmp_path / "mix" / "img00.png"
    (tmp_path / "mix" / "truncated.png").write_bytes(good.read_bytes()[:60])
    sw = ls.sweep(model, tmp_path / "mix", ["relu"], k=2, preprocess=PRE, progress=False)
    assert sw.images == 3
    assert sorted(Path(s).name for s, _ in sw.skipped) == ["notes.jpg", "truncated.png"]
    assert all("image" in why.lower() for _, why in sw.skipped)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_text("nope")
    with pytest.raises(ls.LayerScopeError, match="no image could be read"):
        ls.sweep(model, tmp_path / "bad", ["relu"], preprocess=PRE, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ls.LayerScopeError, match="no images in"):
        ls.sweep(model, tmp_path / "empty", ["relu"], progress=False)


def test_datasets_tensors_and_crops():
    model = Tiny().eval()
    data = torchvision.datasets.FakeData(
        size=7, image_size=(3, 40, 40), num_classes=2, random_offset=3
    )
    sw = ls.sweep(model, data, ["relu", "conv"], k=3, preprocess=PRE, progress=False)
    assert sw.images == 7 and isinstance(sw.top("relu", 0)[0].source, int)
    tensors = [torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(i)) for i in range(5)]
    by_tensor = ls.sweep(model, tensors, ["relu"], k=2, preprocess=PRE, progress=False)
    assert by_tensor.images == 5
    # The crop is the unit's receptive field on the original image: conv 3x3 stride 2 pad 1 on a
    # 32 px input from a 40 px image: 3 input px = 3.75 image px; a corner unit is padded.
    ex = sw.top("conv", 0)[0]
    row, col = ex.location
    x0, x1 = (2 * col - 1) * 1.25, (2 * col + 2) * 1.25  # input px 2c-1 .. 2c+2, times 40/32
    y0, y1 = (2 * row - 1) * 1.25, (2 * row + 2) * 1.25
    assert ex.crop().size == (round(x1) - round(x0), round(y1) - round(y0))
    corner = sw.crop("conv", 0, (0, 0))
    assert np.asarray(corner)[0, 0].tolist() == [0, 0, 0]  # past the border: black
    with pytest.raises(ls.LayerScopeError, match="did you mean 'relu'"):
        sw.top("rellu", 0)


def test_save_load_and_refuse_another_model(tmp_path):
    model = Tiny().eval()
    make_images(tmp_path / "p", 5)
    sw = ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=PRE, progress=False)
    path = sw.save(tmp_path / "s.safetensors")
    again = Sweep.load(path, images=tmp_path / "p", model=model)
    for c in range(6):
        assert [(e.source, e.score) for e in again.top("relu", c)] == [
            (e.source, e.score) for e in sw.top("relu", c)
        ]
    assert np.array_equal(again.stats("relu").max, sw.stats("relu").max)
    best, reloaded = sw.top("relu", 0)[0], again.top("relu", 0)[0]  # crops need the images
    assert np.array_equal(np.asarray(reloaded.crop()), np.asarray(best.crop()))
    other = Tiny().eval()
    with torch.no_grad():
        other.conv.weight.mul_(2)
    with pytest.raises(ls.LayerScopeError, match="other weights"):
        Sweep.load(path, model=other)
    with pytest.raises(ls.LayerScopeError, match="another sweep .*model weights"):
        ls.sweep(other, tmp_path / "p", ["relu"], k=3, preprocess=PRE, path=path, progress=False)


def test_an_interrupted_sweep_continues_and_counts_no_image_twice(tmp_path):
    model = Tiny().eval()
    make_images(tmp_path / "p", 10)
    (tmp_path / "p" / "broken.png").write_bytes(b"not an image")  # first in order: batch 1
    whole = ls.sweep(
        model, tmp_path / "p", ["relu"], k=3, preprocess=PRE, batch_size=2, progress=False
    )
    path = tmp_path / "run.safetensors"

    def stop_after_four(done, total):
        if done >= 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ls.sweep(
            model,
            tmp_path / "p",
            ["relu"],
            k=3,
            preprocess=PRE,
            batch_size=2,
            path=path,
            progress=stop_after_four,
        )
    partial = Sweep.load(path)
    assert partial.images == 3 and len(partial.processed) == 4  # the broken file is done too
    counted = []
    resumed = ls.sweep(
        model,
        tmp_path / "p",
        ["relu"],
        k=3,
        preprocess=PRE,
        batch_size=2,
        path=path,
        progress=lambda d, t: counted.append(d),
    )
    assert resumed.images == 10 and counted[0] > 4 and counted[-1] == 11
    # Read once, skipped once: a resumed sweep that read it again would list it twice.
    assert [Path(s).name for s, _ in resumed.skipped] == ["broken.png"]
    for c in range(6):
        assert [(e.source, e.score) for e in resumed.top("relu", c)] == [
            (e.source, e.score) for e in whole.top("relu", c)
        ]
    stats, ref = resumed.stats("relu"), whole.stats("relu")
    assert stats.mean == pytest.approx(ref.mean) and stats.max == pytest.approx(ref.max)


KILLED = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import layerscope as ls
    lsw = sys.modules["layerscope.dataset"]
    fmt = sys.modules["layerscope.dataset.format"]
    from test_sweep import Tiny, PRE
    lsw.CHECKPOINT_SECONDS = 0.0  # a checkpoint after every batch
    def die():
        os.kill(os.getpid(), signal.SIGKILL)
    def kill_at_six(done, total):  # batch 3 counted, its checkpoint not yet written
        if {when!r} == "after batch" and done >= 6:
            die()
    real_save, saves = fmt.save_file, []
    def half_written(tensors, target, metadata=None):  # the third checkpoint dies mid-write
        real_save(tensors, target, metadata=metadata)
        saves.append(target)
        if {when!r} == "during write" and len(saves) == 3:
            with open(target, "r+b") as f:
                f.truncate(os.path.getsize(target) // 2)
            die()
    fmt.save_file = half_written
    ls.sweep(Tiny().eval(), {folder!r}, ["relu"], k=3, preprocess=PRE, batch_size=2,
             path={path!r}, progress=kill_at_six)
""")


@pytest.mark.parametrize("when", ["after batch", "during write"])
def test_a_killed_process_loses_only_the_last_batch(tmp_path, when):
    """Killed (SIGKILL, by the process itself at a known point) after its third batch was
    counted, or while writing the third checkpoint: the file holds the first two batches."""
    make_images(tmp_path / "p", 12)
    path = tmp_path / "killed.safetensors"
    code = KILLED.format(
        tests=str(Path(__file__).parent), folder=str(tmp_path / "p"), path=str(path), when=when
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    partial = Sweep.load(path)
    assert partial.images == 4 and sorted(partial.processed) == [0, 1, 2, 3]
    model = Tiny().eval()
    resumed = ls.sweep(
        model,
        tmp_path / "p",
        ["relu"],
        k=3,
        preprocess=PRE,
        batch_size=2,
        path=path,
        progress=False,
    )
    whole = ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=PRE, progress=False)
    assert resumed.images == 12
    for c in range(6):
        assert [(e.source, e.score) for e in resumed.top("relu", c)] == [
            (e.source, e.score) for e in whole.top("relu", c)
        ]


def test_receptive_fields_are_traced_once_per_image_size(monkeypatch):
    """A swept module without a receptive field (``head``: a vector) must not make every batch
    trace the model again: one trace per image size, whatever the batch sizes."""
    import layerscope.dataset as dataset

    traced = []
    real = dataset.receptive_fields
    monkeypatch.setattr(
        dataset, "receptive_fields", lambda m, x: traced.append(x.shape) or real(m, x)
    )
    images = [torch.rand(3, 32, 32) for _ in range(5)] + [torch.rand(3, 32, 48) for _ in range(2)]
    pre = ls.Preprocess(resize=None)
    sw = ls.sweep(Tiny().eval(), images, ["relu", "head"], k=2, preprocess=pre, batch_size=2,
                  progress=False)  # fmt: skip
    assert sorted(tuple(s[-2:]) for s in traced) == [(32, 32), (32, 48)]
    assert set(sw.fields["relu"]) == {"32x32", "32x48"}


def test_a_reloaded_sweep_with_its_own_preprocessing_needs_it_again_for_crops(tmp_path):
    """A Preprocess is restored from the file; a function of one's own must be given again,
    and another preprocessing is refused (the crops would not be what the units saw)."""
    model = Tiny().eval()
    make_images(tmp_path / "p", 4)

    def squash(image):
        pixels = np.asarray(image.resize((32, 32)), dtype=np.float32) / 255
        return torch.from_numpy(pixels).permute(2, 0, 1)

    sw = ls.sweep(model, tmp_path / "p", ["relu"], k=2, preprocess=squash, progress=False)
    path = sw.save(tmp_path / "s.safetensors")
    blind = Sweep.load(path, images=tmp_path / "p")
    with pytest.raises(ls.LayerScopeError, match="preprocess="):
        blind.top("relu", 0)[0].crop()
    again = Sweep.load(path, images=tmp_path / "p", preprocess=squash)
    best = sw.top("relu", 0)[0].crop()
    assert np.array_equal(np.asarray(again.top("relu", 0)[0].crop()), np.asarray(best))
    with pytest.raises(ls.LayerScopeError, match="is not the one"):
        Sweep.load(path, images=tmp_path / "p", preprocess=ls.Preprocess(resize=(40, 40)))


def test_dangling_symlinks_and_symlink_loops_in_a_folder_are_skipped_and_reported(tmp_path):
    paths = make_images(tmp_path / "p", 3)
    (tmp_path / "p" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "p" / "loop.png").symlink_to(tmp_path / "p" / "loop.png")
    sw = ls.sweep(Tiny().eval(), tmp_path / "p", ["relu"], k=3, preprocess=PRE, progress=False)
    assert sw.images == len(paths)
    skipped = {Path(s).name: why for s, why in sw.skipped}
    assert set(skipped) == {"gone.png", "loop.png"}
    assert all(why for why in skipped.values())


def test_images_with_nan_pixels_or_nan_after_preprocessing_are_skipped(tmp_path):
    make_images(tmp_path / "p", 3)
    pixels = np.full((40, 48), 0.5, dtype=np.float32)
    pixels[3, 4] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "p" / "nan.tif")
    sw = ls.sweep(Tiny().eval(), tmp_path / "p", ["relu"], k=3, preprocess=PRE, progress=False)
    assert sw.images == 3
    assert [Path(s).name for s, _ in sw.skipped] == ["nan.tif"]
    assert "NaN" in sw.skipped[0][1]

    def poisoned(image):  # the first image's input becomes NaN after preprocessing
        x = PRE(image).tensor[0]
        return x * float("nan") if image.getpixel((0, 0)) == first_pixel else x

    first = sorted((tmp_path / "p").rglob("*.png"))[0]
    first_pixel = Image.open(first).convert("RGB").getpixel((0, 0))
    sw = ls.sweep(Tiny().eval(), tmp_path / "p", ["relu"], k=3, preprocess=poisoned,
                  progress=False)  # fmt: skip
    assert sw.images == 2
    assert sorted(Path(s).name for s, _ in sw.skipped) == sorted(["nan.tif", first.name])


def test_top_k_ties_go_to_the_earlier_image_whatever_the_merge_order():
    """Partials merged in reverse order rank like brute force: by score, then image index."""
    from layerscope.dataset.topk import ChannelTopK

    rng = np.random.default_rng(1)
    maps = torch.tensor(rng.integers(0, 3, (12, 4, 2, 2)), dtype=torch.float32)  # many ties
    k = 5
    parts = []
    for start in range(0, 12, 3):
        part = ChannelTopK(k)
        part.update(maps[start : start + 3], torch.arange(start, start + 3))
        parts.append(part)
    merged = ChannelTopK(k)
    for part in reversed(parts):
        merged.merge(part)
    best = maps.flatten(2).amax(2)  # (N, C)
    for c in range(4):
        expected = sorted(range(12), key=lambda i: (-float(best[i, c]), i))[:k]
        assert merged.ids[c].tolist() == expected
