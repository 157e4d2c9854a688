"""Crafted sweep files: every value read from a file is checked, and anything wrong is a
LayerScopeError naming the file and what is wrong (never an allocation without bound, an index
from the end, or a library's error without the file's name). Each crafted file is a real sweep
whose header or tensors were rewritten with safetensors' own API."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import layerscope as ls
from layerscope.dataset import Sweep
from test_sweep import PRE, Tiny, make_images


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("files")
    make_images(folder / "p", 6)
    path = folder / "good.safetensors"
    ls.sweep(Tiny().eval(), folder / "p", ["relu"], k=3, preprocess=PRE, path=path,
             progress=False)  # fmt: skip
    return path, folder / "p"


def craft(
    good: Path,
    out: Path,
    header: Callable[[dict[str, Any]], None] | None = None,
    tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
) -> Path:
    with safe_open(str(good), framework="pt") as f:
        meta = dict(f.metadata())
    doc = json.loads(meta["layerscope"])
    values = load_file(str(good))
    if header:
        header(doc)
    if tensors:
        tensors(values)
    save_file(values, str(out), metadata={"layerscope": json.dumps(doc)})
    return out


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        *parents, last = key.split(".")
        for p in parents:
            doc = doc[p]
        doc[last] = value

    return edit


def _tensor(name: str, change: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    def edit(values: dict[str, torch.Tensor]) -> None:
        values[name] = change(values[name].clone())

    return edit


def _at(value: int) -> Callable[[torch.Tensor], torch.Tensor]:
    def put(t: torch.Tensor) -> torch.Tensor:
        t[0, 0] = value
        return t

    return put


HEADER_LIES = {
    "huge resize": ("preprocess_args.resize", 1_000_000, "resize"),
    "huge crop": ("preprocess_args.crop", [1, 100_000], "crop"),
    "k below stored": ("k", 1, "k"),
    "k negative": ("k", -1, "k"),
    "k a string": ("k", "3", "k"),
    "images a float": ("images", 1e9, "images"),
    "images too many": ("images", 10**9, "images"),
    "modules not a list": ("modules", "relu", "modules"),
    "sources wrong type": ("sources", 7, "sources"),
    "skipped wrong shape": ("skipped", [["a"]], "skipped"),
    "fingerprint missing": ("model", {}, "fingerprint"),
    "field too large": ("fields.relu.32x32.size", [1e9, 1e9], "fields"),
}


@pytest.mark.parametrize("case", list(HEADER_LIES))
def test_a_header_that_lies_is_refused_with_the_files_name(swept, tmp_path, case):
    good, folder = swept
    key, value, word = HEADER_LIES[case]
    bad = craft(good, tmp_path / "bad.safetensors", header=_set(key, value))
    for load in (lambda: Sweep.load(bad), lambda: Sweep.load(bad, images=folder)):
        with pytest.raises(ls.LayerScopeError, match=word) as err:
            load()
        assert str(bad) in str(err.value)


TENSOR_LIES = {
    "negative id": ("relu/ids", _at(-3), "ids"),
    "id past the end": ("relu/ids", _at(6), "ids"),
    "id listed twice": ("relu/ids", lambda t: t[:, :1].expand_as(t).contiguous(), "twice"),
    "rows of another shape": ("relu/rows", lambda t: t[:, :1].contiguous(), "rows"),
    "count of another shape": ("relu/count", lambda t: t[:2].contiguous(), "count"),
    "scores as integers": ("relu/scores", lambda t: t.long(), "scores"),
    "processed past the end": ("processed", lambda t: t + 100, "processed"),
    "huge row": ("relu/rows", _at(10**9), "rows"),
}


@pytest.mark.parametrize("case", list(TENSOR_LIES))
def test_tensors_that_disagree_with_the_header_are_refused(swept, tmp_path, case):
    good, _ = swept
    name, change, word = TENSOR_LIES[case]
    bad = craft(good, tmp_path / "bad.safetensors", tensors=_tensor(name, change))
    with pytest.raises(ls.LayerScopeError, match=word) as err:
        Sweep.load(bad)
    assert str(bad) in str(err.value)


def test_a_missing_tensor_is_refused(swept, tmp_path):
    good, _ = swept
    bad = craft(good, tmp_path / "bad.safetensors", tensors=lambda v: v.pop("relu/count"))
    with pytest.raises(ls.LayerScopeError, match="relu lacks") as err:
        Sweep.load(bad)
    assert str(bad) in str(err.value)


@pytest.mark.parametrize("kind", ["truncated", "zero bytes", "a pickle", "not json"])
def test_files_that_are_not_whole_sweeps_are_refused_with_their_name(swept, tmp_path, kind):
    good, folder = swept
    bad = tmp_path / "bad.safetensors"
    if kind == "truncated":
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif kind == "zero bytes":
        bad.write_bytes(b"")
    elif kind == "a pickle":
        torch.save({"relu/scores": torch.zeros(2)}, bad)
    else:
        save_file({"processed": torch.zeros(0, dtype=torch.int64)}, str(bad),
                  metadata={"layerscope": "{not json"})  # fmt: skip
    for load in (
        lambda: Sweep.load(bad),
        lambda: ls.sweep(
            Tiny().eval(), folder, ["relu"], k=3, preprocess=PRE, path=bad, progress=False
        ),  # fmt: skip
    ):
        with pytest.raises(ls.LayerScopeError) as err:
            load()
        assert str(bad) in str(err.value)


def test_a_folder_given_relative_then_absolute_names_the_first_differing_image(
    swept, tmp_path, monkeypatch
):
    _, folder = swept
    monkeypatch.chdir(folder.parent)
    path = tmp_path / "rel.safetensors"
    ls.sweep(Tiny().eval(), Path("p"), ["relu"], k=3, preprocess=PRE, path=path, progress=False)
    first = sorted(str(p) for p in Path("p").rglob("*.png"))[0]
    with pytest.raises(ls.LayerScopeError) as err:
        Sweep.load(path, images=folder.resolve())
    message = str(err.value)
    assert (
        repr(first) in message
        and repr(str(folder.resolve() / Path(first).relative_to("p"))) in message
    )
    with pytest.raises(ls.LayerScopeError, match=repr(first)):
        ls.sweep(Tiny().eval(), folder.resolve(), ["relu"], k=3, preprocess=PRE, path=path,
                 progress=False)  # fmt: skip
