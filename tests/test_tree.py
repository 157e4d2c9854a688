"""The module tree as plain data: names, classes, parameters, shapes and calls per forward."""

from __future__ import annotations

import layerscope as ls


def test_module_tree(fresh_deeplab, image_batch):
    model = fresh_deeplab
    bare = ls.module_tree(model)
    assert [n["id"] for n in bare] == [n for n, _ in model.named_modules()]
    root = bare[0]
    assert root["total_params"] == sum(p.numel() for p in model.parameters())
    assert root["children"] == ["backbone", "classifier", "aux_classifier"]
    assert all(n["shape"] is None and n["calls"] is None for n in bare)

    acts = ls.capture(model, image_batch, ["backbone.layer4", "backbone"])
    counts = ls.Capturer(model).known_call_counts(image_batch)
    nodes = {n["id"]: n for n in ls.module_tree(model, acts, call_counts=counts)}
    assert nodes["backbone.layer4"]["shape"] == [1, 2048, 12, 12]
    assert nodes["backbone"]["shape"] == {"aux": [1, 1024, 12, 12], "out": [1, 2048, 12, 12]}
    assert nodes["classifier.0.convs"]["calls"] == 0
    assert nodes["backbone.layer1.0.relu"]["calls"] == 3
    assert nodes["backbone.layer1.0.conv1"]["cls"] == "Conv2d"
