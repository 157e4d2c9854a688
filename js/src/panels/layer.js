// What the selected module is: its value histogram (or a vector's top entries), its statistics,
// and every view's value at the marked cell, read in the browser.

import { AGGREGATE_LABELS } from "../contract.js";
import { h, statsTable } from "../controls.js";
import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/** The value histogram and the statistics table. @param {Context} ctx */
export function drawHistogram(ctx) {
  const { st, dom } = ctx;
  drawView(ctx, dom.histPlot, "histogram");
  drawView(ctx, dom.vectorPlot, "vector");
  const layer = st.layer;
  if (!layer.histogram) return;
  const ch = st.channelFits() ? st.channel : {};
  const rf = layer.rf
    ? `receptive field ${layer.rf.size.map(Math.round).join("×")} px, stride ${layer.rf.stride.map((/** @type {number} */ v) => +v.toFixed(2)).join("×")}`
    : "";
  const tokens = layer.grid
    ? `${layer.tokens} tokens: ${layer.class_token ? "a class token (kept apart) and " : ""}${layer.grid.join("×")} patches, shown on their grid`
    : "";
  const layout =
    layer.layout && layer.layout.name !== "NCHW"
      ? `dimensions read as ${layer.layout.name} (${layer.layout.source})`
      : "";
  const s = layer.stats;
  const bad =
    s && s.nan + s.posinf + s.neginf > 0
      ? `not finite: ${s.nan} NaN, ${s.posinf} +inf, ${s.neginf} −inf, left out of the statistics (blank cells in the maps)`
      : "";
  /** @type {Array<[string, any]>} */
  const columns = [
    ["layer", layer.stats],
    ["channel", ch.stats],
  ];
  if (layer.class_token_stats) columns.push(["class token", layer.class_token_stats]);
  const notes = [rf, tokens, layout, bad]
    .filter(Boolean)
    .map((text) => h("div", text === bad ? "layerscope-warning" : "layerscope-muted", text));
  dom.statsBox.replaceChildren(
    h(
      "div",
      "layerscope-panel-title",
      `${layer.module || "model"} · ${layer.cls} · ${layer.shape ? layer.shape.join("×") : ""}`,
    ),
    ...notes,
    statsTable(columns),
  );
}

/** Every view's value at the marked cell, read from the payloads in the browser. @param {Context} ctx */
export function drawValues({ st, dom }) {
  const { layer, decodedLayer, channelMap } = st;
  const cell = st.cell();
  dom.valuesBox.replaceChildren(h("div", "layerscope-panel-title", "Values at a location"));
  if (!cell || layer.kind !== "maps") {
    dom.valuesBox.append(h("div", "layerscope-muted", "Hover or click the image or a heatmap."));
    return;
  }
  const [mh, mw] = decodedLayer.aggregates.shape.slice(-2);
  if (cell.row >= mh || cell.col >= mw) return;
  const at = (/** @type {any} */ d, /** @type {number} */ plane) =>
    d.values[plane * mh * mw + cell.row * mw + cell.col];
  const lines = [
    `cell row ${cell.row}, col ${cell.col}${layer.map_pool > 1 ? ` (pooled ${layer.map_pool}×${layer.map_pool})` : ""}`,
  ];
  if (channelMap) lines.push(`channel ${st.channel.channel}: ${at(channelMap, 0).toPrecision(4)}`);
  lines.push(
    layer.aggregate_names
      .map((name, plane) => `${AGGREGATE_LABELS[name] || name} ${at(decodedLayer.aggregates, plane).toPrecision(4)}`)
      .join(" · "),
  );
  const [, th, tw] = decodedLayer.tiles.shape;
  const f = layer.map_pool / layer.tile_pool;
  const tr = Math.min(th - 1, Math.floor(cell.row * f));
  const tc = Math.min(tw - 1, Math.floor(cell.col * f));
  const top = layer.topk.map((/** @type {number} */ c, /** @type {number} */ i) => {
    const v =
      layer.tile_min[i] +
      (decodedLayer.tiles.values[i * th * tw + tr * tw + tc] / 255) * (layer.tile_max[i] - layer.tile_min[i]);
    return `#${c} ≈ ${v.toPrecision(3)}`;
  });
  for (const line of lines) dom.valuesBox.append(h("div", undefined, line));
  dom.valuesBox.append(h("div", "layerscope-muted", `top channels: ${top.join(", ")}`));
}

/** Which panels show, and the hint above them. @param {Context} ctx */
export function drawLayout({ model, st, dom }) {
  const layer = st.layer;
  dom.valuesBox.hidden = layer.kind !== "maps";
  dom.statsBox.hidden = !layer.stats;
  dom.emptyHint.hidden = (model.get("hooked_modules") || []).length > 0;
  if (layer.kind === "never-called") {
    dom.emptyHint.hidden = false;
    dom.emptyHint.textContent = `${layer.module} never runs in the forward pass (a container or a branch not taken): hook its children.`;
  } else if (layer.kind === "pending") {
    dom.emptyHint.hidden = false;
    dom.emptyHint.textContent = `Capturing ${layer.module}…`;
  } else {
    dom.emptyHint.textContent = "Click a module in the tree to capture its output.";
  }
}

/** @type {import("./index.js").FrontPanel} */
export const layerPanel = {
  parts: { layout: drawLayout, histogram: drawHistogram, values: drawValues },
  affects: {
    _view_histogram: ["histogram"],
    _view_vector: ["histogram"],
    _layer: ["layout", "histogram", "values"],
    _channel: ["histogram", "values"],
    hooked_modules: ["layout"],
  },
  plotted: ["histogram"],
};
