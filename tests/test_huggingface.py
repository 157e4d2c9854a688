"""Models from Hugging Face ``transformers`` (random-init configs; nothing is downloaded): class
maps and class vectors in a ``ModelOutput``'s ``logits``, class names from ``config.id2label``,
token sequences on their (non-square) grid, Grad-CAM through ``logits``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import layerscope as ls

transformers = pytest.importorskip("transformers")


def _segformer():
    torch.manual_seed(0)
    labels = {i: f"class{i}" for i in range(5)}
    cfg = transformers.SegformerConfig(
        num_labels=5, id2label=labels, label2id={v: k for k, v in labels.items()},
        depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=64,
        num_attention_heads=[1, 2, 2, 4],
    )  # fmt: skip
    return transformers.SegformerForSemanticSegmentation(cfg).eval()


def test_segformer_class_map_legend_and_tokens():
    model = _segformer()
    ex = ls.Explorer(model, "astronaut", preprocess=ls.Preprocess(resize=(96, 128)))
    assert ex.class_names == [f"class{i}" for i in range(5)]
    # By hand: logits at 1/4 of the input, upsampled bilinearly to it, then the argmax.
    with torch.no_grad():
        logits = model(ex.inputs).logits
    assert logits.shape[-2:] == (24, 32)
    up = F.interpolate(logits, size=(96, 128), mode="bilinear", align_corners=False)
    counts = torch.bincount(up[0].argmax(0).flatten(), minlength=5).numpy()
    legend = {e["index"]: e["fraction"] for e in ex._segmentation["legend"]}
    assert legend == pytest.approx({i: c / counts.sum() for i, c in enumerate(counts) if c})
    assert ex._class_score["name"] in ex.class_names
    # A block's output is (1, 192, 32): tokens on the 12 x 16 grid of its patch embedding.
    seen = {}
    handle = dict(model.named_modules())["segformer.stages.1.blocks.0"].register_forward_hook(
        lambda m, a, out: seen.setdefault("out", out[0] if isinstance(out, tuple) else out)
    )
    with torch.no_grad():
        model(ex.inputs)
    handle.remove()
    ex.hooked_modules = ["segformer.stages.1.blocks.0"]
    layer = ex._layer
    assert layer["kind"] == "maps" and layer["map_size"] == [12, 16] and layer["channels"] == 32
    assert layer["layout"] == {"name": "NLC", "grid": [12, 16], "skip": 0, "source": "traced"}
    ex.selected_channel = 7
    got = np.frombuffer(ex._channel["map"]["data"], np.float32).reshape(12, 16)
    assert np.allclose(got, seen["out"][0, :, 7].reshape(12, 16).numpy(), atol=1e-6)


def test_segformer_grad_cam_through_logits():
    model = _segformer()
    ex = ls.Explorer(model, "astronaut", preprocess=ls.Preprocess(resize=(96, 128)),
                     hooked_modules=["decode_head.linear_fuse"])  # fmt: skip
    ex.overlay = "gradcam"
    assert ex.errors == {} and ex._gradcam["module"] == "decode_head.linear_fuse"
    cls = ex._gradcam["class"]
    with torch.no_grad():
        logits = model(ex.inputs).logits
    assert ex._gradcam["pixels"] == int((logits[0].argmax(0) == cls).sum())


def test_vit_classifier_labels_and_class_token():
    torch.manual_seed(0)
    labels = {0: "cat", 1: "dog", 2: "fox", 3: "owl"}
    cfg = transformers.ViTConfig(
        image_size=64, patch_size=16, hidden_size=32, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, num_labels=4, id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    model = transformers.ViTForImageClassification(cfg).eval()
    ex = ls.Explorer(model, "astronaut", preprocess=ls.Preprocess(resize=(64, 64)))
    with torch.no_grad():
        logits = model(ex.inputs).logits[0]
    order = torch.argsort(logits, descending=True).tolist()
    assert ex._prediction["top_label"] == [labels[i] for i in order]
    probs = torch.softmax(logits, 0)[order].numpy()
    assert np.allclose(ex._prediction["top_probability"], probs, atol=1e-6)
    block = [n for n, _ in model.named_modules() if n.endswith("layers.1") or n.endswith("layer.1")]
    ex.hooked_modules = block
    layout = ex._layer["layout"]
    assert layout == {"name": "NLC", "grid": [4, 4], "skip": 1, "source": "traced"}
    ex.overlay = "gradcam"
    assert ex.errors == {} and ex._gradcam["module"] == block[0]
