"""A sweep's result: per module, each channel's top-k images (with where the maximum was, and the
image patch under that unit's receptive field) and the channel statistics over all images."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import LayerScopeError, did_you_mean
from ..preprocess import PreparedImage
from ..receptive import ReceptiveField
from .sources import Sources
from .topk import ChannelTopK

__all__ = ["Sweep", "Example", "ChannelStats"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ChannelStats:
    """Per channel, over every image and position: ``mean``, ``max`` and ``fraction_zero``."""

    mean: np.ndarray
    max: np.ndarray
    fraction_zero: np.ndarray


@dataclass(frozen=True)
class Example:
    """One of a channel's top images: ``source`` (the path, or the dataset index), ``index``
    (the image's place in the sweep), ``score`` (the channel's maximum on it), ``location``
    (row, col of the maximum in the module's map)."""

    source: str | int
    index: int
    score: float
    location: tuple[int, int]
    module: str
    sweep: Sweep = field(repr=False, compare=False)

    def crop(self) -> Image.Image:
        """The image patch under the unit's receptive field, in the original image, padded
        (black) where the field reaches past the border; the whole image for a vector output."""
        return self.sweep.crop(self.module, self.index, self.location)


@dataclass
class Sweep:
    """What :func:`layerscope.sweep` found. ``images``: how many were counted; ``skipped``:
    (source, reason) of those that could not be read."""

    modules: list[str]
    k: int
    states: dict[str, ChannelTopK]
    labels: list[str]
    fingerprint: str
    preprocess: str
    images: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    fields: dict[str, dict[str, ReceptiveField]] = field(default_factory=dict)  # by "HxW"
    processed: set[int] = field(default_factory=set)
    preprocess_args: dict[str, Any] | None = None  # a Preprocess's fields, to rebuild it on load
    digests: dict[int, str] = field(default_factory=dict)  # image index -> contents digest
    sources: Sources | None = field(default=None, repr=False)
    prepare: Any = field(default=None, repr=False)  # index -> PreparedImage, for crops
    _same_contents: set[int] = field(default_factory=set, repr=False, compare=False)

    def _state(self, module: str) -> ChannelTopK:
        if module not in self.states:
            hint = did_you_mean(module, self.states)
            raise LayerScopeError(
                f"this sweep has no module {module!r} (it swept {', '.join(self.modules)}) {hint}"
            )
        return self.states[module]

    def top(self, module: str, channel: int) -> list[Example]:
        """The channel's best images, best first (at most k)."""
        st = self._state(module)
        if not 0 <= channel < st.channels:
            raise LayerScopeError(f"channel {channel} is out of range: {module} has {st.channels}")
        assert st.scores is not None and st.ids is not None and st.rows is not None
        assert st.cols is not None
        out = []
        for j in range(st.scores.shape[1]):
            score = float(st.scores[channel, j])
            if score == float("-inf"):
                break
            index = int(st.ids[channel, j])
            out.append(
                Example(
                    self.source(index),
                    index,
                    score,
                    (int(st.rows[channel, j]), int(st.cols[channel, j])),
                    module,
                    self,
                )
            )
        return out

    def source(self, index: int) -> str | int:
        label = self.labels[index]
        return index if label.startswith(("dataset[", "item[")) else label

    def stats(self, module: str) -> ChannelStats:
        st = self._state(module)
        assert st.total is not None and st.count is not None and st.peak is not None
        assert st.zeros is not None
        count = st.count.double().clamp_min(1)
        return ChannelStats(
            (st.total / count).float().cpu().numpy(),
            st.peak.cpu().numpy(),
            (st.zeros.double() / count).float().cpu().numpy(),
        )

    def dead(self, module: str) -> np.ndarray:
        """Channels that never exceed zero on any image."""
        return np.flatnonzero(self.stats(module).max <= 0)

    def crop(self, module: str, index: int, location: tuple[int, int]) -> Image.Image:
        prepared, field, _ = self.unit_boxes(module, index, location)
        if field is None:
            return prepared.image.copy()
        y0, x0, y1, x1 = field
        return prepared.image.crop((round(x0), round(y0), round(x1), round(y1)))  # black pad

    def montage(
        self, module: str, channel: int, side: int = 112, cols: int | None = None
    ) -> Image.Image:
        """The channel's top patches in a grid, best first (left to right, then down), each
        scaled to fit ``side`` x ``side`` on black: Zeiler and Fergus's figure for one unit."""
        crops = [e.crop() for e in self.top(module, channel)]
        if not crops:
            raise LayerScopeError(f"{module} channel {channel} has no examples yet")
        cols = cols or min(len(crops), 8)
        rows = -(-len(crops) // cols)
        sheet = Image.new("RGB", (cols * (side + 2), rows * (side + 2)))
        for i, crop in enumerate(crops):
            crop.thumbnail((side, side))
            r, c = divmod(i, cols)
            x = c * (side + 2) + (side - crop.width) // 2
            y = r * (side + 2) + (side - crop.height) // 2
            sheet.paste(crop, (x + 1, y + 1))
        return sheet

    def unit_boxes(
        self, module: str, index: int, location: tuple[int, int]
    ) -> tuple[PreparedImage, Box | None, Box | None]:
        """Image ``index`` as the sweep prepared it, and where unit ``location`` of ``module``
        lies on it, as boxes (y0, x0, y1, x1) in the pixels of ``prepared.image`` (not clipped):
        the unit's receptive field and its stride footprint (the cell). None when the module's
        field is not known (a vector output)."""
        if self.sources is None or self.prepare is None:
            raise LayerScopeError(
                "this sweep was loaded without its images: Sweep.load(path, images=...) "
                "re-attaches them (a folder, paths or the Dataset it was run on; with "
                "preprocess=... when the sweep used a preprocessing function of its own)"
            )
        self._check_contents(index)
        prepared = self.prepare(index)
        h, w = prepared.geometry.input_size
        rf = self.fields.get(module, {}).get(f"{h}x{w}")
        if rf is None:
            return prepared, None, None
        g = prepared.geometry
        row, col = location
        (sy, sx) = rf.stride
        field = g.to_image_box(rf.box(row, col))  # input pixels, end exclusive
        cell = g.to_image_box((row * sy, col * sx, (row + 1) * sy, (col + 1) * sx))
        return prepared, field, cell

    def original(self, index: int) -> Any:
        """Image ``index`` as it was given (a path, a dataset item's image, a tensor)."""
        if self.sources is None:
            raise LayerScopeError("this sweep was loaded without its images: pass images=")
        self._check_contents(index)
        return self.sources.load(index)

    def _check_contents(self, index: int) -> None:
        """Refuse to show image ``index`` when its contents changed since it was swept (a file
        rewritten under the same name): its patch would not be what was scored. Checked once
        per image, when it is first shown, not for every image at load."""
        expected = self.digests.get(index)
        if expected is None or index in self._same_contents or self.sources is None:
            return
        from .identify import content_digest

        if content_digest(self.sources.items[index]) != expected:
            raise LayerScopeError(
                f"image {index} ({self.sources.labels[index]!r}) changed since it was swept: "
                "its patch would show other pixels than those scored; sweep the images again"
            )
        self._same_contents.add(index)

    def save(self, path: str | Path) -> Path:
        """Write the sweep to ``path`` (see :mod:`layerscope.dataset.format`)."""
        from .format import save_sweep

        return save_sweep(self, Path(path))

    @classmethod
    def load(
        cls, path: str | Path, images: Any = None, model: Any = None, preprocess: Any = None
    ) -> Sweep:
        """Read a sweep written by :meth:`save`. ``images`` re-attaches the images (for crops),
        prepared as in the sweep: a :class:`Preprocess` is restored from the file, a function
        of one's own must be given again as ``preprocess``. ``model`` checks that the sweep was
        made with this model's weights."""
        from .format import load_sweep

        return load_sweep(Path(path), images=images, model=model, preprocess=preprocess)
