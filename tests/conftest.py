"""Shared fixtures: real torchvision models with random weights, small inputs; a local Ray."""

from __future__ import annotations

import os

# Ray reads this when it is imported: a single-node Ray then uses the loopback address only.
# Set here, before any test module imports Ray.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

import pytest  # noqa: E402
import torch  # noqa: E402
from torchvision.models import segmentation as seg

from layerscope import Capturer

BUILDERS = {
    "resnet50": seg.deeplabv3_resnet50,
    "resnet101": seg.deeplabv3_resnet101,
    "mobilenet_v3_large": seg.deeplabv3_mobilenet_v3_large,
}


def build_deeplab(backbone: str = "resnet50") -> torch.nn.Module:
    torch.manual_seed(0)
    return BUILDERS[backbone](weights=None, weights_backbone=None, aux_loss=True).eval()


@pytest.fixture(scope="session")
def deeplab() -> torch.nn.Module:
    return build_deeplab("resnet50")


@pytest.fixture
def fresh_deeplab(deeplab: torch.nn.Module) -> torch.nn.Module:
    """The session's DeepLabV3-ResNet50 with LayerScope's cache and learned orders cleared."""
    Capturer(deeplab).forget()
    return deeplab


@pytest.fixture
def image_batch() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(1, 3, 96, 96, generator=g)


def hook_snapshot(model: torch.nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Every hook dictionary of every module, by size and keys: what a leak would change."""
    names = [
        "_forward_hooks",
        "_forward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_hooks_always_called",
        "_forward_pre_hooks_with_kwargs",
        "_backward_hooks",
        "_backward_pre_hooks",
    ]
    snap = []
    for name, module in model.named_modules():
        for attr in names:
            snap.append((f"{name}.{attr}", tuple(getattr(module, attr, {}).keys())))
    return snap


def reference_capture(model: torch.nn.Module, x: torch.Tensor, names: list[str]) -> dict:
    """The plain way done right: a clone-on-every-call hook per module, no_grad, eval."""
    modules = dict(model.named_modules())
    calls: dict[str, list] = {n: [] for n in names}

    def clone(obj):
        if isinstance(obj, torch.Tensor):
            return obj.detach().clone()
        if isinstance(obj, dict):
            return type(obj)((k, clone(v)) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(clone(v) for v in obj)
        return obj

    handles = [
        modules[n].register_forward_hook(lambda m, a, out, n=n: calls[n].append(clone(out)))
        for n in names
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return calls


def assert_same(a, b) -> None:
    """Exact equality of nested outputs, container types included."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


_IS_TENSOR: dict[type, bool] = {}


def live_tensor_bytes(*exclude: object, collect: bool = True) -> int:
    """Bytes of every live CPU tensor storage, each storage counted once, leaving out the
    storages of the tensors in ``exclude`` (a model's parameters, the inputs). Measured from
    outside LayerScope: every tensor object the garbage collector can see. ``collect=False``
    skips the cycle collection (for sampling in a loop: refcounting frees the rest)."""
    import gc

    from layerscope.nested import iter_tensors

    skip = set()
    for obj in exclude:
        tensors = (
            [*obj.parameters(), *obj.buffers()] if isinstance(obj, torch.nn.Module) else []
        ) or list(iter_tensors(obj))
        skip.update(t.untyped_storage().data_ptr() for t in tensors)
    if collect:
        gc.collect()
    sizes: dict[int, int] = {}
    for obj in gc.get_objects():
        kind = type(obj)
        is_tensor = _IS_TENSOR.get(kind)
        if is_tensor is None:  # issubclass once per type: isinstance on Tensor's metaclass is slow
            is_tensor = _IS_TENSOR[kind] = issubclass(kind, torch.Tensor)
        if not is_tensor or obj.device.type != "cpu" or obj.is_sparse:
            continue
        storage = obj.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in skip:
            sizes[ptr] = max(sizes.get(ptr, 0), storage.nbytes())
    return sum(sizes.values())


class ForwardCounter:
    """Counts forwards with a pre-hook of the test's own on the first module that runs, which
    fires in every forward, early-stopped or not."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.count = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, *_):
        self.count += 1

    def remove(self):
        self.handle.remove()


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray with two CPUs bound to 127.0.0.1 (no traffic to any other address), once per
    test module (start-up takes seconds), shut down after. The workers are not given the tests
    folder: test models reach them by value."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
        yield
    finally:
        ray.shutdown()
