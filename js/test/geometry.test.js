// geometry.js against the hand-computed cases Python's layerscope.images.Geometry is tested
// with (tests/geometry_cases.json): one definition in Python, a mirror here, the same truths.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { cellAt, cellBox, overlayPlacement, receptiveBox } from "../src/geometry.js";

const data = JSON.parse(readFileSync(new URL("../../tests/geometry_cases.json", import.meta.url), "utf8"));
const close = (a, b) => assert.ok(Math.abs(a - b) < 1e-9, `${a} != ${b}`);
const sameBox = (box, expected) => {
  [box.y0, box.x0, box.y1, box.x1].forEach((v, i) => {
    close(v, expected[i]);
  });
};

let casesChecked = 0; // counted after a case's checks pass: what actually ran, not the JSON
for (const c of data.cases) {
  if (c.fn === "regionMask") continue; // Python only: the browser sends the box, the kernel masks
  test(`${c.fn}: ${c.why}`, () => {
    const g = data.geometries[c.g];
    if (c.fn === "cellBox") {
      sameBox(cellBox(g, c.layer, c.pool, c.cell[0], c.cell[1]), c.expected);
    } else if (c.fn === "cellAt") {
      const got = cellAt(g, c.layer, c.pool, c.point[0], c.point[1]);
      assert.deepEqual(got && [got.row, got.col], c.expected);
    } else if (c.fn === "overlayPlacement") {
      const got = overlayPlacement(g, c.layer, c.pool);
      for (const k of ["x0", "y0", "dx", "dy"]) close(got[k], c.expected[k]);
    } else if (c.fn === "receptiveBox") {
      sameBox(receptiveBox(g, c.rf, c.layer, c.pool, c.cell[0], c.cell[1]), c.expected);
    } else {
      assert.fail(`no such function ${c.fn}`);
    }
    casesChecked += 1;
  });
}

// Top-level tests run in order, so this one sees every case above finished.
test("every case the JS mirrors was run", () => {
  const mirrored = data.cases.filter((c) => c.fn !== "regionMask");
  assert.ok(mirrored.length >= 12);
  assert.equal(casesChecked, mirrored.length);
});
