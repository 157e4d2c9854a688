"""Receptive fields: the paper's published figures, and the support of an input gradient."""

from __future__ import annotations

import pytest
import torch
import torchvision

from conftest import build_deeplab
from layerscope.receptive import receptive_fields


@pytest.mark.parametrize(
    "builder, module, size, stride, padding",
    [
        # Araujo et al., Distill 2019, table of receptive fields: vgg_16 r=212, S=32, P=90.
        (torchvision.models.vgg16, "features.30", 212, 32, 90),
        # alexnet_v2: r=195, S=32 (torchvision's first conv pads 2, so P differs from the table).
        (torchvision.models.alexnet, "features.12", 195, 32, 66),
    ],
)
def test_published_figures(builder, module, size, stride, padding):
    fields = receptive_fields(builder().eval(), torch.randn(1, 3, 224, 224))
    rf = fields[module]
    assert rf.size == (size, size) and rf.stride == (stride, stride)
    assert rf.padding == (padding, padding)


def test_resnet50_and_dilation_keep_the_field():
    # torchvision's ResNet-50 (strides in the first block of each stage) ends at r=427, S=32;
    # DeepLabV3 swaps layer3/4's strides for dilation: the same r at output stride 8.
    plain = receptive_fields(torchvision.models.resnet50().eval(), torch.randn(1, 3, 224, 224))
    deeplab = receptive_fields(build_deeplab(), torch.randn(1, 3, 96, 96))
    assert plain["layer4"].size == (427, 427) and plain["layer4"].stride == (32, 32)
    assert deeplab["backbone.layer4"].size == (427, 427)
    assert deeplab["backbone.layer4"].stride == (8, 8)
    # ASPP: the dilated branches see further, the pooling branch sees the whole map.
    assert deeplab["classifier.0.convs.3"].size[0] > deeplab["classifier.0.convs.1"].size[0]
    pooled = deeplab["classifier.0.convs.4"].box(0, 0)
    assert pooled[0] <= 0 and pooled[2] >= 96


@pytest.mark.parametrize(
    "module, unit, side",
    [("backbone.maxpool", (20, 20), 160), ("backbone.layer1", (20, 20), 160),
     ("backbone.layer2", (10, 10), 160), ("backbone.layer3.0.conv2", (10, 10), 160),
     # Dilation (DeepLabV3's layer3 and layer4): unclipped fields of 139 and 299 px whose
     # gradient has holes inside but exactly the analytic extent.
     ("backbone.layer3.1.conv2", (14, 14), 224), ("backbone.layer4.0.conv2", (20, 20), 320)],
)  # fmt: skip
def test_matches_the_support_of_the_input_gradient(module, unit, side):
    model = build_deeplab()
    x = torch.randn(1, 3, side, side)
    rf = receptive_fields(model, x)[module]
    seen = {}
    handle = dict(model.named_modules())[module].register_forward_hook(
        lambda m, a, out: seen.setdefault("out", out)
    )
    xi = x.clone().requires_grad_(True)
    try:
        model(xi)
    finally:
        handle.remove()
    seen["out"][0, :, unit[0], unit[1]].sum().backward()
    rows, cols = torch.nonzero(xi.grad[0].abs().sum(0), as_tuple=True)
    y0, x0, y1, x1 = rf.box(*unit)
    # The gradient reaches exactly the analytic field (end exclusive), inside the image.
    assert (rows.min().item(), rows.max().item() + 1) == (max(0, y0), min(side, y1))
    assert (cols.min().item(), cols.max().item() + 1) == (max(0, x0), min(side, x1))


def test_fields_are_kept_per_structure_and_shape_and_shared_with_the_explorer():
    import copy

    import layerscope as ls
    from conftest import ForwardCounter

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    pre = ls.Preprocess(resize=(64, 64))
    ex = ls.Explorer(net, ls.sample_image(), preprocess=pre, hooked_modules=["layer2"])
    fresh = receptive_fields(copy.deepcopy(net), ex.inputs)  # independent: another model object
    counter = ForwardCounter(net.conv1)
    try:
        kept = receptive_fields(net, ex.inputs)  # the Explorer's trace: no forward
        again = receptive_fields(net, torch.randn(1, 3, 64, 64))  # same shape, other values
    finally:
        counter.remove()
    assert counter.count == 0
    assert kept == again == fresh
    # Another shape, or another structure (a module replaced), is traced again.
    assert receptive_fields(net, torch.randn(1, 3, 96, 96)) == receptive_fields(
        copy.deepcopy(net), torch.randn(1, 3, 96, 96)
    )
    net.conv1 = torch.nn.Conv2d(3, 64, 7, stride=4, padding=3, bias=False)
    changed = receptive_fields(net, torch.randn(1, 3, 64, 64))
    assert changed["layer2"].stride == (16, 16) != fresh["layer2"].stride
