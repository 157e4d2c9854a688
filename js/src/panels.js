// The views: the image with its overlay, the heatmaps, the channel grid, the histograms and
// statistics, the values at a location, the segmentation legend or the top predictions.

import { AGGREGATE_LABELS } from "./contract.js";
import { channelGrid, classLegend, h, statsTable } from "./controls.js";
import { rows } from "./decode.js";
import { overlayPlacement } from "./geometry.js";
import { barFigure, heatmapFigure, histogramFigure, imageFigure, importanceFigure } from "./views.js";

/** @typedef {import("./context.js").Context} Context */

/** @param {Context} ctx */
export function drawImage({ model, st, dom, react, theme }) {
  const image = model.get("_image");
  if (!image?.size || !st.imageUrl) return;
  const layer = st.layer;
  const ov = st.overlayData();
  const mode = model.get("overlay");
  const fig = imageFigure({
    imageUrl: st.imageUrl,
    size: image.size,
    theme: theme(),
    title: layer.kind === "maps" ? `${layer.module || "model"} on the image` : "Input image",
    overlay: ov
      ? {
          z: ov.z,
          placement: overlayPlacement(ov.info.g, ov.info.size, ov.info.pool),
          colorscale: model.get("colorscale"),
          opacity: ov.opacity,
          name: ov.name,
        }
      : null,
    // With channels ablated, the mask is the edited prediction and the changed pixels stand out.
    maskUrl: mode === "mask" || (!ov && st.maskUrl) ? st.editedMaskUrl || st.maskUrl : null,
    maskOpacity: model.get("overlay_opacity"),
    highlightUrl: st.changedUrl || null,
    boxes: st.imageBoxes(),
  });
  const region = /** @type {number[]} */ (model.get("gradcam_region"));
  if (mode === "gradcam" && region.length === 4) {
    fig.layout.shapes.push({
      type: "rect",
      xref: "x",
      yref: "y",
      y0: region[0],
      x0: region[1],
      y1: region[2],
      x1: region[3],
      line: { color: "#00e5ff", width: 2, dash: "dot" },
    });
  }
  fig.layout.dragmode = st.drawingRegion ? "select" : "zoom";
  react(dom.imagePlot, fig);
}

/** Which panels show, and the hint above them. @param {Context} ctx */
export function drawLayout({ model, st, dom }) {
  const layer = st.layer;
  const maps = layer.kind === "maps";
  for (const p of [dom.aggregatePlot, dom.gridBox, dom.valuesBox]) p.hidden = !maps;
  dom.channelPlot.hidden = !maps && layer.kind !== "vector";
  dom.gradPlot.hidden = !(
    model.get("overlay") === "gradcam" &&
    st.gradcam.histogram &&
    st.gradcam.module === layer.module
  );
  dom.histPlot.hidden = !layer.histogram;
  dom.statsBox.hidden = !layer.stats;
  const imp = model.get("_importance") || {};
  dom.importancePlot.hidden = !(model.get("show_importance") && imp.module === layer.module);
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

/** The selected channel's heatmap, or a vector's top entries as bars. @param {Context} ctx */
export function drawChannel({ model, st, dom, react, theme }) {
  const layer = st.layer;
  if (layer.kind === "vector") {
    const labels = layer.top_index.map((/** @type {number} */ i, /** @type {number} */ k) =>
      layer.top_label ? `${layer.top_label[k]} (${i})` : `#${i}`,
    );
    const hover = layer.top_probability
      ? layer.top_probability.map((/** @type {number} */ p) => `p = ${(p * 100).toFixed(1)}%`)
      : undefined;
    react(
      dom.channelPlot,
      barFigure({
        labels,
        values: layer.top_value,
        hover,
        title: `${layer.module || "model"} · top ${layer.top_index.length} of ${layer.length}`,
        theme: theme(),
      }),
    );
    return;
  }
  if (layer.kind !== "maps" || !st.channelMap || !st.channelFits()) return;
  react(
    dom.channelPlot,
    heatmapFigure({
      z: rows(st.channelMap),
      title: `${layer.module} · channel ${st.channel.channel} of ${layer.channels}`,
      colorscale: model.get("colorscale"),
      theme: theme(),
      mark: st.cell(),
    }),
  );
}

/** @param {Context} ctx */
export function drawAggregate({ model, st, dom, react, theme }) {
  const layer = st.layer;
  if (layer.kind !== "maps") return;
  react(
    dom.aggregatePlot,
    heatmapFigure({
      z: rows(st.decodedLayer.aggregates, st.aggregateIndex()),
      title: `${layer.module} · ${model.get("aggregate")} over ${layer.channels} channels`,
      colorscale: model.get("colorscale"),
      theme: theme(),
      mark: st.cell(),
    }),
  );
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

/** @param {Context} ctx */
export function drawGrid(ctx) {
  const { model, st, dom, set } = ctx;
  const layer = st.layer;
  if (layer.kind !== "maps") return;
  dom.gridBox.replaceChildren(
    h("div", "layerscope-panel-title", `Top ${layer.topk.length} channels by mean activation`),
    channelGrid({
      tiles: st.decodedLayer.tiles,
      topk: layer.topk,
      tileMin: layer.tile_min,
      tileMax: layer.tile_max,
      selected: model.get("selected_channel"),
      colorscale: model.get("colorscale"),
      ablated: model.get("ablations")?.[layer.module] || [],
      onPick: (c) => set("selected_channel", c),
      onAblate: (c) => toggleAblation(ctx, layer.module, c),
    }),
  );
}

/** @param {Context} ctx */
export function drawGradient({ st, dom, react, theme }) {
  const gc = st.gradcam;
  if (dom.gradPlot.hidden || !gc.histogram) return;
  react(
    dom.gradPlot,
    histogramFigure({
      layer: gc.histogram,
      channel: null,
      channelName: "",
      theme: theme(),
      title: `Gradient of P(${gc.name}) at ${gc.module}`,
      name: "gradient",
    }),
  );
}

/** The value histogram and the statistics table. @param {Context} ctx */
export function drawHistogram({ st, dom, react, theme }) {
  const layer = st.layer;
  if (!layer.histogram) return;
  const ch = st.channelFits() ? st.channel : {};
  react(
    dom.histPlot,
    histogramFigure({
      layer: layer.histogram,
      channel: ch.histogram || null,
      channelName: `channel ${ch.channel}`,
      theme: theme(),
    }),
  );
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
export function drawSegmentation({ model, st, dom, set, react, theme }) {
  const seg = model.get("_segmentation") || {};
  const pred = model.get("_prediction") || {};
  dom.segBox.hidden = !seg.legend && !pred.top_index;
  dom.scorePlot.hidden = !st.scoreMap;
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
  if (st.scoreMap) {
    react(
      dom.scorePlot,
      heatmapFigure({
        z: rows(st.scoreMap),
        title: `P(${score.name}) per pixel`,
        colorscale: model.get("colorscale"),
        theme: theme(),
        zmin: 0,
        zmax: 1,
      }),
    );
  }
}

/** The selected module's channels by their effect on the class score. @param {Context} ctx */
export function drawImportance({ model, dom, react, theme }) {
  const imp = model.get("_importance") || {};
  if (dom.importancePlot.hidden || !imp.channels) return;
  const rho =
    imp.rank_correlation === null || imp.rank_correlation === undefined
      ? ""
      : ` · rank correlation ${imp.rank_correlation.toFixed(2)}`;
  react(
    dom.importancePlot,
    importanceFigure({
      channels: imp.channels,
      estimate: imp.estimate || [],
      exact: imp.exact || [],
      selected: model.get("selected_channel"),
      title: `${imp.module} · drop of the ${imp.name} score when a channel is zeroed${rho} (click a bar)`,
      theme: theme(),
    }),
  );
}
