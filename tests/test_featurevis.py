"""Feature visualization checked against what it must find: a hand-made unit that detects one
oriented grating is answered by an image whose spectrum peaks at that grating, stronger than any
photo or noise; the transforms do what their definitions say; the Fourier parameterization is
exactly invertible; and the model is left as it was found."""

from __future__ import annotations

import copy
import math
import random

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import layerscope as ls
from conftest import hook_snapshot
from layerscope.featurevis import visualize
from layerscope.featurevis.param import ImageParam, natural_magnitude
from layerscope.featurevis.transforms import Jitter, Pad, Rotate, Scale, standard

SIZE = 64
GRATINGS = [(0.125, 30.0), (0.1, 120.0)]  # per channel: cycles per pixel, degrees from x


class Grating(nn.Module):
    """Channel c: a luminance grating detector (a Gabor filter) of GRATINGS[c]'s frequency
    along its angle (y pointing down the rows), then a ReLU."""

    def __init__(self, k: int = 31) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, len(GRATINGS), k, padding=k // 2, bias=False)
        r = torch.arange(k, dtype=torch.float32) - k // 2
        yy, xx = torch.meshgrid(r, r, indexing="ij")
        window = torch.exp(-(xx**2 + yy**2) / (2 * (k / 4) ** 2))
        with torch.no_grad():
            for c, (freq, degrees) in enumerate(GRATINGS):
                theta = math.radians(degrees)
                u = xx * math.cos(theta) + yy * math.sin(theta)
                g = torch.cos(2 * math.pi * freq * u) * window
                g = g - g.mean()
                self.conv.weight[c] = g / g.norm()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def _normalized(img: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (img - mean) / std


def _photos_and_noise(n: int) -> torch.Tensor:
    """n images of SIZE x SIZE in [0, 1]: random crops of the bundled photos, and noise."""
    rng = random.Random(0)
    out = []
    photos = [Image.open(ls.sample_image(name)).convert("RGB") for name in ("astronaut", "chelsea")]
    for i in range(n):
        if i % 4 == 3:
            out.append(torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(i)))
            continue
        p = photos[i % 2]
        side = rng.randrange(48, min(p.size))
        x0, y0 = rng.randrange(p.width - side), rng.randrange(p.height - side)
        crop = p.crop((x0, y0, x0 + side, y0 + side)).resize((SIZE, SIZE), Image.BILINEAR)
        out.append(torch.from_numpy(np.asarray(crop, np.float32) / 255).permute(2, 0, 1))
    return torch.stack(out)


@pytest.fixture(scope="module")
def grating():
    return Grating().eval()


@pytest.fixture(scope="module")
def seen(grating):
    return visualize(grating, "relu", [0, 1], size=SIZE, steps=96, lr=0.05, seed=0,
                     progress=False)  # fmt: skip


def _peak(image: torch.Tensor) -> tuple[float, float]:
    """Frequency (cycles per pixel) and orientation (degrees, mod 180) of the strongest
    component of an image's spectrum (grey, mean removed)."""
    grey = image.mean(0)
    spectrum = torch.fft.fft2(grey - grey.mean()).abs()
    iy, ix = np.unravel_index(int(spectrum.argmax()), spectrum.shape)
    fy, fx = np.fft.fftfreq(SIZE)[iy], np.fft.fftfreq(SIZE)[ix]
    return math.hypot(fy, fx), math.degrees(math.atan2(fy, fx)) % 180


def test_each_grating_unit_is_answered_by_its_grating(grating, seen):
    with torch.no_grad():
        ours = grating(_normalized(seen.tensor)).mean((2, 3))
        others = grating(_normalized(_photos_and_noise(100))).mean((2, 3))
    for c, (freq, degrees) in enumerate(GRATINGS):  # row c optimized channel c
        assert ours[c, c] > others[:, c].max()  # above each of the 100 photos and noise images
        assert ours[c, c] > ours[1 - c, c]  # and above the other channel's picture
        # Its spectrum peaks at the filter's frequency and orientation (independent truth:
        # the numbers the filter was built from).
        f, angle = _peak(seen.tensor[c])
        assert f == pytest.approx(freq, abs=1.0 / SIZE)  # within one frequency bin
        bins = math.degrees(1.5 / SIZE / freq)  # the angle 1.5 frequency bins span there
        assert min(abs(angle - degrees), 180 - abs(angle - degrees)) < bins
    assert (seen.trace[-10:].mean(0) > seen.trace[:10].mean(0)).all()  # the trace rises
    assert seen.trace.shape == (96, 2) and seen.channels == [0, 1]
    assert [im.size for im in seen.images] == [(SIZE, SIZE)] * 2
    assert seen.montage().size == (2 * SIZE + 2, SIZE)


def test_one_seed_one_picture_and_the_model_left_as_found(grating, seen):
    other = copy.deepcopy(grating)  # another model object: nothing cached for it
    other.conv.weight.requires_grad_(False)
    other.train()
    other.relu.eval()
    weights = {k: v.clone() for k, v in other.state_dict().items()}
    hooks = hook_snapshot(other)
    torch.set_grad_enabled(False)
    try:
        again = visualize(other, "relu", [0, 1], size=SIZE, steps=96, seed=0, progress=False)
        assert not torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)
    assert torch.equal(again.tensor, seen.tensor) and torch.equal(again.trace, seen.trace)
    assert hook_snapshot(other) == hooks
    assert other.training and other.conv.training and not other.relu.training
    assert not other.conv.weight.requires_grad and other.conv.weight.grad is None
    assert all(torch.equal(v, weights[k]) for k, v in other.state_dict().items())
    other2 = copy.deepcopy(grating)
    third = visualize(other2, "relu", [0, 1], size=SIZE, steps=96, seed=1, progress=False)
    assert not torch.equal(third.tensor, seen.tensor)


def test_results_are_cached_until_the_weights_change(grating):
    net = copy.deepcopy(grating)
    runs = [0]
    net.conv.register_forward_pre_hook(lambda m, a: runs.__setitem__(0, runs[0] + 1))
    first = visualize(net, "relu", [0], size=32, steps=5, progress=False)
    assert runs[0] == 5
    both = visualize(net, "relu", [1, 0], size=32, steps=5, progress=False)  # only 1 is new
    assert runs[0] == 10 and torch.equal(both.tensor[1], first.tensor[0])
    with torch.no_grad():
        net.conv.weight.data[0] *= 2  # a write the cache must see
    visualize(net, "relu", [0], size=32, steps=5, progress=False)
    assert runs[0] == 15


def test_the_forward_stops_at_the_module_and_bad_arguments_are_refused():
    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    after = [0]
    net.fc.register_forward_pre_hook(lambda m, a: after.__setitem__(0, after[0] + 1))
    fv = visualize(net, "layer3", [0, 5], size=48, steps=2, param="maco", progress=False)
    assert fv.tensor.shape == (2, 3, 48, 48) and after[0] == 0  # nothing after layer3 ran
    assert all(p.requires_grad and p.grad is None for p in net.parameters())
    neuron = visualize(net, "layer2", 3, size=48, steps=2, objective="neuron", param="pixel",
                       progress=False)  # fmt: skip
    assert neuron.tensor.shape == (1, 3, 48, 48)
    for bad, match in [
        ({"channels": ["3"]}, "channels must be"),
        ({"channels": [True]}, "channels must be"),
        ({"param": "wavelet"}, "param must be"),
        ({"objective": "mean"}, "objective must be"),
        ({"steps": 0}, "steps must be"),
    ]:
        kwargs = {"channels": [0], "size": 32, "steps": 1, "progress": False, **bad}
        with pytest.raises(ls.LayerScopeError, match=match):
            visualize(net, "layer3", **kwargs)
    with pytest.raises(ls.UnknownModuleError, match="layer3"):
        visualize(net, "layer33", [0], size=32, steps=1, progress=False)


def test_transforms_do_what_their_definitions_say():
    rng = random.Random(3)
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10, 20] = 1
    j = Jitter(4)
    out = j(x, rng)
    dy, dx = j.last
    assert out.shape[-2:] == (28, 28) and 0 <= dy < 4 and 0 <= dx < 4
    assert out[0, 0, 10 - dy, 20 - dx] == 1 and out.sum() == 1
    padded = Pad(12, 0.5)(x, rng)
    assert padded.shape[-2:] == (56, 56) and padded[0, 0, 0, 0] == 0.5
    assert padded[0, 0, 22, 32] == 1
    s = Scale([1.2])
    assert s(x, rng).shape[-2:] == (38, 38) and s.last == 1.2
    # A blob 20 px right of the centre of a 65 x 65 image, turned by 30 degrees
    # counter-clockwise: it moves to (32 - 20 sin 30, 32 + 20 cos 30) (rows, cols).
    yy, xx = torch.meshgrid(torch.arange(65.0), torch.arange(65.0), indexing="ij")
    blob = torch.exp(-((yy - 32) ** 2 + (xx - 52) ** 2) / 4.0)[None, None]
    turned = Rotate([30])(blob, rng)[0, 0]
    cy = float((turned * yy).sum() / turned.sum())
    cx = float((turned * xx).sum() / turned.sum())
    assert cy == pytest.approx(32 - 20 * math.sin(math.radians(30)), abs=0.5)
    assert cx == pytest.approx(32 + 20 * math.cos(math.radians(30)), abs=0.5)
    # Lucid's standard set, back at the size asked for, each step's draws recorded.
    t = standard((64, 64))
    assert t(torch.rand(2, 3, 64, 64), rng).shape == (2, 3, 64, 64)
    assert [type(s).__name__ for s in t.transforms] == ["Pad", "Jitter", "Scale", "Rotate",
                                                       "Jitter"]  # fmt: skip
    assert t.transforms[2].factors == [1 + (i - 5) / 50 for i in range(11)]
    assert t.transforms[3].angles == list(range(-10, 11))


@pytest.mark.parametrize("h, w", [(16, 16), (15, 17)])
def test_the_fourier_parameterization_is_exactly_invertible(h, w):
    img = torch.randn(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    p = ImageParam(2, h, w, "fft")
    with torch.no_grad():
        p.param.copy_(ImageParam.fft_param_of(img))
    torch.testing.assert_close(p.raw(), img, rtol=1e-5, atol=1e-5)
    assert p().min() >= 0 and p().max() <= 1


def test_maco_keeps_the_natural_magnitude_and_optimizes_the_phase():
    p = ImageParam(1, 32, 32, "maco", generator=torch.Generator().manual_seed(0))
    mag = torch.fft.rfft2(p.raw(), norm="ortho").abs()[0, :, :, 1:-1]
    ratio = (mag / natural_magnitude(32, 32)[:, :, 1:-1]).flatten(1)  # per colour channel
    assert float((ratio.std(1) / ratio.mean(1)).max()) < 1e-3  # one scale for every frequency
