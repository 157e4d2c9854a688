"""The user's own code on Ray's workers. A model, a preprocessing callable or a Dataset defined in a
module next to the notebook (importable on the driver through ``sys.path`` only) would reach the
workers pickled by reference, as ``hmodel.Net``, and kill each actor at creation with
``ModuleNotFoundError``. Such modules are shipped by value instead (cloudpickle's
``register_pickle_by_value``, in Ray's copy of cloudpickle) for the time of the sweep. What still
cannot be imported there (a lazy ``import`` inside a forward, a C extension, a package missing on
the cluster's nodes) becomes a :class:`LayerScopeError` that names the module and the fix."""

from __future__ import annotations

import importlib.util
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import FunctionType, MethodType, ModuleType
from typing import Any

from torch import nn

from ..errors import LayerScopeError

__all__ = ["driver_only_modules", "pickled_by_value", "missing_module_error"]

# Installed wherever this engine runs (the workers unpickle layerscope's own classes).
_ALWAYS_INSTALLED = {"layerscope", "__main__", "builtins"}  # __main__: cloudpickle ships it


def _installed_roots() -> list[Path]:
    """Folders whose modules the workers import themselves: the standard library, site-packages,
    and the folders ``.pth`` files there add (editable installs)."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix}
    roots.update(
        sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")
    )
    sites = [*site.getsitepackages(), site.getusersitepackages()]
    roots.update(sites)
    for folder in map(Path, sites):
        for pth in folder.glob("*.pth") if folder.is_dir() else []:
            for line in pth.read_text(errors="replace").splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "import")) and Path(line).is_dir():
                    roots.add(line)
    return [Path(r).resolve() for r in roots if r]


def _is_driver_only(module: ModuleType, roots: list[Path]) -> bool:
    """A pure-Python module outside every installed folder: the workers may not find it."""
    if module.__name__.split(".")[0] in _ALWAYS_INSTALLED:
        return False
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):  # built in, namespace package, C extension
        return False
    path = Path(file).resolve()
    return not any(path.is_relative_to(root) for root in roots)


def _modules_of(obj: Any) -> Iterator[str]:
    """Names of the modules an object's code comes from: its class and that class's bases; for a
    function, its own module; for a ``functools.partial`` or a bound method, what it wraps."""
    if isinstance(obj, partial):
        yield from _modules_of(obj.func)
        for arg in (*obj.args, *obj.keywords.values()):
            yield from _modules_of(arg)
        return
    if isinstance(obj, MethodType):
        yield from _modules_of(obj.__func__)
        obj = obj.__self__
    if isinstance(obj, (FunctionType, type)):
        yield getattr(obj, "__module__", None) or ""
    if not isinstance(obj, type):
        obj = type(obj)
    yield from (getattr(cls, "__module__", None) or "" for cls in obj.__mro__)


def driver_only_modules(model: nn.Module, *others: Any) -> list[ModuleType]:
    """The driver-only modules the code of ``model`` (every submodule's class) and ``others``
    (the preprocessing callable, a Dataset) comes from, and those their globals come from."""
    roots = _installed_roots()
    todo = [name for m in model.modules() for name in _modules_of(m)]
    todo += [name for obj in others if obj is not None for name in _modules_of(obj)]
    found: dict[str, ModuleType] = {}
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name)
        if module is None or not _is_driver_only(module, roots):
            continue
        found[name] = module
        for value in list(vars(module).values()):  # the globals its functions may reach
            if isinstance(value, ModuleType):
                todo.append(value.__name__)
            elif isinstance(value, (type, FunctionType)):
                todo.append(getattr(value, "__module__", None) or "")
    return [found[n] for n in sorted(found)]


@contextmanager
def pickled_by_value(modules: Iterable[ModuleType]) -> Iterator[None]:
    """Ray pickles what comes from ``modules`` by value while inside; registrations made here are
    undone on the way out (the user's own ones are left alone)."""
    from ray import cloudpickle

    before = set(cloudpickle.list_registry_pickle_by_value())
    added = [m for m in modules if m.__name__ not in before]
    for module in added:
        cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        for module in added:
            if module.__name__ in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(module)


_NO_MODULE = re.compile(r"No module named '([\w.]+)'")
_NO_NAME = re.compile(r"cannot import name '\w+' from '([\w.]+)'")


def _missing_name(exc: BaseException) -> str | None:
    """The module an import failed on, anywhere in ``exc``'s causes (Ray wraps the worker's
    error, sometimes only as text)."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ImportError) and e.name:
            return e.name
        pending += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    for pattern in (_NO_MODULE, _NO_NAME):
        match = pattern.search(str(exc))
        if match:
            return match.group(1)
    return None


def missing_module_error(exc: BaseException) -> LayerScopeError | None:
    """A :class:`LayerScopeError` naming the module Ray's workers could not import, and how to
    give it to them; ``None`` when ``exc`` is not about an import."""
    name = _missing_name(exc)
    if name is None:
        return None
    try:  # the module's file or package folder here, on the driver: what to ship
        spec = importlib.util.find_spec(name.split(".")[0])
    except (ImportError, ValueError):
        spec = None
    local = None
    if spec is not None:
        folders = list(spec.submodule_search_locations or [])
        local = folders[0] if folders else spec.origin
    ship = repr(local) if local else f"'<the folder or .py file of {name}>'"
    here = "importable here but not" if local else "not importable here either, nor"
    return LayerScopeError(
        f"Ray's workers could not import the module {name!r} (the model, the preprocessing or "
        f"the dataset needs it): it is {here} where the workers run. Install "
        f"it on every node of the Ray cluster, or start Ray with "
        f"ray.init(runtime_env={{'py_modules': [{ship}]}}) and sweep again"
    )
