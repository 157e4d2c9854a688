"""The data-flow graph of one forward (``layerscope.module_graph``): its edges checked against
the models' own forward code, read by hand (torchvision's BasicBlock, Bottleneck, ASPP and
DeepLabHead; ViT's class token; a SegFormer's decode head; small models written here), and its
layered drawing."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.segmentation import deeplabv3_resnet50

import layerscope as ls
from layerscope.graph import layered


def _edges(g):
    return {(e.source, e.target) for e in g.edges}


def _function(g, module, label):
    (node,) = [n for n in g.nodes if n.kind == "function" and n.module == module
               and n.label == label]  # fmt: skip
    return node.id


@pytest.fixture(scope="module")
def deeplab():
    torch.manual_seed(0)
    model = deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True)
    return model.eval()


def test_resnet18_basic_blocks_identity_and_downsample_paths():
    model = torchvision.models.resnet18(weights=None).eval()
    g = ls.module_graph(model, torch.randn(1, 3, 64, 64), depth=2)
    e = _edges(g)
    # BasicBlock.forward: conv1 bn1 relu conv2 bn2, += identity, relu (the same ReLU twice).
    add = _function(g, "layer1.0", "add")
    chain = ["maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu#0", "layer1.0.conv2",
             "layer1.0.bn2", add, "layer1.0.relu#1"]  # fmt: skip
    assert set(zip(chain, chain[1:])) <= e
    assert ("maxpool", add) in e  # the identity path
    # layer2.0 downsamples its input for the addition: the block's input feeds both paths.
    add2 = _function(g, "layer2.0", "add")
    assert {("layer1.1.relu#1", "layer2.0.conv1"), ("layer1.1.relu#1", "layer2.0.downsample"),
            ("layer2.0.downsample", add2), ("layer2.0.bn2", add2)} <= e  # fmt: skip
    assert ("layer1.1.relu#1", add2) not in e  # no identity there: the downsample is
    # Reused ReLU: one node per call, none reads itself.
    assert all(a != b for a, b in e)
    assert g.node("layer1.0.relu#1").calls == 2
    # Shapes on the edges: what flowed.
    shape = {(x.source, x.target): x.shape for x in g.edges}
    assert shape[("layer2.0.downsample", add2)] == (1, 128, 8, 8)
    # flatten between avgpool and fc makes no node: the data goes straight through.
    g1 = ls.module_graph(model, torch.randn(1, 3, 64, 64), depth=0)
    assert ("avgpool", "fc") in _edges(g1) and ("fc", "output") in _edges(g1)


def test_deeplab_aspp_branches_aux_head_and_bottlenecks(deeplab):
    x = torch.randn(1, 3, 96, 96)
    g = ls.module_graph(deeplab, x, depth=1)
    e = _edges(g)
    # DeepLabV3.forward: the aux head reads layer3's output; each head is upsampled to the input.
    assert ("backbone.layer3", "aux_classifier.0") in e
    assert ("backbone.layer3", "backbone.layer4") in e
    ups = [n for n in g.nodes if n.label == "interpolate"]
    assert len(ups) == 2 and all((u.id, "output") in e for u in ups)
    assert {s for s, t in e if t in {u.id for u in ups}} == {"classifier.4", "aux_classifier.4"}
    # At depth 3: ASPP's five branches read one input and meet in one concatenation.
    g3 = ls.module_graph(deeplab, x, depth=3)
    e3 = _edges(g3)
    cat = _function(g3, "classifier.0", "cat")
    branches = [f"classifier.0.convs.{i}" for i in range(5)]
    assert {s for s, t in e3 if t == cat} == set(branches)
    sources = {s for s, t in e3 if t in branches}
    assert sources == {"backbone.layer4.2.relu#2"}  # the last Bottleneck's output
    assert (cat, "classifier.0.project.0") in e3
    # Bottleneck: conv1..conv3 beside the identity path (layer1.1) or the downsample (layer1.0).
    add = _function(g3, "backbone.layer1.1", "add")
    chain = ["backbone.layer1.0.relu#2", "backbone.layer1.1.conv1", "backbone.layer1.1.bn1",
             "backbone.layer1.1.relu#0", "backbone.layer1.1.conv2", "backbone.layer1.1.bn2",
             "backbone.layer1.1.relu#1", "backbone.layer1.1.conv3", "backbone.layer1.1.bn3", add,
             "backbone.layer1.1.relu#2"]  # fmt: skip
    assert set(zip(chain, chain[1:])) <= e3
    assert ("backbone.layer1.0.relu#2", add) in e3  # the identity
    add0 = _function(g3, "backbone.layer1.0", "add")
    assert {("backbone.maxpool", "backbone.layer1.0.downsample"),
            ("backbone.layer1.0.downsample", add0), ("backbone.maxpool", "backbone.layer1.0.conv1"),
            ("backbone.layer1.0.bn3", add0)} <= e3  # fmt: skip
    # The model is left as found.
    assert not deeplab.training and all(not m._forward_hooks for m in deeplab.modules())


def test_expand_and_collapse_follow_the_tree(deeplab):
    g = ls.module_graph(deeplab, torch.randn(1, 3, 64, 64), depth=0)
    assert {n.id for n in g.nodes} >= {"backbone", "classifier", "aux_classifier"}
    assert ("backbone", "aux_classifier") in _edges(g)  # layer3 is inside the backbone
    assert g.node("backbone").expandable
    g.expand("backbone.layer1")  # opens backbone too
    ids = {n.id for n in g.nodes}
    assert "backbone.layer1.0" in ids and "backbone.layer2" in ids and "backbone" not in ids
    g.collapse("backbone")
    assert "backbone" in {n.id for n in g.nodes} and "backbone.layer1.0" not in ids - ids
    assert "backbone.layer1.0" not in {n.id for n in g.nodes}
    with pytest.raises(ls.LayerScopeError, match="backbone.layer4"):
        g.expand("layer4")  # a close match is suggested


class Branches(nn.Module):
    """Two branches concatenated, and a skip over three blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.left, self.right = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.blocks = nn.Sequential(*[nn.Conv2d(8, 8, 3, padding=1) for _ in range(3)])
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        x = self.stem(x)
        y = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.head(self.blocks(y) + y)


def test_a_concatenation_of_two_branches_and_a_skip_over_three_blocks():
    g = ls.module_graph(Branches(), torch.randn(1, 3, 16, 16), depth=1)
    e = _edges(g)
    cat, add = _function(g, "", "cat"), _function(g, "", "add")
    assert {("input", "stem"), ("stem", "left"), ("stem", "right"), ("left", cat), ("right", cat),
            (cat, "blocks.0"), ("blocks.0", "blocks.1"), ("blocks.1", "blocks.2"),
            ("blocks.2", add), (cat, add), (add, "head"), ("head", "output")} == e  # fmt: skip
    # Collapsed, the three blocks are one node and the skip goes round it.
    g0 = ls.module_graph(Branches(), torch.randn(1, 3, 8, 8), depth=0)
    assert {(_function(g0, "", "cat"), "blocks"), ("blocks", _function(g0, "", "add"))} <= _edges(
        g0
    )


class Reuse(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 5)
        self.act = nn.ReLU()

    def forward(self, x):
        for _ in range(3):
            x = self.act(self.lin(x))
        return x


def test_a_reused_module_is_a_chain_of_calls_not_a_loop():
    g = ls.module_graph(Reuse(), torch.randn(2, 5))
    chain = ["input", "lin#0", "act#0", "lin#1", "act#1", "lin#2", "act#2", "output"]
    assert _edges(g) == set(zip(chain, chain[1:]))
    assert [g.node(n).call for n in chain[1:-1]] == [0, 0, 1, 1, 2, 2]


def test_vit_encoder_chain_with_the_class_token():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=8, mlp_dim=16
    ).eval()
    g = ls.module_graph(model, torch.randn(1, 3, 32, 32), depth=0)
    cat = _function(g, "", "cat")  # the class token (a parameter, no edge) before the patches
    chain = ["input", "conv_proj", cat, "encoder", "heads", "output"]
    assert _edges(g) == set(zip(chain, chain[1:]))
    assert g.node(cat).shape == (1, 5, 8)  # 4 patches and the class token
    g1 = ls.module_graph(model, torch.randn(1, 3, 32, 32), depth=1)
    # Inside the encoder: + pos_embedding (a parameter: no node), dropout, layers, ln.
    inside = [cat, "encoder.dropout", "encoder.layers", "encoder.ln", "heads.head"]
    assert set(zip(inside, inside[1:])) <= _edges(g1)


def test_segformer_decode_head_reads_every_stage():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.SegformerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32],
                                       num_attention_heads=[1, 1, 1, 1], decoder_hidden_size=16,
                                       num_labels=3)  # fmt: skip
    model = transformers.SegformerForSemanticSegmentation(cfg).eval()
    g = ls.module_graph(model, torch.randn(1, 3, 64, 64), depth=1)
    e = _edges(g)
    stages = sorted(
        n.id for n in g.nodes if n.module.startswith("segformer.") and n.kind == "module"
    )
    assert len(stages) == 4  # the four encoder stages, one after the other
    assert set(zip(stages, stages[1:])) <= e
    cat = _function(g, "decode_head", "cat")
    projections = {s for s, t in e if t == cat}
    assert len(projections) == 4  # one per stage, each upsampled, then concatenated
    assert all(any((st, p) in e for st in stages) for p in {
        s for s, t in e if any(t == u for u in projections)})  # fmt: skip


def test_the_layered_drawing_runs_left_to_right_without_overlaps(deeplab):
    g = ls.module_graph(deeplab, torch.randn(1, 3, 64, 64), depth=2)
    at = layered(g.nodes, g.edges)
    assert set(at) == {n.id for n in g.nodes}
    assert all(at[e.source][0] < at[e.target][0] for e in g.edges)
    assert len(set(at.values())) == len(at)  # no two nodes in one place


def test_the_explorers_graph_view_is_module_graph_with_no_forward_of_its_own(deeplab):
    ex = ls.Explorer(deeplab, ls.sample_image(), preprocess=ls.Preprocess(resize=(64, 64)),
                     class_names=[f"c{i}" for i in range(21)],
                     hooked_modules=["backbone.layer2", "backbone.layer3"])  # fmt: skip
    forwards = []
    handle = deeplab.register_forward_hook(lambda *a: forwards.append(1))
    try:
        ex.show_graph = True
        assert ex.errors == {} and forwards == []  # drawn from the first forward's recording
        truth = ls.module_graph(deeplab, ex.inputs, depth=1)  # a forward of its own, here
        forwards.clear()
        fig = ex.figure("graph")
        modules = fig.data[2]
        assert sorted(modules.customdata) == sorted(n.module for n in truth.nodes
                                                    if n.kind == "module")  # fmt: skip
        colour = dict(zip(modules.customdata, modules.marker.color))
        assert colour["backbone.layer3"] == "#e45756"  # selected (the last hooked)
        assert colour["backbone.layer2"] == "#4c78a8" and colour["backbone.layer1"] == "#c8ccd4"
        ex.hooked_modules = ["backbone.layer2"]  # the colours follow the hooks
        colour = dict(zip(ex.figure("graph").data[2].customdata,
                          ex.figure("graph").data[2].marker.color))  # fmt: skip
        assert colour["backbone.layer3"] == "#c8ccd4" and colour["backbone.layer2"] == "#e45756"
        # The tree's expanded modules open the graph the same way.
        ex.graph_open = ["backbone", "classifier", "aux_classifier", "backbone.layer1"]
        shown = set(ex.figure("graph").data[2].customdata)
        truth.expand("backbone.layer1")
        assert shown == {n.module for n in truth.nodes if n.kind == "module"}
        assert "backbone.layer1.0" in shown and "backbone.layer1" not in shown
        assert forwards == []
        assert ex._view_graph["layout"]["title"]["text"] == ex.figure("graph").layout.title.text
    finally:
        handle.remove()


class Raises(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        _ = self.conv(x) + x
        raise RuntimeError("this forward fails")


def test_a_forward_that_raises_leaves_the_model_as_found():
    from torch.overrides import _get_current_function_mode_stack

    model = Raises().train()
    with pytest.raises(RuntimeError, match="this forward fails"):
        ls.module_graph(model, torch.randn(1, 3, 8, 8))
    assert model.training and torch.is_grad_enabled()
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert _get_current_function_mode_stack() == []  # the recorder's mode is gone too
