"""The public surface: ``layerscope.__all__`` lists what users call and nothing else, the widget
stack is imported only when the Explorer is used, and every bad argument raises a
``LayerScopeError`` (that may also be the ``ValueError``/``TypeError``/``KeyError``/``IndexError``
code written before it expects) whose message says what to do."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import traitlets
from torch import nn

import layerscope as ls
from layerscope.errors import (
    ArgumentError,
    ArgumentTypeError,
    LayerScopeError,
    NotCapturedError,
    NotReadyError,
    OutOfRangeError,
    UnknownModuleError,
)

WIDGET_STACK = ("plotly", "anywidget", "ipywidgets")

# Helpers that once were in ``__all__``: importable from their modules, not the front page.
HELPERS = {
    "resolve_modules": "layerscope.capture",
    "ViewState": "layerscope.widget.viewstate",
    "Dropped": "layerscope.nested",
    "DEFAULT_MEMORY_BUDGET": "layerscope.store",
    "MemoryReport": "layerscope.activations",
    "Layout": "layerscope.spatial",
    "PreparedImage": "layerscope.preprocess",
}


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))


# -- what is public -------------------------------------------------------------------------------


def test_every_public_name_resolves_and_no_helper_is_public():
    assert len(set(ls.__all__)) == len(ls.__all__)
    for name in ls.__all__:
        assert getattr(ls, name) is not None, name
    assert not set(HELPERS) & set(ls.__all__)
    assert set(ls.__all__) <= set(dir(ls))  # Explorer too, though it is not imported yet
    ns: dict[str, object] = {}
    exec("from layerscope import *", ns)
    assert set(ls.__all__) <= set(ns)
    for name, module in HELPERS.items():  # moved off the front page, not removed
        assert hasattr(importlib.import_module(module), name), (module, name)
    with pytest.raises(AttributeError, match="has no attribute 'resolve_modules'"):
        ls.resolve_modules  # noqa: B018


def test_every_error_class_is_a_layerscope_error():
    errors = importlib.import_module("layerscope.errors")
    for name in errors.__all__:
        obj = getattr(errors, name)
        if isinstance(obj, type):
            assert issubclass(obj, LayerScopeError), name
    from layerscope.widget.validation import InvalidTraitError

    assert issubclass(InvalidTraitError, LayerScopeError)
    assert issubclass(InvalidTraitError, traitlets.TraitError)


# -- the widget stack loads with the Explorer, not before ------------------------------------------

_PROBE = """
import json, sys, tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import layerscope

STACK = {stack!r}
def loaded():
    return sorted({{m.split(".")[0] for m in sys.modules}} & set(STACK))

seen = {{"import": loaded()}}
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
acts = layerscope.capture(model, torch.rand(1, 3, 16, 16), ["0", "2"])
assert acts["2"].shape == (1, 2, 16, 16)
seen["capture"] = loaded()
with tempfile.TemporaryDirectory() as folder:
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(Path(folder) / f"{{i}}.png")
    result = layerscope.sweep(model, folder, ["0"], k=2,
                              preprocess=layerscope.Preprocess(resize=None), progress=False)
    assert len(result.processed) == 2
seen["sweep"] = loaded()
seen["dir"] = "Explorer" in dir(layerscope)
explorer_class = layerscope.Explorer
from layerscope import Explorer
seen["same"] = Explorer is explorer_class and Explorer.__name__ == "Explorer"
seen["explorer"] = loaded()
print(json.dumps(seen))
"""


def test_capture_and_sweep_import_no_widget_stack_and_the_explorer_does():
    code = textwrap.dedent(_PROBE.format(stack=WIDGET_STACK))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["import"] == [], "import layerscope loaded " + ", ".join(seen["import"])
    assert seen["capture"] == [], "layerscope.capture loaded " + ", ".join(seen["capture"])
    assert seen["sweep"] == [], "layerscope.sweep loaded " + ", ".join(seen["sweep"])
    assert seen["dir"] and seen["same"]
    assert seen["explorer"] == sorted(WIDGET_STACK)


# -- bad arguments raise LayerScopeErrors ----------------------------------------------------------


def _raises(kind: type[BaseException], also: type[BaseException] | None, match: str, call):
    """``call()`` raises a LayerScopeError of ``kind`` (also ``also``) whose message matches."""
    with pytest.raises(kind, match=match) as info:
        call()
    assert isinstance(info.value, LayerScopeError), type(info.value).__mro__
    if also is not None:
        assert isinstance(info.value, also)
    return info.value


def test_bad_module_names_are_layerscope_errors_and_keep_their_builtin_kind():
    model, x = tiny(), torch.rand(1, 3, 8, 8)
    _raises(ArgumentTypeError, TypeError, r"module names are strings, got int: 3",
            lambda: ls.capture(model, x, [3]))  # fmt: skip
    err = _raises(ArgumentTypeError, TypeError, r"this one is named '0'",
                  lambda: ls.capture(model, x, [model[0]]))  # fmt: skip
    assert "module_tree" not in str(err)
    _raises(ArgumentTypeError, TypeError, r"list of qualified module names.*got int",
            lambda: ls.capture(model, x, 3))  # fmt: skip
    _raises(ArgumentTypeError, TypeError, r"list of qualified module names.*got Sequential",
            lambda: ls.capture(model, x, model))  # fmt: skip
    _raises(ArgumentError, ValueError, r"no modules to capture: pass qualified names",
            lambda: ls.capture(model, x, []))  # fmt: skip
    _raises(UnknownModuleError, KeyError, r"no module named 'conv': ",
            lambda: ls.capture(model, x, ["conv"]))  # fmt: skip
    _raises(ArgumentTypeError, TypeError, r"model must be a torch.nn.Module, got str",
            lambda: ls.capture("resnet18", x, ["0"]))  # fmt: skip
    _raises(ArgumentTypeError, TypeError, r"inputs hold no tensor",
            lambda: ls.capture(model, "image.png", ["0"]))  # fmt: skip
    _raises(ArgumentError, ValueError, r"memory_budget must be a positive number of bytes",
            lambda: ls.Capturer(model, memory_budget=0))  # fmt: skip
    # The same checks guard the other entry points.
    _raises(ArgumentTypeError, TypeError, "module names are strings",
            lambda: ls.grad_cams(model, x, [None], 0))  # fmt: skip
    _raises(ArgumentError, ValueError, "no modules to capture",
            lambda: ls.sweep(model, [torch.rand(3, 8, 8)], [], progress=False))  # fmt: skip
    _raises(LayerScopeError, None, r"k must be at least 1",
            lambda: ls.sweep(model, [torch.rand(3, 8, 8)], ["0"], k=0, progress=False))  # fmt: skip


def test_bad_edits_results_and_settings_are_layerscope_errors():
    model, x = tiny(), torch.rand(1, 3, 8, 8)
    _raises(LayerScopeError, None, r"Ablate channels must be integers", lambda: ls.Ablate("3"))
    _raises(LayerScopeError, None, r"must be a number", lambda: ls.Scale([0], "twice"))
    _raises(LayerScopeError, None, r"no edits: pass \{module name",
            lambda: ls.intervene(model, x, {}))  # fmt: skip
    _raises(UnknownModuleError, KeyError, r"no module named 'relu'",
            lambda: ls.intervene(model, x, {"relu": ls.Ablate([0])}))  # fmt: skip
    _raises(LayerScopeError, None, r"no preset named 'resnet1'; did you mean",
            lambda: ls.load_preset("resnet1"))  # fmt: skip

    acts = ls.capture(model, x, ["0"])
    err = _raises(NotCapturedError, KeyError, r"'2' was not requested in this capture",
                  lambda: acts["2"])  # fmt: skip
    assert str(err).startswith("'2' was not requested")  # the message, not its repr
    assert acts.get("2") is None and "2" not in acts  # still a Mapping

    from layerscope.reduce import aggregate, channel_map
    from layerscope.spatial import Layout

    maps = acts["0"][0]
    _raises(OutOfRangeError, IndexError, r"channel 9 out of range: this layer has 4 channels",
            lambda: channel_map(maps, 9))  # fmt: skip
    _raises(ArgumentError, ValueError, r"aggregate must be 'mean', 'max' or 'l2'",
            lambda: aggregate(maps, "median"))  # fmt: skip
    _raises(ArgumentError, ValueError, r"layout must be one of NCHW",
            lambda: Layout.given("CHW", (1, 4, 8, 8)))  # fmt: skip


def test_the_explorer_says_what_to_do_first_and_refuses_bad_values():
    from layerscope import Explorer

    image = np.zeros((16, 16, 3), np.uint8)
    explorer = Explorer(tiny(), image, preprocess=ls.Preprocess(resize=None))
    _raises(NotReadyError, None, r"no module is hooked", lambda: explorer.activations)
    _raises(NotReadyError, None, r"no module selected: hook one first", explorer.grad_cam)
    _raises(NotReadyError, None, r"hook one first", explorer.channel_importance)
    _raises(NotReadyError, None, r"hook one first", lambda: explorer.compare(image=image))
    _raises(NotReadyError, None, r"no module to sweep: hook one first",
            lambda: explorer.sweep([image]))  # fmt: skip
    _raises(NotReadyError, None, r"no dataset sweep", lambda: explorer.show_example(0))
    _raises(ArgumentTypeError, TypeError, r"unknown argument\(s\): 'colorscle'",
            lambda: Explorer(tiny(), image, colorscle="Viridis"))  # fmt: skip
    _raises(traitlets.TraitError, None, r"no module named 'conv'",
            lambda: setattr(explorer, "hooked_modules", ["conv"]))  # fmt: skip
    explorer.hook("0")
    _raises(traitlets.TraitError, None, r"channel 7 is out of range: 0 has 4 channels",
            lambda: setattr(explorer, "selected_channel", 7))  # fmt: skip
    _raises(ArgumentError, ValueError, r"pass either image= .* or model=",
            lambda: explorer.compare())  # fmt: skip
