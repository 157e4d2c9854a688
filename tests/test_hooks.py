"""One way to hook: :func:`layerscope.hooks.hooked` leaves no hook, no stand-in forward and no
changed mode behind, however its block ends (an exception, a KeyboardInterrupt, a hook that
raises, a name it cannot find); and every caller that hooks a forward (capture, Grad-CAM,
channel importance, interventions, the tracer, the sweep's local engine) leaves the model as it
was found when the model's forward raises, at each of its forwards in turn."""

from __future__ import annotations

import pytest
import torch
import torch.nn.modules.module as torch_module
from torch import nn

from conftest import hook_snapshot
from layerscope import Ablate, Capturer, intervene
from layerscope.dataset.local import forward_by_shape
from layerscope.dataset.topk import ChannelTopK
from layerscope.gradients import grad_cams
from layerscope.hooks import hooked
from layerscope.importance import channel_importance
from layerscope.tracer import ForwardTracer


class Net(nn.Module):
    """A small classifier whose ``fail_at``-th forward to get past its body raises ``error``
    (hooks have fired, stand-ins stood in; ``forwards`` counts them; one stopped early by a
    capture does not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(8, 5)
        self.fail_at: int | None = None
        self.error: type[BaseException] = RuntimeError
        self.forwards = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(self.stem(x))
        self.forwards += 1
        if self.forwards == self.fail_at:
            raise self.error("the model's forward failed on demand")
        return self.head(h.mean((2, 3)))


def make() -> Net:
    torch.manual_seed(0)
    model = Net().train()
    model.body.eval()  # mixed modes: each module's own must come back, not one for all
    return model


def global_hooks() -> list[tuple[str, tuple[int, ...]]]:
    return [
        (name, tuple(getattr(torch_module, name)))
        for name in sorted(dir(torch_module))
        if name.startswith("_global_") and isinstance(getattr(torch_module, name), dict)
    ]


def state(model: nn.Module) -> tuple[object, ...]:
    """Everything a hooked forward may change and must put back."""
    return (
        hook_snapshot(model),
        global_hooks(),
        [(n, m.training) for n, m in model.named_modules()],
        torch.is_grad_enabled(),
        [(n, m.__dict__.get("forward")) for n, m in model.named_modules()],
    )


def test_the_snapshot_sees_a_leak():
    model = make()
    before = state(model)
    handle = model.body.register_forward_pre_hook(lambda m, a: None)
    assert state(model) != before
    handle.remove()
    model.stem.eval()
    assert state(model) != before


# -- the context manager ----------------------------------------------------------------------


def hooks_of(seen: list[str]) -> tuple[dict[str, object], dict[str, object]]:
    def note(tag: str):
        return lambda *_: seen.append(tag)

    forward = {"stem": note("stem"), "body.0": [note("body.0 a"), note("body.0 b")], "": note("")}
    pre = {"head": note("pre head")}
    return forward, pre


def test_hooks_run_in_order_and_go():
    model, seen = make(), []
    before = state(model)
    forward, pre = hooks_of(seen)
    with hooked(model, forward, pre, train=False, grad=True):
        assert not any(m.training for m in model.modules())
        assert torch.is_grad_enabled()
        assert state(model) != before
        model(torch.randn(1, 3, 8, 8))
    assert seen == ["stem", "body.0 a", "body.0 b", "pre head", ""]
    assert state(model) == before


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("where", ["body", "interrupt", "forward hook", "pre hook", "stand-in"])
def test_nothing_is_left_behind(where, grad):
    model = make()
    model.head.forward = model.head.forward  # an instance attribute of its own: put back as is
    x = torch.randn(1, 3, 8, 8)

    def fail(*_):
        raise (KeyboardInterrupt if where == "interrupt" else ValueError)("on demand")

    forward, pre = hooks_of([])
    forward["body"] = fail if where == "forward hook" else forward["stem"]
    pre["stem.1"] = fail if where == "pre hook" else pre["head"]
    replace = {"body.1": fail if where == "stand-in" else nn.Identity(), "head": nn.Identity()}
    with torch.set_grad_enabled(grad):
        before = state(model)
        with pytest.raises(KeyboardInterrupt if where == "interrupt" else ValueError):
            with hooked(model, forward, pre, replace=replace, train=True, grad=not grad):
                assert all(m.training for m in model.modules())
                model(x)
                fail()
        assert state(model) == before


def test_a_name_it_cannot_find_takes_back_what_was_installed():
    model = make()
    before = state(model)
    with pytest.raises(KeyError):
        with hooked(model, {"stem": lambda *_: None, "nowhere": lambda *_: None}, {"head": []},
                    replace={"body": nn.Identity()}):  # fmt: skip
            pass  # pragma: no cover
    assert state(model) == before


def test_none_leaves_modes_as_they_are_and_train_keeps_the_statistics():
    model = make()
    before = state(model)
    stats = model.stem[1].running_mean.clone()
    with torch.no_grad(), hooked(model, train=None, grad=None):
        assert [m.training for m in model.modules()] == [m for _, m in before[2]]
        assert not torch.is_grad_enabled()
        model.stem.eval()  # changed inside: put back on the way out
    with hooked(model, train=True):
        model(torch.randn(2, 3, 8, 8))
        assert not torch.equal(model.stem[1].running_mean, stats)
    assert torch.equal(model.stem[1].running_mean, stats)
    assert state(model) == before


# -- every caller -----------------------------------------------------------------------------

X = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _sweep(model: nn.Module) -> None:
    states = {"body.0": ChannelTopK(3), "stem": ChannelTopK(3)}
    items = [(0, X[0]), (1, X[0]), (2, torch.randn(3, 6, 6))]  # two shapes: two forwards
    forward_by_shape(model, dict(model.named_modules()), list(states), states, items,
                     torch.device("cpu"))  # fmt: skip


def _trace(model: nn.Module) -> None:
    with ForwardTracer(model, X):
        model(X)


CALLERS = {
    "capture": lambda m: Capturer(m).capture(X, ["stem.1", "body"], progress=lambda d, t: None),
    "grad_cams": lambda m: grad_cams(m, X, ["stem.2", "body.0"], 1),
    "channel_importance": lambda m: channel_importance(m, X, "body.0", 1, exact_top=4, batch=2),
    "intervene": lambda m: intervene(m, X, {"body.0": Ablate([0])}, capture=["body.1"]).baseline,
    "tracer": _trace,
    "forward_by_shape": _sweep,
}


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("caller", list(CALLERS))
def test_every_caller_leaves_the_model_as_found_when_the_forward_raises(caller, error):
    model, run = make(), CALLERS[caller]
    before = state(model)
    Capturer(model).forget()
    run(model)  # how many forwards the call runs
    total = model.forwards
    assert total >= 1 and state(model) == before
    model.error = error
    for fail_at in range(1, total + 1):
        Capturer(model).forget()  # the same forwards as the run counted
        model.forwards, model.fail_at = 0, fail_at
        with pytest.raises(error):
            run(model)
        assert state(model) == before, (caller, fail_at)
    model.fail_at = None
    Capturer(model).forget()
    run(model)  # still works
    assert state(model) == before
