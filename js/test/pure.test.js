import assert from "node:assert/strict";
import { test } from "node:test";
import { lookupTable, parseColor } from "../src/colors.js";
import { bytesOf, decode, rows } from "../src/decode.js";
import { cellMark, drawable, flat, hasView, linkOf } from "../src/spec.js";
import { conceptNamed, filterTree, formatCount, formatShape, visibleRows } from "../src/tree.js";

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

test("filterTree finds the modules with units of a concept named whole", () => {
  const concepts = { "potted plant": ["head"], person: ["backbone.1"] };
  assert.equal(conceptNamed(concepts, " Potted Plant "), "potted plant");
  assert.equal(conceptNamed(concepts, "pers"), ""); // a concept is named whole
  assert.deepEqual([...(filterTree(nodes, "potted plant", concepts) || [])].sort(), ["", "head"]);
  assert.deepEqual([...(filterTree(nodes, "PERSON", concepts) || [])].sort(), ["", "backbone", "backbone.1"]);
  assert.deepEqual([...(filterTree(nodes, "pers", concepts) || [])], []);
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

test("a view's spec is drawn as given: binary arrays aligned, pictures resolved, the theme added", () => {
  // Float32 values at an odd offset of the message buffer, as ipywidgets may hand them over.
  const raw = new Uint8Array(1 + 16);
  raw.set(new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer), 1);
  const spec = {
    data: [{ type: "heatmap", z: { dtype: "f4", bdata: new DataView(raw.buffer, 1, 16), shape: "2,2" } }],
    layout: {
      title: { text: "t" },
      xaxis: { range: [0, 4] },
      yaxis2: { gridcolor: "#123" },
      images: [{ source: "layerscope:image", x: 0 }],
      meta: { link: "image" },
    },
  };
  const fig = drawable(spec, { font: "#eee", grid: "#333", dark: true }, (ref) => `url-of:${ref}`);
  const z = fig.data[0].z;
  assert.ok(z.bdata instanceof ArrayBuffer);
  assert.deepEqual([...new Float32Array(z.bdata)], [1, 2, 3, 4]);
  assert.deepEqual(flat(z), { values: new Float32Array([1, 2, 3, 4]), shape: [2, 2] });
  assert.equal(fig.layout.images[0].source, "url-of:layerscope:image");
  assert.equal(fig.layout.font.color, "#eee");
  assert.deepEqual(fig.layout.xaxis, { gridcolor: "#333", range: [0, 4] });
  assert.equal(fig.layout.yaxis2.gridcolor, "#123", "a colour the view sets is kept");
  assert.equal(spec.layout.images[0].source, "layerscope:image", "the spec itself is not changed");
  assert.equal(linkOf(spec), "image");
  assert.ok(hasView(spec) && !hasView({}));
  assert.deepEqual(
    cellMark({ row: 2, col: 3 }).map((s) => [s.x0, s.x1, s.y0, s.y1]),
    [[2.5, 3.5, 1.5, 2.5]],
  );
});
