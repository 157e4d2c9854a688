// The views: each drawn from the spec the kernel sent for it (`_view_<name>`, defined once in
// layerscope/widget/spec.py and the panels), plus what only the browser has: the marks of the
// hovered cell, the values at a location, the statistics table and the class legend.

import { AGGREGATE_LABELS } from "./contract.js";
import { channelGrid, classLegend, h, statsTable } from "./controls.js";
import { cellMark, drawable, hasView } from "./spec.js";

/** @typedef {import("./context.js").Context} Context */

/**
 * Draw view `name` into `plot` as the kernel defined it (hidden when it sent none); `decorate`
 * adds what linking marks. The spec's own shapes are kept on the plot for later marks.
 * @param {Context} ctx
 * @param {HTMLElement & {specShapes?: any[]}} plot
 * @param {string} name
 * @param {(fig: import("./spec.js").Figure) => void} [decorate]
 */
export function drawView(ctx, plot, name, decorate) {
  const spec = ctx.model.get(`_view_${name}`);
  plot.hidden = !hasView(spec);
  if (!hasView(spec)) return;
  const fig = drawable(spec, ctx.theme(), (ref) => ctx.st.picture(ref));
  // The box takes the view's height, so plotly's autosize (on every resize) keeps it.
  if (fig.layout.height) plot.style.height = `${fig.layout.height}px`;
  plot.specShapes = fig.layout.shapes;
  decorate?.(fig);
  ctx.react(plot, fig);
}

/**
 * A shape list: the spec's own, then `marks`.
 * @param {HTMLElement & {specShapes?: any[]}} plot
 * @param {any[]} marks
 */
export function withMarks(plot, marks) {
  return [...(plot.specShapes || []), ...marks];
}

/** The photo, with the hovered cell's footprint and receptive field. @param {Context} ctx */
export function drawImage(ctx) {
  const { st, dom } = ctx;
  drawView(ctx, dom.imagePlot, "image", (fig) => {
    fig.layout.shapes = [...fig.layout.shapes, ...st.imageShapes()];
    fig.layout.dragmode = st.drawingRegion ? "select" : "zoom";
  });
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

/** The selected channel's heatmap and the aggregate map, the hovered cell marked. @param {Context} ctx */
export function drawMaps(ctx) {
  const mark = cellMark(ctx.st.cell());
  for (const [plot, name] of /** @type {Array<[HTMLElement, string]>} */ ([
    [ctx.dom.channelPlot, "channel"],
    [ctx.dom.aggregatePlot, "aggregate"],
  ])) {
    drawView(ctx, plot, name, (fig) => {
      fig.layout.shapes = [...fig.layout.shapes, ...mark];
    });
  }
}

/**
 * Toggle one channel of a module in the `ablations` trait (a tile's shift-click, the toolbar).
 * @param {Pick<Context, "model" | "set">} ctx
 * @param {string} module
 * @param {number} channel
 */
export function toggleAblation({ model, set }, module, channel) {
  const all = { ...(model.get("ablations") || {}) };
  const mine = new Set(all[module] || []);
  if (mine.has(channel)) mine.delete(channel);
  else mine.add(channel);
  if (mine.size) all[module] = [...mine].sort((a, b) => a - b);
  else delete all[module];
  set("ablations", all);
}

/** The top channels' tiles, drawn from the grid view's traces. @param {Context} ctx */
export function drawGrid(ctx) {
  const { model, dom, set } = ctx;
  const spec = model.get("_view_grid");
  dom.gridBox.hidden = !hasView(spec);
  if (!hasView(spec)) return;
  const module = ctx.st.layer.module ?? "";
  dom.gridBox.replaceChildren(
    h("div", "layerscope-panel-title", spec.layout.title.text),
    channelGrid({
      traces: spec.data,
      selected: model.get("selected_channel"),
      ablated: model.get("ablations")?.[module] || [],
      onPick: (c) => set("selected_channel", c),
      onAblate: (c) => toggleAblation(ctx, module, c),
    }),
  );
}

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

/** The segmentation legend and score map, or a classifier's top predictions. @param {Context} ctx */
export function drawSegmentation(ctx) {
  const { model, st, dom, set } = ctx;
  const seg = model.get("_segmentation") || {};
  const pred = model.get("_prediction") || {};
  dom.segBox.hidden = !seg.legend && !pred.top_index;
  drawView(ctx, dom.scorePlot, "score");
  /**
   * The panel: a title, the classes to click (a click selects one), what else it says.
   * @param {string} title @param {any[]} entries @param {number} selected @param {HTMLElement[]} more
   */
  const show = (title, entries, selected, ...more) =>
    dom.segBox.replaceChildren(
      h("div", "layerscope-panel-title", title),
      classLegend(entries, selected, (i) => set("selected_class", i)),
      ...more,
    );
  if (!seg.legend && pred.top_index && st.ablation.kind === "classification" && st.ablation.scores) {
    const entries = st.ablation.scores.map((e) => ({
      index: e.index,
      name: `${e.label} ${e.before.toPrecision(3)} → ${e.after.toPrecision(3)}`,
      color: "#e45756",
      fraction: Number.NaN,
    }));
    show("Top scores with channels ablated (before → after)", entries, model.get("selected_class"));
    return;
  }
  if (!seg.legend && pred.top_index) {
    const entries = pred.top_index.map((i, k) => ({
      index: i,
      name: pred.top_label?.[k] ?? `#${i}`,
      color: "#4c78a8",
      fraction: pred.top_probability?.[k] ?? 0,
    }));
    show("Top predictions (click one to explain it with Grad-CAM)", entries, model.get("selected_class"));
    return;
  }
  if (!seg.legend) return;
  const score = model.get("_class_score") || {};
  const ab = st.ablation;
  if (ab.kind === "segmentation" && ab.shares) {
    const n = Object.values(ab.ablations || {}).reduce((a, v) => a + v.length, 0);
    const pct = (/** @type {number} */ f) => `${(f * 100).toFixed(1)}%`;
    const entries = ab.shares.map((e) => ({
      index: e.index,
      name: `${e.name} ${pct(e.before)} →`,
      color: e.color,
      fraction: e.after,
    }));
    const names = Object.fromEntries((seg.classes || []).map((c, i) => [i, c]));
    const moves = (ab.transitions || [])
      .map((t) => `${names[t.before]} → ${names[t.after]}: ${t.pixels} px`)
      .join(" · ");
    show(
      `With ${n} channel(s) ablated: ${pct(ab.changed_fraction ?? 0)} of pixels changed class (highlighted on the photo)`,
      entries,
      score.class ?? -1,
      h("div", "layerscope-muted layerscope-transitions", moves),
    );
  } else {
    show("Predicted classes (click for the score map)", seg.legend, score.class ?? -1);
  }
}

/** The selected module's channels by their effect on the class score. @param {Context} ctx */
export function drawImportance(ctx) {
  drawView(ctx, ctx.dom.importancePlot, "importance");
}

/** The gradient's histogram beside Grad-CAM. @param {Context} ctx */
export function drawGradient(ctx) {
  drawView(ctx, ctx.dom.gradPlot, "gradient");
}

/** The Dataset panel: the top patches and the channels' dataset means. @param {Context} ctx */
export function drawDataset(ctx) {
  drawView(ctx, ctx.dom.datasetPlot, "dataset");
}
