// Rendering against a fake anywidget model and a recording stand-in for plotly (the real
// plotly.js is exercised in the browser tests).
import assert from "node:assert/strict";
import { test } from "node:test";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><body></body>", { pretendToBeVisual: true });
Object.assign(globalThis, {
  window: dom.window,
  document: dom.window.document,
  getComputedStyle: dom.window.getComputedStyle,
  MutationObserver: dom.window.MutationObserver,
  HTMLElement: dom.window.HTMLElement,
  requestAnimationFrame: dom.window.requestAnimationFrame,
  cancelAnimationFrame: dom.window.cancelAnimationFrame,
  // jsdom has no layout: a ResizeObserver that never fires.
  ResizeObserver: class {
    observe() {}
    disconnect() {}
  },
});
const { createApp } = await import("../src/app.js");
const nextFrame = () => new Promise((resolve) => dom.window.requestAnimationFrame(() => resolve()));

function fakeModel(state) {
  const listeners = new Map();
  const saved = [];
  return {
    state,
    saved,
    get: (k) => state[k],
    set: (k, v) => {
      state[k] = v;
    },
    save_changes: () =>
      saved.push(JSON.parse(JSON.stringify({ ...state, _layer: undefined, _channel: undefined, _image: undefined }))),
    on: (ev, cb) => listeners.set(ev, [...(listeners.get(ev) || []), cb]),
    off: (ev, cb) =>
      listeners.set(
        ev,
        (listeners.get(ev) || []).filter((f) => f !== cb),
      ),
    emit: (ev) => {
      for (const f of listeners.get(ev) || []) f();
    },
    count: () => [...listeners.values()].reduce((a, l) => a + l.length, 0),
  };
}

function fakePlotly() {
  const calls = [];
  return {
    calls,
    react: async (el, data, layout) => {
      el.layout = layout;
      el.data = data;
      calls.push(["react", el.className, data, layout]);
    },
    relayout: async (el, update) => {
      Object.assign(el.layout, update);
      calls.push(["relayout", el.className, update]);
    },
    purge: (el) => calls.push(["purge", el.className]),
    Plots: { resize: (el) => calls.push(["resize", el.className]) },
  };
}

const f32 = (values) => ({ data: new DataView(new Float32Array(values).buffer), dtype: "float32", shape: [] });

// The views' specs the kernel sends with those payloads (layerscope/widget/spec.py's form).
const heatmap = (title, z) => ({
  data: [
    {
      type: "heatmap",
      z,
      colorscale: [
        [0, "#000000"],
        [1, "#ffffff"],
      ],
    },
  ],
  layout: { title: { text: title }, meta: { link: "map" }, shapes: [] },
});
const tile = (channel, z, zmin, zmax) => ({
  type: "heatmap",
  z,
  zmin,
  zmax,
  name: `#${channel}`,
  meta: { channel },
  colorscale: [
    [0, "#000000"],
    [1, "#ffffff"],
  ],
});
function viewsAfterCapture() {
  return {
    _view_image: {
      data: [
        {
          type: "heatmap",
          z: [
            [1, 2],
            [3, 4],
          ],
          x0: 1,
          dx: 2,
          y0: 1,
          dy: 2,
        },
      ],
      layout: {
        title: { text: "conv on the image" },
        images: [{ source: "layerscope:image" }],
        meta: { link: "image" },
        shapes: [],
      },
    },
    _view_channel: heatmap("conv · channel 1 of 2", { dtype: "f4", bdata: f32([0, 1, 2, 3]).data, shape: "2,2" }),
    _view_aggregate: heatmap("conv · mean over 2 channels", [
      [1, 2],
      [3, 4],
    ]),
    _view_grid: {
      data: [
        tile(
          1,
          [
            [0, 1],
            [0, 1],
          ],
          0,
          1,
        ),
        tile(
          0,
          [
            [1, -1],
            [1, -1],
          ],
          -1,
          1,
        ),
      ],
      layout: { title: { text: "conv · top 2 channels by mean activation" }, meta: { link: "tiles" } },
    },
    _view_histogram: {
      data: [{ type: "bar", x: [0.5, 1.5], y: [0.25, 0.75] }],
      layout: { title: { text: "Value histogram" }, meta: { link: "" } },
    },
  };
}

function baseState() {
  const tree = [
    {
      id: "",
      name: "Net",
      cls: "Net",
      parent: null,
      children: ["conv", "<b>odd</b>"],
      depth: 0,
      params: 0,
      total_params: 12,
      shape: [1, 2, 2, 2],
      calls: 1,
    },
    {
      id: "conv",
      name: "conv",
      cls: "Conv2d",
      parent: "",
      children: [],
      depth: 1,
      params: 12,
      total_params: 12,
      shape: [1, 2, 2, 2],
      calls: 1,
    },
    {
      id: "<b>odd</b>",
      name: "<b>odd</b>",
      cls: "ModuleList",
      parent: "",
      children: [],
      depth: 1,
      params: 0,
      total_params: 0,
      shape: null,
      calls: 0,
    },
  ];
  const agg = { ...f32([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), shape: [3, 2, 2] };
  return {
    _tree: tree,
    hooked_modules: [],
    selected_module: "",
    selected_channel: 0,
    selected_call: 0,
    aggregate: "mean",
    overlay: "aggregate",
    overlay_opacity: 0.5,
    colorscale: "Viridis",
    selected_class: -1,
    _image: { jpeg: new DataView(new Uint8Array([255, 216, 255]).buffer), size: [4, 4] },
    _geometry: { image_size: [4, 4], input_size: [4, 4], scale: [1, 1], offset: [0, 0] },
    _layer: {},
    _channel: {},
    _segmentation: {},
    _class_score: {},
    _status: { state: "idle" },
    _error: "",
    _notice: "Random weights",
    _title: "Net",
    _shown_views: ["image", "aggregate", "grid", "histogram", "vector", "channel", "score"],
    layerAfterCapture: {
      module: "conv",
      cls: "Conv2d",
      kind: "maps",
      call: 0,
      calls: 1,
      shape: [1, 2, 2, 2],
      channels: 2,
      map_size: [2, 2],
      map_pool: 1,
      aggregate_names: ["mean", "max", "l2"],
      aggregates: agg,
      nonfinite_cells: 0,
      topk: [1, 0],
      tile_pool: 1,
      tiles: {
        data: new DataView(new Uint8Array([0, 255, 0, 255, 255, 0, 255, 0]).buffer),
        dtype: "uint8",
        shape: [2, 2, 2],
      },
      tile_min: [0, -1],
      tile_max: [1, 1],
      histogram: { counts: [1, 3], edges: [0, 1, 2] },
      stats: { mean: 0.5, std: 0.1, min: 0, max: 1, zero_fraction: 0.25, count: 8 },
    },
    channelAfterCapture: {
      module: "conv",
      call: 0,
      channel: 1,
      map: { ...f32([0, 1, 2, 3]), shape: [2, 2] },
      histogram: { counts: [2, 2], edges: [0, 1, 2] },
      stats: { mean: 1.5, std: 1, min: 0, max: 3, zero_fraction: 0.25, count: 4 },
    },
  };
}

test("renders the tree as text, toggles hooks, draws views and cleans up", async () => {
  const state = baseState();
  const model = fakeModel(state);
  const plotly = fakePlotly();
  const el = document.createElement("div");
  document.body.append(el);
  const cleanup = createApp({ model, el, plotly });
  await nextFrame();

  const rows = el.querySelectorAll(".layerscope-node");
  assert.equal(rows.length, 3);
  const odd = [...rows].find((r) => r.dataset.id === "<b>odd</b>");
  assert.equal(odd.querySelector("b"), null, "module names are never parsed as HTML");
  assert.match(odd.textContent, /never runs/);
  assert.equal(el.querySelector(".layerscope-notice").textContent, "Random weights");

  // A click on a row hooks the module through the model.
  rows[1].querySelector(".layerscope-name").dispatchEvent(new window.MouseEvent("click", { bubbles: true }));
  assert.deepEqual(state.hooked_modules, ["conv"]);
  assert.equal(model.saved.length, 1);

  // The kernel answers with payloads: the views are drawn.
  state._layer = state.layerAfterCapture;
  state._channel = state.channelAfterCapture;
  state.selected_module = "conv";
  Object.assign(state, viewsAfterCapture());
  model.emit("change:hooked_modules");
  model.emit("change:_layer");
  model.emit("change:_channel");
  for (const name of Object.keys(viewsAfterCapture())) model.emit(`change:${name}`);
  await nextFrame();
  assert.match(el.dataset.layerscopeDrawn, /^conv\|1\|/);
  const drawn = new Set(plotly.calls.filter((c) => c[0] === "react").map((c) => c[1]));
  for (const name of [
    "layerscope-plot-image",
    "layerscope-plot-channel",
    "layerscope-plot-aggregate",
    "layerscope-plot-histogram",
  ]) {
    assert.ok(
      [...drawn].some((d) => d.includes(name)),
      name,
    );
  }
  assert.equal(el.querySelectorAll(".layerscope-tile").length, 2);
  assert.match(el.querySelector(".layerscope-grid-panel").textContent, /top 2 channels by mean activation/);
  // Drawn as given: the channel map's binary z reaches plotly as the spec's numbers.
  const channelDraw = plotly.calls.filter((c) => c[0] === "react" && c[1].includes("plot-channel")).at(-1);
  assert.deepEqual([...new Float32Array(channelDraw[2][0].z.bdata)], [0, 1, 2, 3]);
  assert.equal(channelDraw[3].title.text, "conv · channel 1 of 2");
  assert.match(el.dataset.layerscopeDrawn, /^conv\|1\|/);

  // Hovering a heatmap cell outlines its footprint on the image, without the kernel.
  const channelPlot = el.querySelector(".layerscope-plot-channel");
  const imagePlot = el.querySelector(".layerscope-plot-image");
  assert.equal(typeof channelPlot.on, "undefined"); // the fake plotly attaches no events
  const before = model.saved.length;
  const handlers = {};
  for (const p of [channelPlot, imagePlot]) p.on = (name, fn) => (handlers[`${p.className}:${name}`] = fn);
  model.emit("change:_layer"); // binds events now that `.on` exists
  await nextFrame();
  handlers[`${channelPlot.className}:plotly_hover`]({ points: [{ x: 1, y: 0 }] });
  assert.deepEqual(JSON.parse(imagePlot.dataset.box), { y0: 0, x0: 2, y1: 2, x1: 4 });
  assert.equal(imagePlot.layout.shapes.length, 1, "the spec's shapes (none) and the hovered cell's");
  handlers[`${imagePlot.className}:plotly_hover`]({ points: [{ x: 0.5, y: 3.5 }] });
  assert.deepEqual(JSON.parse(imagePlot.dataset.box), { y0: 2, x0: 0, y1: 4, x1: 2 });
  assert.match(el.querySelector(".layerscope-values").textContent, /channel 1: 2\.000/);
  assert.equal(model.saved.length, before, "linking never talks to the kernel");

  // A tile click selects its channel; errors show in the widget.
  el.querySelector(".layerscope-tile[data-channel='0']").dispatchEvent(
    new window.MouseEvent("click", { bubbles: true }),
  );
  assert.equal(state.selected_channel, 0);
  state._error = "LayerScopeError: channel 9 is out of range";
  model.emit("change:_error");
  await nextFrame();
  assert.match(el.querySelector(".layerscope-error").textContent, /out of range/);

  // Keyboard: arrows move, Enter toggles.
  const tree = el.querySelector(".layerscope-tree");
  tree.dispatchEvent(new window.KeyboardEvent("keydown", { key: "ArrowUp" })); // conv -> root
  tree.dispatchEvent(new window.KeyboardEvent("keydown", { key: "ArrowDown" })); // -> conv
  assert.ok(el.querySelector(".layerscope-focus").dataset.id === "conv");
  tree.dispatchEvent(new window.KeyboardEvent("keydown", { key: "Enter" }));
  assert.deepEqual(state.hooked_modules, [], "Enter on the hooked conv unhooks it");

  const listening = model.count();
  assert.ok(listening > 0);
  cleanup();
  assert.equal(model.count(), 0);
  assert.ok(plotly.calls.some((c) => c[0] === "purge"));
  assert.equal(el.children.length, 0);
});

test("search filters the tree", async () => {
  const model = fakeModel(baseState());
  const el = document.createElement("div");
  createApp({ model, el, plotly: fakePlotly() });
  await nextFrame();
  const search = el.querySelector(".layerscope-search");
  search.value = "conv2d";
  search.dispatchEvent(new window.Event("input"));
  assert.deepEqual(
    [...el.querySelectorAll(".layerscope-node")].map((r) => r.dataset.id),
    ["", "conv"],
  );
});

test("views of a new layer count as drawn only once its channel has arrived", async () => {
  const state = baseState();
  const model = fakeModel(state);
  const el = document.createElement("div");
  createApp({ model, el, plotly: fakePlotly() });
  state._layer = state.layerAfterCapture;
  state._channel = { ...state.channelAfterCapture, module: "other" };
  Object.assign(state, viewsAfterCapture());
  model.emit("change:_layer");
  model.emit("change:_channel");
  await nextFrame();
  assert.ok(!(el.dataset.layerscopeDrawn || "").startsWith("conv|"));
  state._channel = state.channelAfterCapture;
  model.emit("change:_channel");
  await nextFrame();
  assert.match(el.dataset.layerscopeDrawn, /^conv\|1\|/);
});

test("a view drawn again with the spec it drew keeps its data revision; any change, a byte too, gives a new one", async () => {
  const state = baseState();
  const model = fakeModel(state);
  const plotly = fakePlotly();
  const el = document.createElement("div");
  document.body.append(el);
  createApp({ model, el, plotly });
  state._layer = state.layerAfterCapture;
  state._channel = state.channelAfterCapture;
  Object.assign(state, viewsAfterCapture());
  for (const name of ["_layer", "_channel", ...Object.keys(viewsAfterCapture())]) model.emit(`change:${name}`);
  await nextFrame();
  const lastDraw = (cls) => plotly.calls.filter((c) => c[0] === "react" && c[1].includes(cls)).at(-1);
  const first = lastDraw("plot-aggregate");
  const revision = first[3].datarevision;
  assert.ok(revision !== undefined);

  /** A new channel view from the kernel (a new message: new objects), drawn. */
  const sendChannel = async (title, values) => {
    state._view_channel = heatmap(title, { dtype: "f4", bdata: f32(values).data, shape: "2,2" });
    model.emit("change:_view_channel");
    await nextFrame();
    return lastDraw("plot-channel")[3].datarevision;
  };

  // A channel change redraws the maps: the aggregate's spec is the one it drew.
  const channelRevision = await sendChannel("conv · channel 0 of 2", [3, 2, 1, 0]);
  const again = lastDraw("plot-aggregate");
  assert.notEqual(again, first, "the aggregate was handed to plotly again");
  assert.equal(again[3].datarevision, revision);
  assert.equal(again[3].meta, first[3].meta, "the meta object plotly drew, not an equal new one");

  // The same numbers in a new message: still the same revision.
  assert.equal(await sendChannel("conv · channel 0 of 2", [3, 2, 1, 0]), channelRevision);

  // One value changed (same shape, same title): a new revision, so plotly recomputes.
  const changed = await sendChannel("conv · channel 0 of 2", [3, 2, 1, 0.5]);
  assert.notEqual(changed, channelRevision);

  // A layout change alone (the title): a new revision too (plotly then compares nothing itself).
  assert.notEqual(await sendChannel("conv · channel 0 of 2 (b)", [3, 2, 1, 0.5]), changed);
});

test("a trait change is drawn before the next frame once the widget is in the page", async () => {
  const state = baseState();
  const model = fakeModel(state);
  const plotly = fakePlotly();
  const el = document.createElement("div");
  document.body.append(el);
  createApp({ model, el, plotly });
  await nextFrame();
  state._notice = "changed";
  model.emit("change:_notice");
  await Promise.resolve();
  assert.equal(el.querySelector(".layerscope-notice").textContent, "changed");
});
