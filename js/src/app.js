// The widget's controller in the browser: lays out the panels, draws the views from the synced
// traits, and links heatmaps and image on hover without asking the kernel.

import { channelGrid, classLegend, h, select, slider, statsTable } from "./controls.js";
import { COLORSCALES } from "./colors.js";
import { dataUrl, decode, rows } from "./decode.js";
import { cellAt, cellBox, overlayPlacement, receptiveBox } from "./geometry.js";
import { TreeView } from "./tree.js";
import { heatmapFigure, histogramFigure, imageFigure } from "./views.js";

/**
 * The slice of anywidget's model this view uses.
 * @typedef {{get: (name: string) => any, set: (name: string, value: any) => void,
 *   save_changes: () => void, on: (event: string, cb: () => void) => void,
 *   off: (event?: string | null, cb?: (() => void) | null) => void}} Model
 * @typedef {{react: (el: HTMLElement, data: any[], layout: any, config?: any) => Promise<any>,
 *   relayout: (el: HTMLElement, update: any) => Promise<any>, purge: (el: HTMLElement) => void,
 *   Plots: {resize: (el: HTMLElement) => any}}} PlotlyLike
 */

const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

/**
 * @param {HTMLElement} el
 * @returns {import("./views.js").Theme}
 */
function themeOf(el) {
  const style = getComputedStyle(el);
  const font = style.getPropertyValue("--jp-ui-font-color1").trim() || style.color || "#222";
  const grid = style.getPropertyValue("--jp-border-color2").trim() || "rgba(128,128,128,0.3)";
  const body = document.body;
  const dark = body.dataset.jpThemeLight === "false" || body.classList.contains("theme-dark");
  return { font, grid, dark };
}

/**
 * @param {{model: Model, el: HTMLElement, plotly: PlotlyLike}} ctx
 * @returns {() => void} cleanup
 */
export function createApp({ model, el, plotly }) {
  const root = h("div", "layerscope-root");
  el.append(root);
  const header = h("div", "layerscope-header");
  const title = h("span", "layerscope-title");
  const status = h("span", "layerscope-status");
  const progress = /** @type {HTMLProgressElement} */ (h("progress", "layerscope-progress"));
  progress.hidden = true;
  header.append(title, status, progress);
  const notice = h("div", "layerscope-notice");
  const error = h("div", "layerscope-error");
  error.setAttribute("role", "alert");
  const body = h("div", "layerscope-body");
  root.append(header, notice, error, body);

  const tree = new TreeView(body, {
    onToggle: (id) => {
      const hooked = /** @type {string[]} */ (model.get("hooked_modules"));
      const next = hooked.includes(id) ? hooked.filter((n) => n !== id) : [...hooked, id];
      model.set("hooked_modules", next);
      model.save_changes();
    },
    onSelect: (id) => set("selected_module", id),
  });

  const views = h("div", "layerscope-views");
  body.append(views);
  const toolbar = h("div", "layerscope-toolbar");
  const chips = h("div", "layerscope-chips");
  const panels = h("div", "layerscope-panels");
  const imagePlot = h("div", "layerscope-plot layerscope-plot-image");
  const channelPlot = h("div", "layerscope-plot layerscope-plot-channel");
  const aggregatePlot = h("div", "layerscope-plot layerscope-plot-aggregate");
  const histPlot = h("div", "layerscope-plot layerscope-plot-histogram");
  const scorePlot = h("div", "layerscope-plot layerscope-plot-score");
  const gridBox = h("div", "layerscope-panel layerscope-grid-panel");
  const statsBox = h("div", "layerscope-panel layerscope-stats-panel");
  const valuesBox = h("div", "layerscope-panel layerscope-values");
  const segBox = h("div", "layerscope-panel layerscope-seg-panel");
  const emptyHint = h("div", "layerscope-empty", "Click a module in the tree to capture its output.");
  panels.append(imagePlot, channelPlot, aggregatePlot, histPlot, gridBox, statsBox, valuesBox, segBox, scorePlot);
  views.append(chips, toolbar, emptyHint, panels);

  /** @param {string} name @param {any} value */
  function set(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  // Decoded payloads, refreshed only when their trait changes.
  /** @type {any} */
  let layer = {};
  /** @type {{aggregates?: any, tiles?: any}} */
  let decodedLayer = {};
  /** @type {any} */
  let channel = {};
  /** @type {any} */
  let channelMap = null;
  /** @type {any} */
  let scoreMap = null;
  let imageUrl = "";
  let maskUrl = "";
  /** @type {{row: number, col: number} | null} */
  let hoverCell = null;
  /** @type {{row: number, col: number} | null} */
  let pinnedCell = null;
  let drawCount = 0;

  function readLayer() {
    layer = model.get("_layer") || {};
    decodedLayer = layer.kind === "maps"
      ? { aggregates: decode(layer.aggregates), tiles: decode(layer.tiles) }
      : {};
  }
  function readChannel() {
    channel = model.get("_channel") || {};
    channelMap = channel.map ? decode(channel.map) : null;
  }
  function readImage() {
    const image = model.get("_image");
    imageUrl = image && image.jpeg ? dataUrl(image.jpeg, "image/jpeg") : "";
    const seg = model.get("_segmentation") || {};
    maskUrl = seg.mask_png ? dataUrl(seg.mask_png, "image/png") : "";
  }
  function readScore() {
    const s = model.get("_class_score") || {};
    scoreMap = s.map ? decode(s.map) : null;
  }

  function aggregateIndex() {
    return ["mean", "max", "l2"].indexOf(model.get("aggregate"));
  }

  /** The geometry of the current layer's displayed maps, for linking. */
  function linkInfo() {
    if (layer.kind !== "maps") return null;
    return { g: model.get("_geometry"), size: layer.map_size, pool: layer.map_pool };
  }

  function drawHeader() {
    title.textContent = model.get("_title");
    const st = model.get("_status") || {};
    if (st.state === "running") {
      status.textContent = st.total ? `running: ${st.done} / ${st.total} module calls` : `running… ${st.label || ""}`;
      progress.hidden = false;
      if (st.total) {
        progress.max = st.total;
        progress.value = st.done || 0;
      } else {
        progress.removeAttribute("value");
      }
    } else {
      progress.hidden = true;
      status.textContent = st.seconds !== undefined ? `last capture ${(st.seconds * 1000).toFixed(0)} ms` : "";
    }
    const n = model.get("_notice");
    notice.textContent = n;
    notice.hidden = !n;
    const e = model.get("_error");
    error.replaceChildren();
    error.hidden = !e;
    if (e) {
      const close = h("button", "layerscope-dismiss", "×");
      close.title = "dismiss";
      close.addEventListener("click", () => set("_error", ""));
      error.append(h("span", undefined, e), close);
    }
  }

  function drawTree() {
    tree.update(model.get("_tree") || [], model.get("hooked_modules"), model.get("selected_module"));
  }

  function drawToolbar() {
    const hooked = /** @type {string[]} */ (model.get("hooked_modules"));
    const selected = model.get("selected_module");
    chips.replaceChildren();
    for (const id of hooked) {
      const chip = h("span", "layerscope-chip");
      if (id === selected) chip.classList.add("layerscope-chip-selected");
      const pick = h("button", "layerscope-chip-name", id || "(whole model)");
      pick.addEventListener("click", () => set("selected_module", id));
      const drop = h("button", "layerscope-chip-drop", "×");
      drop.title = `unhook ${id}`;
      drop.addEventListener("click", () => set("hooked_modules", hooked.filter((n) => n !== id)));
      chip.append(pick, drop);
      chips.append(chip);
    }
    toolbar.replaceChildren();
    if (layer.calls > 1) {
      const calls = Array.from({ length: layer.calls }, (_, i) => /** @type {[string, string]} */ ([String(i), `call ${i + 1} of ${layer.calls}`]));
      toolbar.append(select("Call", calls, String(model.get("selected_call")), (v) => set("selected_call", Number(v))));
    }
    if (layer.kind === "maps") {
      toolbar.append(slider("Channel", { min: 0, max: layer.channels - 1, step: 1, value: model.get("selected_channel"), className: "layerscope-channel" },
        (v) => set("selected_channel", v)));
      toolbar.append(select("Aggregate", [["mean", "mean"], ["max", "max"], ["l2", "L2 norm"]], model.get("aggregate"), (v) => set("aggregate", v)));
    }
    /** @type {Array<[string, string]>} */
    const overlays = [["aggregate", "aggregate map"], ["channel", "channel map"], ["none", "none"]];
    if (maskUrl) overlays.splice(2, 0, ["mask", "predicted mask"]);
    toolbar.append(select("Overlay", overlays, model.get("overlay"), (v) => set("overlay", v)));
    toolbar.append(slider("Opacity", { min: 0, max: 1, step: 0.05, value: model.get("overlay_opacity") }, (v) => set("overlay_opacity", v)));
    toolbar.append(select("Colours", Object.keys(COLORSCALES).map((k) => /** @type {[string, string]} */ ([k, k])), model.get("colorscale"), (v) => set("colorscale", v)));
  }

  /** The map drawn over the image, in the current overlay mode. */
  function overlayData() {
    const mode = model.get("overlay");
    const info = linkInfo();
    if (!info || mode === "mask" || mode === "none") {
      if (!info) return null;
      // Still a transparent layer: it carries hover over the image.
      return { z: rows(decodedLayer.aggregates, 0), name: "", opacity: 0, info };
    }
    if (mode === "channel" && channelMap) return { z: rows(channelMap), name: `channel ${channel.channel}`, opacity: model.get("overlay_opacity"), info };
    return { z: rows(decodedLayer.aggregates, aggregateIndex()), name: model.get("aggregate"), opacity: model.get("overlay_opacity"), info };
  }

  /**
   * Outlines on the image for the hovered (or pinned) cell: its stride footprint (solid) and,
   * when known, its full receptive field (dashed), both clipped to the image.
   * @returns {Array<{box: import("./geometry.js").Box, color: string, dash?: string}>}
   */
  function imageBoxes() {
    const info = linkInfo();
    const cell = hoverCell || pinnedCell;
    if (!info || !cell) return [];
    /** @type {Array<{box: import("./geometry.js").Box, color: string, dash?: string}>} */
    const boxes = [{ box: cellBox(info.g, info.size, info.pool, cell.row, cell.col), color: "#ff3b30" }];
    if (layer.rf) {
      boxes.push({ box: receptiveBox(info.g, layer.rf, info.size, info.pool, cell.row, cell.col), color: "#ffcc00", dash: "dash" });
    }
    return boxes;
  }

  function drawImage() {
    const image = model.get("_image");
    if (!image || !imageUrl) return;
    const ov = overlayData();
    const mode = model.get("overlay");
    const fig = imageFigure({
      imageUrl, size: image.size, theme: themeOf(el),
      title: layer.module !== undefined && layer.kind === "maps" ? `${layer.module || "model"} on the image` : "Input image",
      overlay: ov ? { z: ov.z, placement: overlayPlacement(ov.info.g, ov.info.size, ov.info.pool), colorscale: model.get("colorscale"), opacity: ov.opacity, name: ov.name } : null,
      maskUrl: mode === "mask" || (!ov && maskUrl) ? maskUrl : null,
      maskOpacity: model.get("overlay_opacity"),
      boxes: imageBoxes(),
    });
    react(imagePlot, fig);
  }

  function drawMaps() {
    const maps = layer.kind === "maps";
    for (const p of [channelPlot, aggregatePlot, histPlot, gridBox, statsBox, valuesBox]) p.hidden = !maps && !(p === histPlot || p === statsBox) ;
    emptyHint.hidden = (model.get("hooked_modules") || []).length > 0;
    if (layer.kind === "never-called") {
      emptyHint.hidden = false;
      emptyHint.textContent = `${layer.module} never runs in the forward pass (a container or a branch not taken): hook its children.`;
    } else {
      emptyHint.textContent = "Click a module in the tree to capture its output.";
    }
    histPlot.hidden = !layer.histogram;
    statsBox.hidden = !layer.stats;
    const theme = themeOf(el);
    const mark = hoverCell || pinnedCell;
    const cs = model.get("colorscale");
    if (maps && channelMap) {
      react(channelPlot, heatmapFigure({ z: rows(channelMap), title: `${layer.module} · channel ${channel.channel} of ${layer.channels}`, colorscale: cs, theme, mark }));
    }
    if (maps) {
      react(aggregatePlot, heatmapFigure({ z: rows(decodedLayer.aggregates, aggregateIndex()), title: `${layer.module} · ${model.get("aggregate")} over ${layer.channels} channels`, colorscale: cs, theme, mark }));
      gridBox.replaceChildren(h("div", "layerscope-panel-title", `Top ${layer.topk.length} channels by mean activation`),
        channelGrid({ tiles: decodedLayer.tiles, topk: layer.topk, tileMin: layer.tile_min, tileMax: layer.tile_max, selected: model.get("selected_channel"), colorscale: cs, onPick: (c) => set("selected_channel", c) }));
    }
    if (layer.histogram) {
      react(histPlot, histogramFigure({ layer: layer.histogram, channel: channel.histogram || null, channelName: `channel ${channel.channel}`, theme }));
      const rf = layer.rf ? `receptive field ${layer.rf.size.map(Math.round).join("×")} px, stride ${layer.rf.stride.map((/** @type {number} */ v) => +v.toFixed(2)).join("×")}` : "";
      statsBox.replaceChildren(h("div", "layerscope-panel-title", `${layer.module || "model"} · ${layer.cls} · ${layer.shape ? layer.shape.join("×") : ""}`),
        h("div", "layerscope-muted", rf), statsTable([["layer", layer.stats], ["channel", channel.stats]]));
    }
    drawValues();
  }

  function drawValues() {
    const cell = hoverCell || pinnedCell;
    valuesBox.replaceChildren(h("div", "layerscope-panel-title", "Values at a location"));
    if (!cell || layer.kind !== "maps") {
      valuesBox.append(h("div", "layerscope-muted", "Hover or click the image or a heatmap."));
      return;
    }
    const [mh, mw] = decodedLayer.aggregates.shape.slice(-2);
    if (cell.row >= mh || cell.col >= mw) return;
    const at = (/** @type {any} */ d, /** @type {number} */ plane) => d.values[plane * mh * mw + cell.row * mw + cell.col];
    const lines = [`cell row ${cell.row}, col ${cell.col}${layer.map_pool > 1 ? ` (pooled ${layer.map_pool}×${layer.map_pool})` : ""}`];
    if (channelMap) lines.push(`channel ${channel.channel}: ${at(channelMap, 0).toPrecision(4)}`);
    lines.push(`mean ${at(decodedLayer.aggregates, 0).toPrecision(4)} · max ${at(decodedLayer.aggregates, 1).toPrecision(4)} · L2 ${at(decodedLayer.aggregates, 2).toPrecision(4)}`);
    const [, th, tw] = decodedLayer.tiles.shape;
    const f = layer.map_pool / layer.tile_pool;
    const tr = Math.min(th - 1, Math.floor(cell.row * f));
    const tc = Math.min(tw - 1, Math.floor(cell.col * f));
    const top = layer.topk.map((/** @type {number} */ c, /** @type {number} */ i) => {
      const v = layer.tile_min[i] + (decodedLayer.tiles.values[i * th * tw + tr * tw + tc] / 255) * (layer.tile_max[i] - layer.tile_min[i]);
      return `#${c} ≈ ${v.toPrecision(3)}`;
    });
    for (const line of lines) valuesBox.append(h("div", undefined, line));
    valuesBox.append(h("div", "layerscope-muted", `top channels: ${top.join(", ")}`));
  }

  function drawSegmentation() {
    const seg = model.get("_segmentation") || {};
    segBox.hidden = !seg.legend;
    scorePlot.hidden = !scoreMap;
    if (!seg.legend) return;
    const score = model.get("_class_score") || {};
    segBox.replaceChildren(h("div", "layerscope-panel-title", "Predicted classes (click for the score map)"),
      classLegend(seg.legend, score.class, (i) => set("selected_class", i)));
    if (scoreMap) {
      react(scorePlot, heatmapFigure({ z: rows(scoreMap), title: `P(${score.name}) per pixel`, colorscale: model.get("colorscale"), theme: themeOf(el), zmin: 0, zmax: 1 }));
    }
  }

  /** @param {HTMLElement} plot @param {import("./views.js").Figure} fig */
  function react(plot, fig) {
    plotly.react(plot, fig.data, fig.layout, CONFIG);
  }

  function drawAll() {
    drawHeader();
    drawTree();
    drawToolbar();
    drawImage();
    drawMaps();
    drawSegmentation();
    markDrawn();
  }

  function markDrawn() {
    drawCount += 1;
    el.dataset.layerscopeDrawn = `${layer.module ?? ""}|${channel.channel ?? ""}|${drawCount}`;
  }

  /** @param {{row: number, col: number} | null} cell */
  function linkCell(cell) {
    hoverCell = cell;
    const boxes = imageBoxes();
    const shapes = (/** @type {HTMLElement & {layout?: any}} */ (imagePlot)).layout ? imageFigure({ imageUrl, size: model.get("_image").size, theme: themeOf(el), title: "", boxes }).layout.shapes : [];
    plotly.relayout(imagePlot, { shapes });
    const mark = cell || pinnedCell;
    const markShapes = mark ? heatmapFigure({ z: [], title: "", colorscale: "Viridis", theme: themeOf(el), mark }).layout.shapes : [];
    for (const p of [channelPlot, aggregatePlot]) {
      if ((/** @type {any} */ (p)).layout) plotly.relayout(p, { shapes: markShapes });
    }
    drawValues();
    imagePlot.dataset.box = boxes.length ? JSON.stringify(boxes[0].box) : "";
    imagePlot.dataset.receptiveBox = boxes.length > 1 ? JSON.stringify(boxes[1].box) : "";
  }

  // Linking, all in the browser: heatmap cell -> image footprint; image point -> cell.
  /** @param {any} ev */
  const onMapHover = (ev) => {
    const p = ev && ev.points && ev.points[0];
    if (p) linkCell({ row: Math.round(p.y), col: Math.round(p.x) });
  };
  /** @param {any} ev */
  const onImageHover = (ev) => {
    const info = linkInfo();
    const p = ev && ev.points && ev.points[0];
    if (!info || !p) return;
    linkCell(cellAt(info.g, info.size, info.pool, p.y, p.x));
  };
  /** @param {any} ev */
  const onImageClick = (ev) => {
    const info = linkInfo();
    const p = ev && ev.points && ev.points[0];
    if (!info || !p) return;
    pinnedCell = cellAt(info.g, info.size, info.pool, p.y, p.x);
    linkCell(pinnedCell);
  };
  const onUnhover = () => linkCell(null);
  /** @type {Array<[HTMLElement, string, (ev: any) => void]>} */
  const plotEvents = [
    [channelPlot, "plotly_hover", onMapHover], [aggregatePlot, "plotly_hover", onMapHover],
    [channelPlot, "plotly_unhover", onUnhover], [aggregatePlot, "plotly_unhover", onUnhover],
    [imagePlot, "plotly_hover", onImageHover], [imagePlot, "plotly_click", onImageClick],
    [imagePlot, "plotly_unhover", onUnhover],
  ];
  // Plotly attaches `.on` to a plot element on its first draw.
  function bindPlotEvents() {
    for (const [plot, name, fn] of plotEvents) {
      const p = /** @type {any} */ (plot);
      if (p.on && !p.__layerscopeBound?.has(name)) {
        p.on(name, fn);
        p.__layerscopeBound = p.__layerscopeBound || new Set();
        p.__layerscopeBound.add(name);
      }
    }
  }

  /** @type {Array<[string, () => void]>} */
  const handlers = [
    ["change:_layer", () => { readLayer(); hoverCell = null; pinnedCell = null; drawToolbar(); drawImage(); drawMaps(); markDrawn(); bindPlotEvents(); }],
    ["change:_channel", () => { readChannel(); drawToolbar(); drawImage(); drawMaps(); markDrawn(); bindPlotEvents(); }],
    ["change:_class_score", () => { readScore(); drawSegmentation(); }],
    ["change:_segmentation", () => { readImage(); drawImage(); drawSegmentation(); }],
    ["change:_image", () => { readImage(); drawImage(); }],
    ["change:_tree", drawTree],
    ["change:hooked_modules", () => { drawTree(); drawToolbar(); drawMaps(); }],
    ["change:selected_module", () => { drawTree(); drawToolbar(); }],
    ["change:_status", drawHeader],
    ["change:_error", drawHeader],
    ["change:_notice", drawHeader],
    ["change:aggregate", () => { drawImage(); drawMaps(); }],
    ["change:overlay", () => { drawToolbar(); drawImage(); }],
    ["change:overlay_opacity", drawImage],
    ["change:colorscale", () => { drawImage(); drawMaps(); drawSegmentation(); }],
  ];
  for (const [name, fn] of handlers) model.on(name, fn);

  // Plots are first drawn before the widget is in the page (no width yet) and cells change
  // size with the notebook: follow each plot's box.
  const sizeWatch = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const plot = /** @type {HTMLElement & {layout?: any}} */ (entry.target);
      if (plot.layout && entry.contentRect.width > 0) plotly.Plots.resize(plot);
    }
  });
  for (const p of [imagePlot, channelPlot, aggregatePlot, histPlot, scorePlot]) sizeWatch.observe(p);

  // Follow JupyterLab's theme switches.
  const themeWatch = new MutationObserver(() => { drawImage(); drawMaps(); drawSegmentation(); });
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });

  readLayer();
  readChannel();
  readImage();
  readScore();
  drawAll();
  bindPlotEvents();

  return () => {
    for (const [name, fn] of handlers) model.off(name, fn);
    themeWatch.disconnect();
    sizeWatch.disconnect();
    for (const p of [imagePlot, channelPlot, aggregatePlot, histPlot, scorePlot]) plotly.purge(p);
    root.remove();
  };
}
