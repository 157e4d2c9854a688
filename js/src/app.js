// The widget's controller in the browser: builds the panels, redraws what a trait change
// affects once per batch of changes, and links heatmaps and image on hover without the kernel.

import { h } from "./controls.js";
import { cellAt } from "./geometry.js";
import { drawValues, drawView, PANELS, ringOf, withMarks } from "./panels/index.js";
import { cellMark, linkOf } from "./spec.js";
import { ViewState } from "./state.js";
import { drawHeader, drawImageControls, drawToolbar, sendFile } from "./toolbar.js";
import { TreeView } from "./tree.js";

/**
 * @typedef {import("./context.js").Model} Model
 * @typedef {import("./context.js").Context} Context
 * @typedef {{react: (el: HTMLElement, data: any[], layout: any, config?: any) => Promise<any>,
 *   relayout: (el: HTMLElement, update: any) => Promise<any>, purge: (el: HTMLElement) => void,
 *   Plots: {resize: (el: HTMLElement) => any}}} PlotlyLike
 */

const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

// Which parts of the widget a trait change affects: the app's own (header, tree, toolbar), then
// each panel's (panels/index.js). The views' specs (`_view_<name>`) come from the kernel after
// every change that restyles them (options included).
/** @type {Record<string, string[]>} */
const OWN = {
  _tree: ["tree"],
  hooked_modules: ["tree", "toolbar"],
  selected_module: ["tree", "toolbar"],
  selected_channel: ["toolbar"],
  selected_call: ["toolbar"],
  selected_frame: ["toolbar"],
  _status: ["header"],
  _error: ["header"],
  _notice: ["header"],
  _title: ["header"],
  image_name: ["images"],
  _samples: ["images"],
  aggregate: ["toolbar"],
  overlay: ["toolbar"],
  gradcam_region: ["toolbar"],
  show_importance: ["toolbar"],
  show_graph: ["toolbar"],
  ablations: ["toolbar"],
  _layer: ["toolbar"],
  _channel: ["toolbar"],
  _segmentation: ["toolbar"],
  _prediction: ["toolbar"],
  _ablation: ["toolbar"],
};

/**
 * Every trait's parts, the app's and the panels' together.
 * @returns {Record<string, string[]>}
 */
function affected() {
  /** @type {Record<string, string[]>} */
  const all = {};
  for (const table of [OWN, ...PANELS.map((p) => p.affects)]) {
    for (const [trait, parts] of Object.entries(table)) all[trait] = [...(all[trait] || []), ...parts];
  }
  return all;
}

/**
 * @param {HTMLElement} el
 * @returns {import("./spec.js").Theme}
 */
function themeOf(el) {
  const style = getComputedStyle(el);
  const font = style.getPropertyValue("--jp-ui-font-color1").trim() || style.color || "#222";
  const grid = style.getPropertyValue("--jp-border-color2").trim() || "rgba(128,128,128,0.3)";
  const body = document.body;
  const dark = body.dataset.jpThemeLight === "false" || body.classList.contains("theme-dark");
  return { font, grid, dark };
}

/** @returns {import("./context.js").Dom & {root: HTMLElement, body: HTMLElement, panels: HTMLElement, views: HTMLElement, header: HTMLElement}} */
function buildDom() {
  const root = h("div", "layerscope-root");
  const header = h("div", "layerscope-header");
  const progress = /** @type {HTMLProgressElement} */ (h("progress", "layerscope-progress"));
  progress.hidden = true;
  const dom = {
    root,
    header,
    progress,
    title: h("span", "layerscope-title"),
    status: h("span", "layerscope-status"),
    imageControls: h("span", "layerscope-image-controls"),
    notice: h("div", "layerscope-notice"),
    error: h("div", "layerscope-error"),
    body: h("div", "layerscope-body"),
    views: h("div", "layerscope-views"),
    chips: h("div", "layerscope-chips"),
    toolbar: h("div", "layerscope-toolbar"),
    panels: h("div", "layerscope-panels"),
    emptyHint: h("div", "layerscope-empty", "Click a module in the tree to capture its output."),
    graphPlot: h("div", "layerscope-plot layerscope-plot-graph"),
    imagePlot: h("div", "layerscope-plot layerscope-plot-image"),
    channelPlot: h("div", "layerscope-plot layerscope-plot-channel"),
    vectorPlot: h("div", "layerscope-plot layerscope-plot-vector"),
    aggregatePlot: h("div", "layerscope-plot layerscope-plot-aggregate"),
    histPlot: h("div", "layerscope-plot layerscope-plot-histogram"),
    gradPlot: h("div", "layerscope-plot layerscope-plot-gradient"),
    scorePlot: h("div", "layerscope-plot layerscope-plot-score"),
    importancePlot: h("div", "layerscope-plot layerscope-plot-importance"),
    datasetPlot: h("div", "layerscope-plot layerscope-plot-dataset"),
    gridBox: h("div", "layerscope-panel layerscope-grid-panel"),
    statsBox: h("div", "layerscope-panel layerscope-stats-panel"),
    valuesBox: h("div", "layerscope-panel layerscope-values"),
    segBox: h("div", "layerscope-panel layerscope-seg-panel"),
  };
  dom.error.setAttribute("role", "alert");
  header.append(dom.title, dom.imageControls, dom.status, progress);
  root.append(header, dom.notice, dom.error, dom.body);
  dom.panels.append(
    dom.graphPlot,
    dom.imagePlot,
    dom.channelPlot,
    dom.vectorPlot,
    dom.aggregatePlot,
    dom.histPlot,
    dom.gradPlot,
    dom.gridBox,
    dom.statsBox,
    dom.valuesBox,
    dom.segBox,
    dom.scorePlot,
    dom.importancePlot,
    dom.datasetPlot,
  );
  dom.views.append(dom.chips, dom.toolbar, dom.emptyHint, dom.panels);
  return dom;
}

/**
 * @param {{model: Model, el: HTMLElement, plotly: PlotlyLike}} args
 * @returns {() => void} cleanup
 */
export function createApp({ model, el, plotly }) {
  const dom = buildDom();
  el.append(dom.root);
  const st = new ViewState(model);
  const plots = [
    dom.graphPlot,
    dom.imagePlot,
    dom.channelPlot,
    dom.vectorPlot,
    dom.aggregatePlot,
    dom.histPlot,
    dom.gradPlot,
    dom.scorePlot,
    dom.importancePlot,
    dom.datasetPlot,
  ];

  /** @param {keyof import("./schema.js").WidgetState} name @param {any} value */
  function set(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  /** @type {Set<string>} */
  const dirty = new Set();
  let scheduled = false;
  let closed = false;
  let drawCount = 0;
  /**
   * Redraw `parts` once the changes under way are all in: right after the current task (the
   * kernel's message sets its traits in one go), not a frame later, which made a click wait up
   * to one more frame; before the widget is in the page, at its first frame.
   * @param {string[]} parts
   */
  function schedule(parts) {
    for (const p of parts) dirty.add(p);
    if (scheduled) return;
    scheduled = true;
    if (el.isConnected) queueMicrotask(render);
    else requestAnimationFrame(render);
  }

  /** @type {Context} */
  const ctx = {
    model,
    st,
    dom,
    set,
    schedule,
    // Read once per redraw: getComputedStyle after plotly's DOM writes forces a style recalc.
    theme: () => {
      theme = theme || themeOf(el);
      return theme;
    },
    react: (plot, fig) => {
      drawing.push(plotly.react(plot, fig.data, fig.layout, CONFIG));
    },
    own: {},
  };
  /** @type {import("./spec.js").Theme | null} the theme read in this redraw */
  let theme = null;
  /** @type {Promise<any>[]} the plots this frame asked plotly to draw */
  let drawing = [];

  /** Hook a module, or unhook it (a tree row's or a graph node's click). @param {string} id */
  const toggleHook = (id) => {
    const hooked = /** @type {string[]} */ (model.get("hooked_modules"));
    set("hooked_modules", hooked.includes(id) ? hooked.filter((n) => n !== id) : [...hooked, id]);
  };
  const tree = new TreeView(dom.body, {
    onToggle: toggleHook,
    // The graph opens what the tree shows opened (when the kernel has a graph view).
    onExpand: (ids) => {
      if (model.get("show_graph") !== undefined) set("graph_open", ids);
    },
    concepts: () => model.get("_concepts")?.everywhere || {},
    onConcept: (name) => {
      if (model.get("selected_concept") !== name) set("selected_concept", name);
    },
    onHover: (id) => {
      const plot = /** @type {any} */ (dom.graphPlot);
      if (plot.layout && !plot.hidden) {
        plotly.relayout(plot, { shapes: withMarks(plot, ringOf(model.get("_view_graph"), id)) });
      }
    },
  });
  dom.body.append(dom.views);

  /** @type {Record<string, () => void>} */
  const PARTS = {
    header: () => drawHeader(ctx),
    images: () => drawImageControls(ctx),
    tree: () => tree.update(model.get("_tree") || [], model.get("hooked_modules"), model.get("selected_module")),
    toolbar: () => drawToolbar(ctx),
  };
  for (const panel of PANELS) {
    for (const [name, draw] of Object.entries(panel.parts)) PARTS[name] = () => draw(ctx);
  }
  // A view of a panel with no front-end module of its own: a plot of its own, drawn as given.
  const affects = affected();
  const plotted = PANELS.flatMap((p) => p.plotted);
  /** @type {HTMLElement[]} plots of views with no front-end module, or in a panel's own
   * elements: clicks by what was clicked */
  const ownPlots = [];
  for (const panel of PANELS) {
    const elements = panel.mount?.(ctx) || {};
    Object.assign(ctx.own, elements);
    for (const el of Object.values(elements)) {
      if (el.parentElement) continue; // a part of an element added already
      dom.panels.append(el);
      for (const plot of [el, ...el.querySelectorAll(".layerscope-plot")]) {
        if (!plot.classList.contains("layerscope-plot")) continue;
        plots.push(/** @type {HTMLElement} */ (plot));
        ownPlots.push(/** @type {HTMLElement} */ (plot));
      }
    }
  }
  for (const name of model.get("_shown_views") || []) {
    if (`_view_${name}` in affects) continue;
    const plot = h("div", `layerscope-plot layerscope-plot-${name}`);
    plot.hidden = true;
    dom.panels.append(plot);
    plots.push(plot);
    ownPlots.push(plot);
    PARTS[`view:${name}`] = () => drawView(ctx, plot, name);
    affects[`_view_${name}`] = [`view:${name}`];
    plotted.push(`view:${name}`);
  }

  function render() {
    scheduled = false;
    if (closed) return;
    theme = null;
    for (const name of Object.keys(PARTS)) if (dirty.has(name)) PARTS[name]();
    dirty.clear();
    bindPlotEvents();
    drawCount += 1;
    // Tests and the benchmark wait for "module|channel|n": `layerscopeDrawn` once the views of
    // that module are handed to plotly, `layerscopeRendered` once plotly has drawn them all and
    // the next frame is painted.
    const pending = drawing;
    drawing = [];
    if (st.layer.kind !== "maps" || st.channelFits()) {
      const mark = `${st.layer.module ?? ""}|${st.channel.channel ?? ""}|${drawCount}`;
      el.dataset.layerscopeDrawn = mark;
      Promise.allSettled(pending).then(() =>
        requestAnimationFrame(() => {
          el.dataset.layerscopeRendered = mark;
        }),
      );
    }
  }

  // Linking, all in the browser: heatmap cell -> image footprint and receptive field; image
  // point -> the cell in every heatmap and the values there.
  /** @param {{row: number, col: number} | null} cell */
  function linkCell(cell) {
    st.hoverCell = cell;
    const boxes = st.imageBoxes();
    if (/** @type {any} */ (dom.imagePlot).layout) {
      plotly.relayout(dom.imagePlot, { shapes: withMarks(dom.imagePlot, st.imageShapes()) });
    }
    const marks = cellMark(st.cell());
    for (const p of [dom.channelPlot, dom.aggregatePlot]) {
      if (/** @type {any} */ (p).layout) plotly.relayout(p, { shapes: withMarks(p, marks) });
    }
    drawValues(ctx);
    dom.imagePlot.dataset.box = boxes.length ? JSON.stringify(boxes[0].box) : "";
    dom.imagePlot.dataset.receptiveBox = boxes.length > 1 ? JSON.stringify(boxes[1].box) : "";
  }
  /** @param {any} ev */
  const pointOf = (ev) => ev?.points?.[0];
  /** @param {any} ev */
  const onMapHover = (ev) => {
    const p = pointOf(ev);
    if (p) linkCell({ row: Math.round(p.y), col: Math.round(p.x) });
  };
  /** @param {any} ev @param {boolean} pin */
  const onImagePoint = (ev, pin) => {
    const info = st.linkInfo();
    const p = pointOf(ev);
    if (!info || !p) return;
    const cell = cellAt(info.g, info.size, info.pool, p.y, p.x);
    if (pin) st.pinnedCell = cell;
    linkCell(cell);
  };
  /** @param {any} ev */
  const onImageSelected = (ev) => {
    if (!st.drawingRegion || !ev?.range) return;
    const [x0, x1] = [...ev.range.x].sort((a, b) => a - b);
    const [y0, y1] = [...ev.range.y].sort((a, b) => a - b);
    st.drawingRegion = false;
    set("gradcam_region", [y0, x0, y1, x1]);
    schedule(["toolbar", "image"]); // the drag mode; the region's outline comes with the view
  };
  const onUnhover = () => linkCell(null);
  /**
   * A click on a view, by what was clicked: a module node (a trace with `meta.role` "modules",
   * its `customdata` the module) hooks it; a concept's bar (`meta.role` "concepts") picks the
   * concept; a dataset patch (`meta.rank`) opens its image; a unit's tile (`meta.channel`)
   * selects its channel; in a view whose `layout.meta.link` is "channels", a point's
   * `customdata` selects that channel.
   * @param {any} plot
   * @returns {(ev: any) => void}
   */
  const onPlotClick = (plot) => (ev) => {
    const p = pointOf(ev);
    const meta = p?.data?.meta || {};
    if (meta.role === "modules") toggleHook(String(p.customdata));
    else if (meta.role === "concepts") set("selected_concept", String(p.customdata));
    else if (meta.rank !== undefined) model.send({ kind: "show-example", rank: Number(meta.rank) });
    else if (meta.channel !== undefined) set("selected_channel", Number(meta.channel));
    else if (p?.customdata !== undefined && linkOf(plot) === "channels") set("selected_channel", Number(p.customdata));
  };
  /** @type {Array<[HTMLElement, string, (ev: any) => void]>} */
  const plotEvents = [
    [dom.channelPlot, "plotly_hover", onMapHover],
    [dom.aggregatePlot, "plotly_hover", onMapHover],
    [dom.channelPlot, "plotly_unhover", onUnhover],
    [dom.aggregatePlot, "plotly_unhover", onUnhover],
    [dom.imagePlot, "plotly_hover", (ev) => onImagePoint(ev, false)],
    [dom.imagePlot, "plotly_click", (ev) => onImagePoint(ev, true)],
    [dom.imagePlot, "plotly_unhover", onUnhover],
    [dom.imagePlot, "plotly_selected", onImageSelected],
    [dom.importancePlot, "plotly_click", onPlotClick(dom.importancePlot)],
    [dom.datasetPlot, "plotly_click", onPlotClick(dom.datasetPlot)],
    [dom.graphPlot, "plotly_click", onPlotClick(dom.graphPlot)],
    ...ownPlots.map(
      (p) => /** @type {[HTMLElement, string, (ev: any) => void]} */ ([p, "plotly_click", onPlotClick(p)]),
    ),
    [
      dom.graphPlot,
      "plotly_hover",
      (ev) => tree.link(pointOf(ev)?.data?.meta?.role === "modules" ? String(pointOf(ev).customdata) : ""),
    ],
    [dom.graphPlot, "plotly_unhover", () => tree.link("")],
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

  // A file dropped on the photo replaces the image.
  const img = dom.imagePlot;
  img.addEventListener("dragover", (e) => {
    e.preventDefault();
    img.classList.add("layerscope-drop");
  });
  img.addEventListener("dragleave", () => img.classList.remove("layerscope-drop"));
  img.addEventListener("drop", (e) => {
    e.preventDefault();
    img.classList.remove("layerscope-drop");
    const f = e.dataTransfer?.files[0];
    if (f) sendFile(ctx, f);
  });

  /** @type {Record<string, () => void>} */
  const READERS = {
    _layer: () => st.readLayer(),
    _channel: () => st.readChannel(),
    _segmentation: () => st.readImage(),
    _image: () => st.readImage(),
    _ablation: () => st.readAblation(),
  };
  /** @type {Array<[string, () => void]>} */
  const handlers = Object.entries(affects).map(([trait, parts]) => [
    `change:${trait}`,
    () => {
      if (READERS[trait]) READERS[trait]();
      schedule(parts);
    },
  ]);
  for (const [name, fn] of handlers) model.on(name, fn);

  // Plots are first drawn before the widget is in the page (no width yet) and cells change
  // size with the notebook: follow each plot's box.
  const sizeWatch = new ResizeObserver((entries) => {
    for (const entry of entries) {
      const plot = /** @type {HTMLElement & {layout?: any}} */ (entry.target);
      if (plot.layout && entry.contentRect.width > 0) plotly.Plots.resize(plot);
    }
  });
  for (const p of plots) sizeWatch.observe(p);
  // Follow JupyterLab's theme switches: every part that hands plotly a figure draws with the
  // theme's colours.
  const themeWatch = new MutationObserver(() => schedule(plotted));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light", "class"] });

  st.readAll();
  schedule(Object.keys(PARTS));

  return () => {
    closed = true;
    for (const [name, fn] of handlers) model.off(name, fn);
    themeWatch.disconnect();
    sizeWatch.disconnect();
    for (const p of plots) plotly.purge(p);
    dom.root.remove();
  };
}
