import assert from "node:assert/strict";
import { test } from "node:test";
import { lookupTable, parseColor } from "../src/colors.js";
import { bytesOf, decode, rows } from "../src/decode.js";
import { cellAt, cellBox, overlayPlacement, receptiveBox } from "../src/geometry.js";
import { filterTree, formatCount, formatShape, visibleRows } from "../src/tree.js";
import { histogramFigure, imageFigure } from "../src/views.js";

test("decode reads float32 from an unaligned DataView", () => {
  const src = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
  const padded = new Uint8Array(src.byteLength + 3);
  padded.set(new Uint8Array(src.buffer), 3);
  const view = new DataView(padded.buffer, 3, src.byteLength);
  const d = decode({ data: view, dtype: "float32", shape: [2, 3] });
  assert.deepEqual(Array.from(d.values), [1.5, -2, 3.25, 4, 5, 6]);
  assert.deepEqual(rows(d), [[1.5, -2, 3.25], [4, 5, 6]]);
});

test("decode checks the shape and the dtype", () => {
  const data = new Uint8Array(4);
  assert.throws(() => decode({ data, dtype: "float64", shape: [1] }), /unsupported dtype/);
  assert.throws(() => decode({ data, dtype: "uint8", shape: [5] }), /needs 5/);
  assert.throws(() => bytesOf(/** @type {any} */ ("abc")), /binary/);
  const planes = decode({ data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), dtype: "uint8", shape: [2, 2, 2] });
  assert.deepEqual(rows(planes, 1), [[5, 6], [7, 8]]);
});

// DeepLabV3 at 520: a 300 x 451 photo resized to 520 x 781, output stride 8 -> 65 x 98 cells.
const g = { image_size: [300, 451], input_size: [520, 781], scale: [300 / 520, 451 / 781], offset: [0, 0] };

test("cellBox maps a cell through stride and resize, clipped to the image", () => {
  const b = cellBox(g, [65, 98], 1, 0, 0);
  assert.ok(Math.abs(b.y1 - 8 * (300 / 520)) < 1e-9);
  assert.ok(Math.abs(b.x1 - (781 / 98) * (451 / 781)) < 1e-9);
  const last = cellBox(g, [65, 98], 1, 64, 97);
  assert.equal(last.y1, 300);
  assert.equal(last.x1, 451);
  const pooled = cellBox(g, [260, 391], 3, 0, 0);
  assert.ok(Math.abs(pooled.y1 - 3 * 2 * (300 / 520)) < 1e-9);
});

test("cellAt inverts cellBox", () => {
  for (const [r, c] of [[0, 0], [10, 20], [64, 97], [33, 50]]) {
    const b = cellBox(g, [65, 98], 1, r, c);
    assert.deepEqual(cellAt(g, [65, 98], 1, (b.y0 + b.y1) / 2, (b.x0 + b.x1) / 2), { row: r, col: c });
  }
  assert.equal(cellAt(g, [65, 98], 1, -1, 5), null);
  assert.equal(cellAt(g, [65, 98], 1, 5, 452), null);
  const crop = { image_size: [200, 400], input_size: [100, 100], scale: [2, 2], offset: [0, 100] };
  assert.deepEqual(cellAt(crop, [10, 10], 1, 5, 105), { row: 0, col: 0 });
  assert.equal(cellAt(crop, [10, 10], 1, 5, 50), null); // cropped away
  const p = overlayPlacement(crop, [10, 10], 1);
  assert.deepEqual(p, { x0: 110, y0: 10, dx: 20, dy: 20 });
});

test("receptiveBox: the field of a cell through resize and pooling, clipped", () => {
  // DeepLabV3 backbone.layer1 at 160 px on a 512 px image: r = 35, S = 4, P = 17.
  const g2 = { image_size: [512, 512], input_size: [160, 160], scale: [3.2, 3.2], offset: [0, 0] };
  const rf = { size: [35, 35], stride: [4, 4], padding: [17, 17] };
  const b = receptiveBox(g2, rf, [40, 40], 1, 10, 20);
  assert.deepEqual([b.y0, b.x0, b.y1, b.x1].map((v) => +v.toFixed(6)), [(40 - 17) * 3.2, (80 - 17) * 3.2, (40 - 17 + 35) * 3.2, (80 - 17 + 35) * 3.2].map((v) => +v.toFixed(6)));
  const corner = receptiveBox(g2, rf, [40, 40], 1, 0, 0);
  assert.equal(corner.y0, 0); // clipped: the field reaches into the padding
  const pooled = receptiveBox(g2, rf, [40, 40], 2, 0, 0);
  assert.equal(+((pooled.y1 / 3.2).toFixed(6)), 4 - 17 + 35); // two units: one stride further
});

const nodes = [
  { id: "", name: "Net", cls: "Net", parent: null, children: ["backbone", "head"], depth: 0, params: 0, total_params: 10, shape: null, calls: 1 },
  { id: "backbone", name: "backbone", cls: "Sequential", parent: "", children: ["backbone.0", "backbone.1"], depth: 1, params: 0, total_params: 8, shape: null, calls: 1 },
  { id: "backbone.0", name: "0", cls: "Conv2d", parent: "backbone", children: [], depth: 2, params: 4, total_params: 4, shape: [1, 4, 8, 8], calls: 1 },
  { id: "backbone.1", name: "1", cls: "ReLU", parent: "backbone", children: [], depth: 2, params: 0, total_params: 0, shape: [1, 4, 8, 8], calls: 3 },
  { id: "head", name: "head", cls: "ModuleList", parent: "", children: [], depth: 1, params: 2, total_params: 2, shape: null, calls: 0 },
];

test("filterTree keeps matches and their ancestors, by name or class", () => {
  assert.equal(filterTree(nodes, "  "), null);
  assert.deepEqual([...(filterTree(nodes, "relu") || [])].sort(), ["", "backbone", "backbone.1"]);
  assert.deepEqual([...(filterTree(nodes, "HEAD") || [])].sort(), ["", "head"]);
  assert.deepEqual([...(filterTree(nodes, "<img src=x>") || [])], []);
});

test("visibleRows follows the expanded set", () => {
  assert.deepEqual(visibleRows(nodes, new Set([""]), null).map((n) => n.id), ["", "backbone", "head"]);
  assert.deepEqual(visibleRows(nodes, new Set(["", "backbone"]), null).length, 5);
  assert.deepEqual(visibleRows(nodes, new Set(), new Set(["", "head"])).map((n) => n.id), ["", "head"]);
});

test("formatting", () => {
  assert.equal(formatShape([1, 256, 24, 24]), "1×256×24×24");
  assert.equal(formatShape({ aux: [1, 2], out: [1, 3] }), "aux: 1×2, out: 1×3");
  assert.equal(formatShape([[1, 2], [3]]), "(1×2, 3)");
  assert.equal(formatCount(23508032), "23.5M");
  assert.equal(formatCount(9408), "9.4k");
});

test("colour tables interpolate plotly's stops", () => {
  const lut = lookupTable("Greys");
  assert.deepEqual([lut[0], lut[1], lut[2]], [0, 0, 0]);
  assert.deepEqual([lut[765], lut[766], lut[767]], [255, 255, 255]);
  assert.equal(lut[3 * 128], 128);
  assert.deepEqual(parseColor("#440154"), [0x44, 0x01, 0x54]);
  assert.deepEqual(parseColor("rgb(5,10,172)"), [5, 10, 172]);
});

test("figures: image axes in pixels, histogram as fractions", () => {
  const theme = { font: "#000", grid: "#ccc", dark: false };
  const fig = imageFigure({ imageUrl: "data:,", size: [300, 451], theme, title: "t", boxes: [{ box: { y0: 1, x0: 2, y1: 3, x1: 4 }, color: "#f00" }, { box: { y0: 0, x0: 0, y1: 9, x1: 9 }, color: "#ff0", dash: "dash" }] });
  assert.deepEqual(fig.layout.yaxis.range, [300, 0]);
  assert.equal(fig.layout.shapes[0].x0, 2);
  assert.equal(fig.layout.shapes[1].line.dash, "dash");
  const hist = histogramFigure({ layer: { counts: [1, 3], edges: [0, 1, 2] }, channel: null, channelName: "c", theme });
  assert.deepEqual(hist.data[0].y, [0.25, 0.75]);
  assert.deepEqual(hist.data[0].x, [0.5, 1.5]);
});
