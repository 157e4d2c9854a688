import assert from "node:assert/strict";
import { test } from "node:test";
import { lookupTable, parseColor } from "../src/colors.js";
import { bytesOf, decode, rows } from "../src/decode.js";
import { filterTree, formatCount, formatShape, visibleRows } from "../src/tree.js";
import { histogramFigure, imageFigure, importanceFigure } from "../src/views.js";

test("decode reads float32 from an unaligned DataView", () => {
  const src = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
  const padded = new Uint8Array(src.byteLength + 3);
  padded.set(new Uint8Array(src.buffer), 3);
  const view = new DataView(padded.buffer, 3, src.byteLength);
  const d = decode({ data: view, dtype: "float32", shape: [2, 3] });
  assert.deepEqual(Array.from(d.values), [1.5, -2, 3.25, 4, 5, 6]);
  assert.deepEqual(rows(d), [
    [1.5, -2, 3.25],
    [4, 5, 6],
  ]);
});

test("decode checks the shape and the dtype", () => {
  const data = new Uint8Array(4);
  assert.throws(() => decode({ data, dtype: "float64", shape: [1] }), /unsupported dtype/);
  assert.throws(() => decode({ data, dtype: "uint8", shape: [5] }), /needs 5/);
  assert.throws(() => bytesOf(/** @type {any} */ ("abc")), /binary/);
  const planes = decode({ data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]), dtype: "uint8", shape: [2, 2, 2] });
  assert.deepEqual(rows(planes, 1), [
    [5, 6],
    [7, 8],
  ]);
});

const nodes = [
  {
    id: "",
    name: "Net",
    cls: "Net",
    parent: null,
    children: ["backbone", "head"],
    depth: 0,
    params: 0,
    total_params: 10,
    shape: null,
    calls: 1,
  },
  {
    id: "backbone",
    name: "backbone",
    cls: "Sequential",
    parent: "",
    children: ["backbone.0", "backbone.1"],
    depth: 1,
    params: 0,
    total_params: 8,
    shape: null,
    calls: 1,
  },
  {
    id: "backbone.0",
    name: "0",
    cls: "Conv2d",
    parent: "backbone",
    children: [],
    depth: 2,
    params: 4,
    total_params: 4,
    shape: [1, 4, 8, 8],
    calls: 1,
  },
  {
    id: "backbone.1",
    name: "1",
    cls: "ReLU",
    parent: "backbone",
    children: [],
    depth: 2,
    params: 0,
    total_params: 0,
    shape: [1, 4, 8, 8],
    calls: 3,
  },
  {
    id: "head",
    name: "head",
    cls: "ModuleList",
    parent: "",
    children: [],
    depth: 1,
    params: 2,
    total_params: 2,
    shape: null,
    calls: 0,
  },
];

test("filterTree keeps matches and their ancestors, by name or class", () => {
  assert.equal(filterTree(nodes, "  "), null);
  assert.deepEqual([...(filterTree(nodes, "relu") || [])].sort(), ["", "backbone", "backbone.1"]);
  assert.deepEqual([...(filterTree(nodes, "HEAD") || [])].sort(), ["", "head"]);
  assert.deepEqual([...(filterTree(nodes, "<img src=x>") || [])], []);
});

test("visibleRows follows the expanded set", () => {
  assert.deepEqual(
    visibleRows(nodes, new Set([""]), null).map((n) => n.id),
    ["", "backbone", "head"],
  );
  assert.deepEqual(visibleRows(nodes, new Set(["", "backbone"]), null).length, 5);
  assert.deepEqual(
    visibleRows(nodes, new Set(), new Set(["", "head"])).map((n) => n.id),
    ["", "head"],
  );
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
  const fig = imageFigure({
    imageUrl: "data:,",
    size: [300, 451],
    theme,
    title: "t",
    boxes: [
      { box: { y0: 1, x0: 2, y1: 3, x1: 4 }, color: "#f00" },
      { box: { y0: 0, x0: 0, y1: 9, x1: 9 }, color: "#ff0", dash: "dash" },
    ],
  });
  assert.deepEqual(fig.layout.yaxis.range, [300, 0]);
  assert.equal(fig.layout.shapes[0].x0, 2);
  assert.equal(fig.layout.shapes[1].line.dash, "dash");
  const hist = histogramFigure({ layer: { counts: [1, 3], edges: [0, 1, 2] }, channel: null, channelName: "c", theme });
  assert.deepEqual(hist.data[0].y, [0.25, 0.75]);
  assert.deepEqual(hist.data[0].x, [0.5, 1.5]);
});

test("dataset bars: dead channels grey, the selected one marked even when dead", async () => {
  const { barColours, statsFigure, ALIVE, DEAD, SELECTED } = await import("../src/dataset.js");
  assert.deepEqual(barColours(5, 1, [3, 1]), [ALIVE, SELECTED, ALIVE, DEAD, ALIVE]);
  assert.deepEqual(barColours(3, -1, []), [ALIVE, ALIVE, ALIVE]);
  const theme = { font: "#000", grid: "#ccc", dark: false };
  const fig = statsFigure({ mean: [0.5, 0], max: [2, 0], zero: [0.25, 1], dead: [1], selected: 0, title: "t", theme });
  assert.deepEqual(fig.data[0].customdata, [0, 1]);
  assert.equal(fig.data[0].text[0], "channel 0: mean 0.500, max 2.00, 25% zero");
});

test("importance bars: one colour per trace (so the legend is right), a band behind the selected", () => {
  const theme = { font: "#000", grid: "#ccc", dark: false };
  const o = { channels: [7, 3, 9], estimate: [3, 2, 1], exact: [2.5, null, null], title: "t", theme };
  const fig = importanceFigure({ ...o, selected: 7 }); // the first bar: the one plotly's legend shows
  assert.deepEqual(
    fig.data.map((t) => t.marker.color),
    ["#4c78a8", "#54a24b"],
  );
  assert.deepEqual(fig.data[1].x, ["#7", "#3", "#9"]);
  const [band] = fig.layout.shapes;
  assert.deepEqual([band.x0, band.x1, band.yref], [-0.5, 0.5, "paper"]); // category 0 of the axis
  assert.equal(importanceFigure({ ...o, selected: 3 }).layout.shapes[0].x0, 0.5);
  assert.deepEqual(importanceFigure({ ...o, selected: 42 }).layout.shapes, []);
});
