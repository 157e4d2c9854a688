// Plotly figure descriptions of LayerScope's views. Pure functions: data in, {data, layout} out.

import { colorscale } from "./colors.js";

/**
 * @typedef {{font: string, grid: string, dark: boolean}} Theme
 * @typedef {{x0: number, y0: number, dx: number, dy: number}} Placement
 * @typedef {import("./geometry.js").Box} Box
 * @typedef {{data: any[], layout: Record<string, any>}} Figure
 */

/**
 * @param {Theme} theme
 * @param {string} title
 * @returns {Record<string, any>}
 */
export function baseLayout(theme, title) {
  return {
    title: { text: title, font: { size: 12 }, x: 0.02, xanchor: "left" },
    margin: { l: 36, r: 8, t: 28, b: 28 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    font: { color: theme.font, size: 11 },
    height: 300,
    autosize: true,
    uirevision: title,
  };
}

/**
 * @param {Box} box
 * @param {string} color
 * @param {string} [dash]
 * @returns {Record<string, any>}
 */
export function boxShape(box, color, dash = "solid") {
  return {
    type: "rect",
    xref: "x",
    yref: "y",
    x0: box.x0,
    x1: box.x1,
    y0: box.y0,
    y1: box.y1,
    line: { color, width: 2, dash },
    fillcolor: "rgba(0,0,0,0)",
  };
}

/**
 * The photo with an optional map or mask over it. Image pixels are the axes' units, y down.
 * @param {{imageUrl: string, size: number[], theme: Theme, title: string,
 *   overlay?: {z: number[][], placement: Placement, colorscale: string, opacity: number,
 *              zmin?: number, zmax?: number, name: string} | null,
 *   maskUrl?: string | null, maskOpacity?: number, highlightUrl?: string | null,
 *   boxes?: Array<{box: Box, color: string, dash?: string}>}} o
 * @returns {Figure}
 */
export function imageFigure(o) {
  const [h, w] = o.size;
  // Every picture spans the whole axes: the photo below, a mask above it.
  const stretched = { xref: "x", yref: "y", x: 0, y: 0, sizex: w, sizey: h, sizing: "stretch" };
  /** @type {any[]} */
  const images = [{ ...stretched, source: o.imageUrl, layer: "below" }];
  if (o.maskUrl) {
    const opacity = o.maskOpacity ?? 0.5;
    images.push({ ...stretched, source: o.maskUrl, opacity, layer: "above" });
  }
  if (o.highlightUrl) {
    // Pixels picked out on the photo (those whose class an ablation changed), fully opaque.
    images.push({ ...images[0], source: o.highlightUrl, layer: "above", opacity: 1 });
  }
  /** @type {any[]} */
  const data = [];
  if (o.overlay) {
    const p = o.overlay.placement;
    data.push({
      type: "heatmap",
      z: o.overlay.z,
      x0: p.x0,
      dx: p.dx,
      y0: p.y0,
      dy: p.dy,
      colorscale: colorscale(o.overlay.colorscale),
      opacity: o.overlay.opacity,
      zmin: o.overlay.zmin,
      zmax: o.overlay.zmax,
      showscale: o.overlay.opacity > 0,
      colorbar: { thickness: 10, len: 0.8 },
      name: o.overlay.name,
      hovertemplate: "x %{x:.0f}, y %{y:.0f}<br>%{z:.3g}<extra></extra>",
    });
  }
  const layout = baseLayout(o.theme, o.title);
  Object.assign(layout, {
    images,
    xaxis: { range: [0, w], showgrid: false, zeroline: false, constrain: "domain", visible: false },
    yaxis: { range: [h, 0], showgrid: false, zeroline: false, scaleanchor: "x", visible: false },
    shapes: (o.boxes || []).map((b) => boxShape(b.box, b.color, b.dash)),
    hovermode: "closest",
  });
  return { data, layout };
}

/**
 * A heatmap of one map (channel, aggregate, class score), y down, with an optional marked cell.
 * @param {{z: number[][], title: string, colorscale: string, theme: Theme,
 *   mark?: {row: number, col: number} | null, zmin?: number, zmax?: number}} o
 * @returns {Figure}
 */
export function heatmapFigure(o) {
  const layout = baseLayout(o.theme, o.title);
  const mark = o.mark;
  Object.assign(layout, {
    xaxis: { showgrid: false, zeroline: false, constrain: "domain" },
    yaxis: { autorange: "reversed", showgrid: false, zeroline: false, scaleanchor: "x" },
    shapes: mark
      ? [boxShape({ x0: mark.col - 0.5, x1: mark.col + 0.5, y0: mark.row - 0.5, y1: mark.row + 0.5 }, "#ff3b30")]
      : [],
  });
  return {
    data: [
      {
        type: "heatmap",
        z: o.z,
        colorscale: colorscale(o.colorscale),
        zmin: o.zmin,
        zmax: o.zmax,
        colorbar: { thickness: 10 },
        hovertemplate: "row %{y}, col %{x}<br>%{z:.4g}<extra></extra>",
      },
    ],
    layout,
  };
}

/**
 * Value histograms of the whole layer and of the selected channel, as fractions of values.
 * @param {{layer: {counts: number[], edges: number[]},
 *   channel?: {counts: number[], edges: number[]} | null, channelName: string, theme: Theme,
 *   title?: string, name?: string}} o
 * @returns {Figure}
 */
export function histogramFigure(o) {
  /**
   * @param {{counts: number[], edges: number[]}} h
   * @param {string} name
   * @param {string} color
   */
  const bars = (h, name, color) => {
    const total = h.counts.reduce((a, b) => a + b, 0) || 1;
    const width = h.edges[1] - h.edges[0];
    return {
      type: "bar",
      name,
      x: h.counts.map((_, i) => h.edges[i] + width / 2),
      y: h.counts.map((c) => c / total),
      width,
      marker: { color },
      opacity: 0.65,
      hovertemplate: `%{x:.3g}: %{y:.2%}<extra>${name}</extra>`,
    };
  };
  const data = [bars(o.layer, o.name || "whole layer", "#4c78a8")];
  if (o.channel) data.push(bars(o.channel, o.channelName, "#f58518"));
  const layout = baseLayout(o.theme, o.title || "Value histogram");
  Object.assign(layout, {
    barmode: "overlay",
    bargap: 0,
    yaxis: { type: "log", tickformat: "~%", gridcolor: o.theme.grid, title: { text: "fraction" }, automargin: true },
    xaxis: { gridcolor: o.theme.grid },
    legend: { orientation: "h", y: -0.18 },
  });
  return { data, layout };
}

/**
 * Channels by their effect on a class score: the first-order estimate and, where measured, the
 * exact drop when the channel is zeroed. Each bar carries its channel (click selects it).
 * @param {{channels: number[], estimate: number[], exact: Array<number | null>, title: string,
 *   theme: Theme, selected: number}} o
 * @returns {Figure}
 */
export function importanceFigure(o) {
  const labels = o.channels.map((c) => `#${c}`);
  const layout = baseLayout(o.theme, o.title);
  Object.assign(layout, {
    barmode: "group",
    xaxis: { type: "category", gridcolor: o.theme.grid },
    yaxis: { gridcolor: o.theme.grid, zeroline: true, title: { text: "score drop" } },
    legend: { orientation: "h", y: -0.25 },
  });
  // The selected channel gets a band behind its bars: recolouring the bars would recolour the
  // legend's swatches too (plotly draws them in the first bar's colour, often the selected one's).
  const at = o.channels.indexOf(o.selected);
  layout.shapes =
    at < 0
      ? []
      : [
          {
            type: "rect",
            xref: "x",
            yref: "paper",
            x0: at - 0.5,
            x1: at + 0.5,
            y0: 0,
            y1: 1,
            fillcolor: "rgba(245,133,24,0.3)",
            line: { width: 0 },
            layer: "below",
          },
        ];
  return {
    data: [
      {
        type: "bar",
        name: "estimate (first order)",
        x: labels,
        y: o.estimate,
        customdata: o.channels,
        marker: { color: "#4c78a8" },
        hovertemplate: "%{x}: %{y:.4g}<extra>estimate</extra>",
      },
      {
        type: "bar",
        name: "exact (channel zeroed)",
        x: labels,
        y: o.exact.map((v) => (v === null ? null : v)),
        customdata: o.channels,
        marker: { color: "#54a24b" },
        hovertemplate: "%{x}: %{y:.4g}<extra>exact</extra>",
      },
    ],
    layout,
  };
}

/**
 * Horizontal bars of a vector's top entries (class logits, pooled features), best on top.
 * @param {{labels: string[], values: number[], title: string, theme: Theme, hover?: string[]}} o
 * @returns {Figure}
 */
export function barFigure(o) {
  const layout = baseLayout(o.theme, o.title);
  Object.assign(layout, {
    yaxis: { autorange: "reversed", automargin: true, gridcolor: o.theme.grid },
    xaxis: { gridcolor: o.theme.grid, zeroline: true },
    margin: { l: 120, r: 8, t: 28, b: 28 },
  });
  return {
    data: [
      {
        type: "bar",
        orientation: "h",
        y: o.labels,
        x: o.values,
        marker: { color: "#4c78a8" },
        text: o.hover,
        hovertemplate: "%{y}: %{x:.4g}<br>%{text}<extra></extra>",
      },
    ],
    layout,
  };
}
