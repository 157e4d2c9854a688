"""Every output shape gets the views it can have: tokens on their patch grid, channels-last maps
the right way round, vectors as labelled bars, video by frame, anything else as statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

from layerscope import Explorer
from layerscope.widget.schema import decode_array


def test_vision_transformer_tokens_on_their_patch_grid():
    ex = Explorer("vit_b_16", weights=None, hooked_modules=["encoder.layers.encoder_layer_11"])
    layer = ex._layer
    assert layer["kind"] == "maps" and layer["grid"] == [14, 14] and layer["class_token"]
    assert layer["channels"] == 768 and layer["map_size"] == [14, 14]
    assert "class_token_stats" in layer
    assert len(ex._prediction["top_label"]) == 5  # a classifier: the top predictions


def test_vectors_get_labelled_bars():
    ex = Explorer("resnet18", weights=None, hooked_modules=["avgpool", "fc"])
    fc = ex._layer
    assert fc["kind"] == "vector" and fc["length"] == 1000 and len(fc["top_label"]) == 16
    logits = ex.activations["fc"][0].float()
    by_hand = torch.exp(logits - logits.max()) / torch.exp(logits - logits.max()).sum()
    assert np.allclose(fc["top_probability"], by_hand[fc["top_index"]].numpy(), atol=1e-6)
    assert fc["top_index"] == torch.argsort(logits, descending=True)[:16].tolist()
    ex.selected_module = "avgpool"  # (1, 512, 1, 1): a vector, no labels
    assert ex._layer["kind"] == "vector" and ex._layer["top_label"] is None


class Video(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.conv(x).mean((2, 3, 4)))


def test_video_by_frame_and_anything_else_gets_statistics():
    torch.manual_seed(0)
    clip = torch.rand(1, 3, 5, 16, 16)
    ex = Explorer(
        Video(),
        np.zeros((16, 16, 3), np.uint8),
        preprocess=lambda im: clip,
        hooked_modules=["conv"],
    )
    assert ex._layer["frames"] == 5 and ex._layer["kind"] == "maps"
    ex.selected_frame = 3
    got = np.frombuffer(ex._channel["map"]["data"], np.float32).reshape(16, 16)
    assert np.allclose(got, ex.activations["conv"][0, ex.selected_channel, 3].numpy())
    with pytest.raises(traitlets.TraitError, match="frame 9 is out of range"):
        ex.selected_frame = 9
    ex.set_state({"selected_frame": 9})  # from the browser: refused and shown
    assert "out of range" in ex._error and ex.selected_frame == 3


@pytest.mark.parametrize("name", ["fcn_resnet50", "lraspp_mobilenet_v3_large"])
def test_other_segmentation_models(name, monkeypatch):
    monkeypatch.setenv("LAYERSCOPE_IMAGE_SIZE", "96")
    ex = Explorer(name, weights=None)
    assert ex._segmentation["legend"]
    last = [n["id"] for n in ex._tree if n["shape"] and isinstance(n["shape"], list)][-1]
    ex.hooked_modules = [last]
    # The last traced module is a 21-class head: class maps, checked against a hook by hand.
    out = {}
    module = dict(ex.model.named_modules())[last]
    h = module.register_forward_hook(lambda m, a, o: out.__setitem__("o", o.detach().clone()))
    try:
        with torch.no_grad():
            ex.model(ex.inputs)
    finally:
        h.remove()
    by_hand = out["o"][0]  # (21, H, W)
    assert ex._error == "" and ex._layer["kind"] == "maps"
    assert ex._layer["channels"] == by_hand.shape[0] == 21
    assert ex._layer["map_size"] == list(by_hand.shape[1:])
    assert by_hand.shape[1] < ex.inputs.shape[-2]  # a head's map, not the upsampled output
    ex.selected_channel = 15  # VOC's person
    shown = decode_array(ex._channel["map"])
    assert ex._channel["channel"] == 15
    assert np.allclose(shown, by_hand[15].numpy(), rtol=1e-5, atol=1e-6)
    assert not np.allclose(shown, by_hand[14].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "builder, module, channels, side",
    [
        ("swin_t", "features.5", 384, 14),  # (1, 14, 14, 384): channels last
        ("swin_t", "features.0", 96, 56),
        ("convnext_tiny", "features.1.0.block.3", 384, 56),  # permuted inside the block
        ("convnext_tiny", "features.1.0.block.0", 96, 56),  # still channels first
    ],
)
def test_channels_last_outputs_are_drawn_the_right_way_round(builder, module, channels, side):
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, builder)().eval()
    ex = Explorer(model, "astronaut", preprocess=ls_preprocess(224), hooked_modules=[module])
    layer = ex._layer
    assert ex._error == "" and layer["kind"] == "maps"
    assert layer["channels"] == channels and layer["map_size"] == [side, side]
    assert layer["layout"]["source"] == "traced"
    out = ex.activations[module][0]
    maps = out if out.shape[0] == channels else out.permute(2, 0, 1)  # by hand, to (C, H, W)
    ex.selected_channel = channels - 1  # the last channel exists
    got = np.frombuffer(ex._channel["map"]["data"], np.float32).reshape(side, side)
    assert np.allclose(got, maps[channels - 1].numpy(), atol=1e-6)
    mean = np.frombuffer(ex._layer["aggregates"]["data"], np.float32).reshape(3, side, side)[0]
    assert np.allclose(mean, maps.mean(0).numpy(), atol=1e-5)


def test_vision_transformer_tokens_are_traced_to_their_grid():
    import torchvision

    torch.manual_seed(0)
    ex = Explorer(torchvision.models.vit_b_16().eval(), "astronaut", preprocess=ls_preprocess(224),
                  hooked_modules=["encoder.layers.encoder_layer_3"])  # fmt: skip
    layer = ex._layer
    assert layer["layout"] == {"name": "NLC", "grid": [14, 14], "skip": 1, "source": "traced"}
    tokens = ex.activations["encoder.layers.encoder_layer_3"][0]  # (197, 768)
    ex.selected_channel = 5
    got = np.frombuffer(ex._channel["map"]["data"], np.float32).reshape(14, 14)
    assert np.allclose(got, tokens[1:, 5].reshape(14, 14).numpy(), atol=1e-6)


def test_a_layout_the_user_gives_wins():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 4, stride=4)
            self.mix = nn.Linear(4, 4)

        def forward(self, x):
            f = self.conv(x)  # (N, 4, 6, 8)
            # A reshape the tracer could follow, but here the user knows better: say NLC.
            t = self.mix(f.flatten(2).transpose(1, 2))  # (N, 48, 4)
            return t.mean(1)

    torch.manual_seed(0)
    model = Flat().eval()
    image = np.zeros((24, 32, 3), np.uint8)
    traced = Explorer(model, image, preprocess=lambda im: torch.rand(1, 3, 24, 32),
                      hooked_modules=["mix"])  # fmt: skip
    assert traced._layer["map_size"] == [6, 8] and traced._layer["layout"]["source"] == "traced"
    with pytest.raises(ValueError, match="48 tokens are not a square grid"):
        from layerscope.spatial import Layout

        Layout.given("NLC", (1, 48, 4))
    with pytest.raises(Exception, match="did you mean 'mix'"):
        Explorer(model, image, preprocess=lambda im: torch.rand(1, 3, 24, 32),
                 layouts={"mixx": "NHWC"})  # fmt: skip


def ls_preprocess(size):
    import layerscope as ls

    return ls.Preprocess(resize=(size, size))
