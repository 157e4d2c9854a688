"""Resuming a sweep interrupted in the middle of a forward: no image is counted twice."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import layerscope as ls
from layerscope.dataset import Sweep
from test_sweep import PRE, Tiny, make_images


def test_an_interrupt_mid_forward_counts_no_image_twice(tmp_path):
    model = Tiny().eval()
    make_images(tmp_path / "p", 10)
    whole = ls.sweep(
        model, tmp_path / "p", ["conv", "relu"], k=3, preprocess=PRE, batch_size=2, progress=False
    )
    path = tmp_path / "run.safetensors"
    calls = [0]

    def stop_in_third_forward(_m, _a, _o):
        calls[0] += 1
        if calls[0] == 3:  # after `conv` has reduced the batch, before `relu` has
            raise KeyboardInterrupt

    handle = model.relu.register_forward_hook(stop_in_third_forward)
    with pytest.raises(KeyboardInterrupt):
        ls.sweep(model, tmp_path / "p", ["conv", "relu"], k=3, preprocess=PRE, batch_size=2,
                 path=path, progress=False)  # fmt: skip
    handle.remove()
    saved = Sweep.load(path)
    # Independent truth: each channel's value count is images x positions (16 x 16 at 32 px).
    assert sorted(saved.processed) == list(range(len(saved.processed)))
    for name in ("conv", "relu"):
        assert torch.equal(saved.states[name].count, torch.full((6,), 256 * len(saved.processed)))
    resumed = ls.sweep(model, tmp_path / "p", ["conv", "relu"], k=3, preprocess=PRE,
                       batch_size=2, path=path, progress=False)  # fmt: skip
    for name in ("conv", "relu"):
        assert torch.equal(resumed.states[name].count, torch.full((6,), 256 * 10))
        for c in range(6):
            ids = [e.source for e in resumed.top(name, c)]
            assert len(ids) == len(set(ids))
            assert ids == [e.source for e in whole.top(name, c)]


def _interrupted(model, folder, path, pre, after=4):
    def stop(done, total):
        if done >= after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ls.sweep(model, folder, ["relu"], k=3, preprocess=pre, batch_size=2, path=path,
                 progress=stop)  # fmt: skip


def _sized(n):
    def pre(image):  # one name, one code: only the closure value differs
        return ls.Preprocess(resize=(n, n))(image).tensor[0]

    return pre


@pytest.mark.parametrize("kind", ["same name", "lambda"])
def test_resuming_with_another_preprocessing_function_is_refused(tmp_path, kind):
    model = Tiny().eval()
    make_images(tmp_path / "p", 8)
    path = tmp_path / "run.safetensors"
    if kind == "same name":
        first, second = _sized(64), _sized(96)
    else:
        first = lambda im: ls.Preprocess(resize=(64, 64))(im).tensor[0]  # noqa: E731
        second = lambda im: ls.Preprocess(resize=(96, 96))(im).tensor[0]  # noqa: E731
    _interrupted(model, tmp_path / "p", path, first)
    with pytest.raises(ls.LayerScopeError, match="preprocessing"):
        ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=second, batch_size=2,
                 path=path, progress=False)  # fmt: skip
    with pytest.raises(ls.LayerScopeError, match="not the one"):
        Sweep.load(path, images=tmp_path / "p", preprocess=second)
    # The same function again resumes, and its field sizes are those of 64 x 64 inputs only.
    again = ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=first, batch_size=2,
                     path=path, progress=False)  # fmt: skip
    assert again.images == 8 and set(again.fields["relu"]) == {"64x64"}


def test_resuming_after_an_image_changed_is_refused(tmp_path):
    model = Tiny().eval()
    paths = make_images(tmp_path / "p", 8)
    path = tmp_path / "run.safetensors"
    _interrupted(model, tmp_path / "p", path, PRE)
    counted = sorted(Sweep.load(path).processed)
    Image.fromarray(np.zeros((40, 48, 3), np.uint8)).save(paths[counted[0]])  # same name
    with pytest.raises(ls.LayerScopeError, match="changed"):
        ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=PRE, batch_size=2,
                 path=path, progress=False)  # fmt: skip


def test_a_preprocessing_known_only_by_its_address_cannot_resume(tmp_path):
    class Opaque:
        __slots__ = ()

        def __call__(self, image):
            return PRE(image).tensor[0]

    model = Tiny().eval()
    make_images(tmp_path / "p", 6)
    path = tmp_path / "run.safetensors"
    _interrupted(model, tmp_path / "p", path, Opaque())
    with pytest.raises(ls.LayerScopeError, match="cannot tell"):
        ls.sweep(model, tmp_path / "p", ["relu"], k=3, preprocess=Opaque(), batch_size=2,
                 path=path, progress=False)  # fmt: skip


def test_a_loaded_sweep_refuses_to_show_an_image_rewritten_since(tmp_path):
    model = Tiny().eval()
    paths = make_images(tmp_path / "p", 6)
    path = ls.sweep(model, tmp_path / "p", ["relu"], k=6, preprocess=PRE, progress=False).save(
        tmp_path / "s.safetensors"
    )
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(paths[2])  # same name and size
    loaded = Sweep.load(path, images=tmp_path / "p")
    examples = {e.index: e for e in loaded.top("relu", 0)}
    assert set(examples) == set(range(6))
    # Independent truth: the crop of an unchanged image is cut from that file's own pixels.
    e = examples[0]
    prepared, field, _ = loaded.unit_boxes("relu", 0, e.location)
    assert field is not None and prepared.image.tobytes() == Image.open(paths[0]).tobytes()
    with pytest.raises(ls.LayerScopeError, match=r"image 2 .*changed since it was swept"):
        examples[2].crop()
    with pytest.raises(ls.LayerScopeError, match="changed since"):
        loaded.original(2)


def test_ctrl_c_while_a_batch_is_merged_leaves_a_consistent_checkpoint(tmp_path, monkeypatch):
    from layerscope.dataset.topk import ChannelTopK

    model = Tiny().eval()
    make_images(tmp_path / "p", 8)
    path = tmp_path / "run.safetensors"
    merges = [0]
    merge = ChannelTopK.merge

    def merge_then_ctrl_c(self, other):  # a real SIGINT, between two modules' merges
        merge(self, other)
        merges[0] += 1
        if merges[0] == 3:  # batch 2's first module: the second still to merge
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ChannelTopK, "merge", merge_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        ls.sweep(model, tmp_path / "p", ["conv", "relu"], k=3, preprocess=PRE, batch_size=2,
                 path=path, progress=False)  # fmt: skip
    monkeypatch.undo()
    saved = Sweep.load(path)
    # Independent truth: each module's value count is images x positions (16 x 16 at 32 px),
    # for the images the checkpoint says were counted: no module holds a batch the record lacks.
    assert len(saved.processed) in (2, 4)
    for name in ("conv", "relu"):
        assert torch.equal(saved.states[name].count, torch.full((6,), 256 * len(saved.processed)))
