"""Image geometry, defined once in Python (layerscope.images.Geometry) and mirrored by the
browser's geometry.js: both test suites check the same hand-computed cases
(tests/geometry_cases.json; js/test/geometry.test.js reads it too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from layerscope.images import Geometry
from layerscope.receptive import ReceptiveField

DATA = json.loads((Path(__file__).parent / "geometry_cases.json").read_text())


def _geometry(name: str) -> Geometry:
    g = DATA["geometries"][name]
    return Geometry(tuple(g["image_size"]), tuple(g["input_size"]), tuple(g["scale"]),
                    tuple(g["offset"]))  # fmt: skip


@pytest.mark.parametrize("case", DATA["cases"], ids=lambda c: f"{c['fn']}-{c['why'][:30]}")
def test_geometry_case(case):
    g = _geometry(case["g"])
    fn = case["fn"]
    if fn == "cellBox":
        got = g.cell_box(tuple(case["layer"]), *case["cell"], pool=case["pool"])
        assert got == pytest.approx(case["expected"], abs=1e-9)
    elif fn == "cellAt":
        got = g.cell_at(tuple(case["layer"]), *case["point"], pool=case["pool"])
        assert (list(got) if got else None) == case["expected"]
    elif fn == "overlayPlacement":
        got = g.overlay_placement(tuple(case["layer"]), pool=case["pool"])
        assert got == pytest.approx(case["expected"], abs=1e-9)
    elif fn == "receptiveBox":
        rf = ReceptiveField(**{k: tuple(v) for k, v in case["rf"].items()})
        got = g.receptive_box(rf, tuple(case["layer"]), *case["cell"], pool=case["pool"])
        assert got == pytest.approx(case["expected"], abs=1e-9)
    else:
        mask = g.region_mask(tuple(case["box"]), tuple(case["output"]))
        rows = mask.any(1).nonzero().flatten().tolist()
        cols = mask.any(0).nonzero().flatten().tolist()
        assert [rows[0], rows[-1] + 1] == case["expected_rows"]
        assert [cols[0], cols[-1] + 1] == case["expected_cols"]
        assert int(mask.sum()) == len(rows) * len(cols)  # one rectangle


def test_cell_at_inverts_cell_box():
    g = _geometry("deeplab520")
    for r, c in [(0, 0), (10, 20), (64, 97), (33, 50)]:
        y0, x0, y1, x1 = g.cell_box((65, 98), r, c)
        assert g.cell_at((65, 98), (y0 + y1) / 2, (x0 + x1) / 2) == (r, c)
