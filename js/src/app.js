// The widget's controller in the browser: lays out the panels, draws the views from the synced
// traits, and links heatmaps and image on hover without asking the kernel.

import { channelGrid, classLegend, h, select, slider, statsTable } from "./controls.js";
import { COLORSCALES } from "./colors.js";
import { dataUrl, decode, rows } from "./decode.js";
import { cellAt, cellBox, overlayPlacement, receptiveBox } from "./geometry.js";
import { TreeView } from "./tree.js";
import { barFigure, heatmapFigure, histogramFigure, imageFigure } from "./views.js";

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
  const imageControls = h("span", "layerscope-image-controls");
  header.append(title, imageControls, status, progress);
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
  const gradPlot = h("div", "layerscope-plot layerscope-plot-gradient");
  const gridBox = h("div", "layerscope-panel layerscope-grid-panel");
  const statsBox = h("div", "layerscope-panel layerscope-stats-panel");
  const valuesBox = h("div", "layerscope-panel layerscope-values");
  const segBox = h("div", "layerscope-panel layerscope-seg-panel");
  const emptyHint = h("div", "layerscope-empty", "Click a module in the tree to capture its output.");
  panels.append(imagePlot, channelPlot, aggregatePlot, histPlot, gradPlot, gridBox, statsBox, valuesBox, segBox, scorePlot);
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
  /** @type {any} */
  let gradcam = {};
  /** @type {any} */
  let gradcamMap = null;
  let drawingRegion = false;
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
  function readGradcam() {
    gradcam = model.get("_gradcam") || {};
    gradcamMap = gradcam.map ? decode(gradcam.map) : null;
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

  /** The image chooser: bundled samples, an upload button, drag and drop on the photo. */
  function drawImageControls() {
    const samples = /** @type {string[]} */ (model.get("_samples") || []);
    const current = model.get("image_name");
    /** @type {Array<[string, string]>} */
    const options = samples.map((n) => /** @type {[string, string]} */ ([n, n]));
    if (current && !samples.includes(current)) options.push([current, current]);
    if (!current) options.unshift(["", "(your image)"]);
    const chooser = select("Image", options, current, (v) => { if (v && samples.includes(v)) set("image_name", v); });
    const file = /** @type {HTMLInputElement} */ (h("input", "layerscope-file"));
    file.type = "file";
    file.accept = "image/*";
    file.hidden = true;
    const upload = h("button", "layerscope-button layerscope-upload", "Upload…");
    upload.title = "Choose an image file, or drop one on the photo";
    upload.addEventListener("click", () => file.click());
    file.addEventListener("change", () => { if (file.files && file.files[0]) sendFile(file.files[0]); });
    imageControls.replaceChildren(chooser, upload, file);
  }

  /** @param {File} f */
  async function sendFile(f) {
    const data = await f.arrayBuffer();
    set("_upload", { name: f.name, data: new DataView(data) });
  }

  imagePlot.addEventListener("dragover", (e) => { e.preventDefault(); imagePlot.classList.add("layerscope-drop"); });
  imagePlot.addEventListener("dragleave", () => imagePlot.classList.remove("layerscope-drop"));
  imagePlot.addEventListener("drop", (e) => {
    e.preventDefault();
    imagePlot.classList.remove("layerscope-drop");
    const f = e.dataTransfer && e.dataTransfer.files[0];
    if (f) sendFile(f);
  });

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
    if (layer.frames) {
      toolbar.append(slider("Frame", { min: 0, max: layer.frames - 1, step: 1, value: model.get("selected_frame") }, (v) => set("selected_frame", v)));
    }
    /** @type {Array<[string, string]>} */
    const overlays = [["aggregate", "aggregate map"], ["channel", "channel map"], ["none", "none"]];
    if (maskUrl) overlays.splice(2, 0, ["mask", "predicted mask"]);
    const scored = maskUrl || (model.get("_prediction") || {}).top_index;
    if (scored) overlays.splice(overlays.length - 1, 0, ["gradcam", "Grad-CAM"]);
    toolbar.append(select("Overlay", overlays, model.get("overlay"), (v) => set("overlay", v)));
    if (model.get("overlay") === "gradcam" && maskUrl) {
      const region = /** @type {number[]} */ (model.get("gradcam_region"));
      const draw = h("button", "layerscope-button layerscope-draw-region", drawingRegion ? "Drag a box on the image…" : "Draw region");
      draw.addEventListener("click", () => { drawingRegion = !drawingRegion; schedule(["toolbar", "image"]); });
      toolbar.append(draw);
      if (region.length) {
        const clear = h("button", "layerscope-button layerscope-clear-region", "Clear region");
        clear.addEventListener("click", () => set("gradcam_region", []));
        toolbar.append(clear);
      }
    }
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
    if (mode === "gradcam") {
      if (gradcamMap && gradcam.module === layer.module) {
        const own = { g: info.g, size: gradcam.map_size, pool: gradcam.map_pool };
        return { z: rows(gradcamMap), name: `Grad-CAM: ${gradcam.name}`, opacity: model.get("overlay_opacity"), info: own };
      }
      return { z: rows(decodedLayer.aggregates, 0), name: "", opacity: 0, info };
    }
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
    const region = /** @type {number[]} */ (model.get("gradcam_region"));
    if (model.get("overlay") === "gradcam" && region.length === 4) {
      fig.layout.shapes.push({ type: "rect", xref: "x", yref: "y", y0: region[0], x0: region[1], y1: region[2], x1: region[3], line: { color: "#00e5ff", width: 2, dash: "dot" } });
    }
    fig.layout.dragmode = drawingRegion ? "select" : "zoom";
    react(imagePlot, fig);
  }

  /** Which panels show, and the hint above them. */
  function drawLayout() {
    const maps = layer.kind === "maps";
    for (const p of [aggregatePlot, gridBox, valuesBox]) p.hidden = !maps;
    channelPlot.hidden = !maps && layer.kind !== "vector";
    gradPlot.hidden = !(model.get("overlay") === "gradcam" && gradcam.histogram && gradcam.module === layer.module);
    histPlot.hidden = !layer.histogram;
    statsBox.hidden = !layer.stats;
    emptyHint.hidden = (model.get("hooked_modules") || []).length > 0;
    if (layer.kind === "never-called") {
      emptyHint.hidden = false;
      emptyHint.textContent = `${layer.module} never runs in the forward pass (a container or a branch not taken): hook its children.`;
    } else {
      emptyHint.textContent = "Click a module in the tree to capture its output.";
    }
  }

  /** A channel payload drawn beside its own layer only (they arrive as one message). */
  function channelFits() {
    return channel.module === layer.module && channel.call === layer.call;
  }

  function drawChannel() {
    if (layer.kind === "vector") {
      const labels = layer.top_index.map((/** @type {number} */ i, /** @type {number} */ k) => layer.top_label ? `${layer.top_label[k]} (${i})` : `#${i}`);
      const hover = layer.top_probability ? layer.top_probability.map((/** @type {number} */ p) => `p = ${(p * 100).toFixed(1)}%`) : undefined;
      react(channelPlot, barFigure({ labels, values: layer.top_value, hover, title: `${layer.module || "model"} · top ${layer.top_index.length} of ${layer.length}`, theme: themeOf(el) }));
      return;
    }
    if (layer.kind !== "maps" || !channelMap || !channelFits()) return;
    react(channelPlot, heatmapFigure({ z: rows(channelMap), title: `${layer.module} · channel ${channel.channel} of ${layer.channels}`, colorscale: model.get("colorscale"), theme: themeOf(el), mark: hoverCell || pinnedCell }));
  }

  function drawAggregate() {
    if (layer.kind !== "maps") return;
    react(aggregatePlot, heatmapFigure({ z: rows(decodedLayer.aggregates, aggregateIndex()), title: `${layer.module} · ${model.get("aggregate")} over ${layer.channels} channels`, colorscale: model.get("colorscale"), theme: themeOf(el), mark: hoverCell || pinnedCell }));
  }

  function drawGrid() {
    if (layer.kind !== "maps") return;
    gridBox.replaceChildren(h("div", "layerscope-panel-title", `Top ${layer.topk.length} channels by mean activation`),
      channelGrid({ tiles: decodedLayer.tiles, topk: layer.topk, tileMin: layer.tile_min, tileMax: layer.tile_max, selected: model.get("selected_channel"), colorscale: model.get("colorscale"), onPick: (c) => set("selected_channel", c) }));
  }

  function drawGradient() {
    if (gradPlot.hidden || !gradcam.histogram) return;
    react(gradPlot, histogramFigure({ layer: gradcam.histogram, channel: null, channelName: "", theme: themeOf(el), title: `Gradient of P(${gradcam.name}) at ${gradcam.module}`, name: "gradient" }));
  }

  function drawHistogram() {
    if (!layer.histogram) return;
    const ch = channelFits() ? channel : {};
    react(histPlot, histogramFigure({ layer: layer.histogram, channel: ch.histogram || null, channelName: `channel ${ch.channel}`, theme: themeOf(el) }));
    const rf = layer.rf ? `receptive field ${layer.rf.size.map(Math.round).join("×")} px, stride ${layer.rf.stride.map((/** @type {number} */ v) => +v.toFixed(2)).join("×")}` : "";
    statsBox.replaceChildren(h("div", "layerscope-panel-title", `${layer.module || "model"} · ${layer.cls} · ${layer.shape ? layer.shape.join("×") : ""}`),
      h("div", "layerscope-muted", rf),
      h("div", "layerscope-muted", layer.grid ? `${layer.tokens} tokens: ${layer.class_token ? "a class token (kept apart) and " : ""}${layer.grid.join("×")} patches, shown on their grid` : ""),
      statsTable([["layer", layer.stats], ["channel", ch.stats], ...(layer.class_token_stats ? [/** @type {[string, any]} */ (["class token", layer.class_token_stats])] : [])]));
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
    const pred = model.get("_prediction") || {};
    segBox.hidden = !seg.legend && !pred.top_index;
    scorePlot.hidden = !scoreMap;
    if (!seg.legend && pred.top_index) {
      const entries = pred.top_index.map((/** @type {number} */ i, /** @type {number} */ k) => ({ index: i, name: pred.top_label[k], color: "#4c78a8", fraction: pred.top_probability[k] }));
      segBox.replaceChildren(h("div", "layerscope-panel-title", "Top predictions (click one to explain it with Grad-CAM)"),
        classLegend(entries, model.get("selected_class"), (i) => set("selected_class", i)));
      return;
    }
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

  // Trait changes mark the parts they affect; one animation frame draws each part once, however
  // many traits a message changed.
  /** @type {Record<string, Array<() => void>>} */
  const PARTS = {
    header: [drawHeader], images: [drawImageControls], tree: [drawTree], toolbar: [drawToolbar], layout: [drawLayout],
    image: [drawImage], channel: [drawChannel], aggregate: [drawAggregate], grid: [drawGrid],
    histogram: [drawHistogram], gradient: [drawGradient], values: [drawValues],
    segmentation: [drawSegmentation],
  };
  /** @type {Record<string, string[]>} */
  const AFFECTS = {
    _layer: ["toolbar", "layout", "image", "channel", "aggregate", "grid", "histogram", "values"],
    _channel: ["toolbar", "image", "channel", "histogram", "values"],
    _class_score: ["segmentation"], _segmentation: ["image", "segmentation", "toolbar"],
    _image: ["image"], _tree: ["tree"], hooked_modules: ["tree", "toolbar", "layout"],
    selected_module: ["tree", "toolbar"], selected_channel: ["grid"], selected_call: ["toolbar"],
    _status: ["header"], _error: ["header"], image_name: ["images"], _samples: ["images"], _notice: ["header"], _title: ["header"],
    aggregate: ["image", "aggregate", "toolbar"], overlay: ["image", "toolbar", "layout", "gradient"],
    overlay_opacity: ["image"], colorscale: ["image", "channel", "aggregate", "grid", "segmentation"],
    _gradcam: ["image", "layout", "gradient"], gradcam_region: ["toolbar", "image"],
    _prediction: ["segmentation", "toolbar"], selected_frame: ["toolbar"], selected_class: ["segmentation"],
  };
  /** @type {Set<string>} */
  const dirty = new Set();
  let frame = 0;

  /** @param {string[]} parts */
  function schedule(parts) {
    for (const p of parts) dirty.add(p);
    if (!frame) frame = requestAnimationFrame(render);
  }

  function render() {
    frame = 0;
    const parts = [...dirty];
    dirty.clear();
    for (const name of Object.keys(PARTS)) if (parts.includes(name)) for (const fn of PARTS[name]) fn();
    bindPlotEvents();
    markDrawn();
  }

  function markDrawn() {
    drawCount += 1;
    // A benchmark or test waits for "module|channel|n": set once the views show that module.
    if (layer.kind !== "maps" || channelFits()) {
      el.dataset.layerscopeDrawn = `${layer.module ?? ""}|${channel.channel ?? ""}|${drawCount}`;
    }
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
  /** @param {any} ev */
  const onImageSelected = (ev) => {
    if (!drawingRegion || !ev || !ev.range) return;
    const [x0, x1] = [...ev.range.x].sort((a, b) => a - b);
    const [y0, y1] = [...ev.range.y].sort((a, b) => a - b);
    drawingRegion = false;
    set("gradcam_region", [y0, x0, y1, x1]);
    schedule(["toolbar", "image"]);
  };
  /** @type {Array<[HTMLElement, string, (ev: any) => void]>} */
  const plotEvents = [
    [channelPlot, "plotly_hover", onMapHover], [aggregatePlot, "plotly_hover", onMapHover],
    [channelPlot, "plotly_unhover", onUnhover], [aggregatePlot, "plotly_unhover", onUnhover],
    [imagePlot, "plotly_hover", onImageHover], [imagePlot, "plotly_click", onImageClick],
    [imagePlot, "plotly_unhover", onUnhover], [imagePlot, "plotly_selected", onImageSelected],
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

  /** @type {Record<string, () => void>} */
  const READERS = {
    _layer: () => { readLayer(); hoverCell = null; pinnedCell = null; },
    _channel: readChannel, _class_score: readScore, _segmentation: readImage, _image: readImage,
    _gradcam: readGradcam,
  };
  /** @type {Array<[string, () => void]>} */
  const handlers = Object.entries(AFFECTS).map(([trait, parts]) => [`change:${trait}`, () => {
    const read = READERS[trait];
    if (read) read();
    schedule(parts);
  }]);
  for (const [name, fn] of handlers) model.on(name, fn);

  // Plots are first drawn before the widget is in the page (no width yet) and cells change
  // size with the notebook: follow each plot's box.
  const sizeWatch = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const plot = /** @type {HTMLElement & {layout?: any}} */ (entry.target);
      if (plot.layout && entry.contentRect.width > 0) plotly.Plots.resize(plot);
    }
  });
  for (const p of [imagePlot, channelPlot, aggregatePlot, histPlot, gradPlot, scorePlot]) sizeWatch.observe(p);

  // Follow JupyterLab's theme switches.
  const themeWatch = new MutationObserver(() => schedule(["image", "channel", "aggregate", "histogram", "segmentation"]));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });

  readLayer();
  readChannel();
  readImage();
  readScore();
  readGradcam();
  schedule(Object.keys(PARTS));

  return () => {
    if (frame) cancelAnimationFrame(frame);
    for (const [name, fn] of handlers) model.off(name, fn);
    themeWatch.disconnect();
    sizeWatch.disconnect();
    for (const p of [imagePlot, channelPlot, aggregatePlot, histPlot, gradPlot, scorePlot]) plotly.purge(p);
    root.remove();
  };
}
