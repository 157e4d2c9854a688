// Small DOM builders for the toolbar, the channel grid, the class legend and the values panel.
// All text goes in through textContent.

import { lookupTable } from "./colors.js";
import { flat } from "./spec.js";

/**
 * @param {string} tag
 * @param {string} [className]
 * @param {string} [text]
 * @returns {HTMLElement}
 */
export function h(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * A labelled <select>.
 * @param {string} label
 * @param {Array<[string, string]>} options value, text
 * @param {string} value
 * @param {(v: string) => void} onChange
 * @returns {HTMLElement}
 */
export function select(label, options, value, onChange) {
  const wrap = h("label", "layerscope-control");
  wrap.append(h("span", "layerscope-control-label", label));
  const s = /** @type {HTMLSelectElement} */ (h("select"));
  for (const [v, text] of options) {
    const o = /** @type {HTMLOptionElement} */ (h("option", undefined, text));
    o.value = v;
    s.append(o);
  }
  s.value = value;
  s.addEventListener("change", () => onChange(s.value));
  wrap.append(s);
  return wrap;
}

/**
 * A labelled range input with a number box beside it.
 * @param {string} label
 * @param {{min: number, max: number, step: number, value: number, className?: string}} o
 * @param {(v: number) => void} onChange fired on release / Enter, not on every pixel
 * @returns {HTMLElement}
 */
export function slider(label, o, onChange) {
  const wrap = h("label", `layerscope-control ${o.className || ""}`);
  wrap.append(h("span", "layerscope-control-label", label));
  const range = /** @type {HTMLInputElement} */ (h("input"));
  range.type = "range";
  const num = /** @type {HTMLInputElement} */ (h("input", "layerscope-number"));
  num.type = "number";
  for (const input of [range, num]) {
    input.min = String(o.min);
    input.max = String(o.max);
    input.step = String(o.step);
    input.value = String(o.value);
  }
  range.addEventListener("input", () => (num.value = range.value));
  range.addEventListener("change", () => onChange(Number(range.value)));
  num.addEventListener("change", () => onChange(Number(num.value)));
  wrap.append(range, num);
  return wrap;
}

/**
 * The top-k channel tiles, drawn as canvases from the grid view's heatmap traces (one per
 * channel, `meta.channel`, with its zmin/zmax and colour stops); click selects, shift-click
 * ablates (marked with a cross).
 * @param {{traces: any[], selected: number, ablated?: number[], onPick: (channel: number) => void,
 *   onAblate?: (channel: number) => void}} o
 * @returns {HTMLElement}
 */
export function channelGrid(o) {
  const grid = h("div", "layerscope-grid-tiles");
  for (const trace of o.traces) {
    const channel = Number(trace.meta.channel);
    const { values, shape } = flat(trace.z);
    const [th, tw] = shape;
    const lut = lookupTable(trace.colorscale);
    const tile = h("button", "layerscope-tile");
    tile.title = `channel ${channel}: ${trace.zmin.toPrecision(3)} … ${trace.zmax.toPrecision(3)}`;
    tile.dataset.channel = String(channel);
    if (channel === o.selected) tile.classList.add("layerscope-tile-selected");
    if (o.ablated?.includes(channel)) tile.classList.add("layerscope-tile-ablated");
    const canvas = /** @type {HTMLCanvasElement} */ (h("canvas"));
    canvas.width = tw;
    canvas.height = th;
    const ctx = canvas.getContext("2d");
    if (ctx) {
      const img = ctx.createImageData(tw, th);
      const span = trace.zmax - trace.zmin || 1;
      for (let p = 0; p < th * tw; p++) {
        const v = Math.max(0, Math.min(255, Math.round(((values[p] - trace.zmin) / span) * 255)));
        img.data[4 * p] = lut[3 * v];
        img.data[4 * p + 1] = lut[3 * v + 1];
        img.data[4 * p + 2] = lut[3 * v + 2];
        img.data[4 * p + 3] = 255;
      }
      ctx.putImageData(img, 0, 0);
    }
    tile.append(canvas, h("span", "layerscope-tile-label", trace.name));
    // Shift-click ablates (sets to zero) the channel; a click selects it.
    tile.addEventListener("click", (ev) => (ev.shiftKey && o.onAblate ? o.onAblate(channel) : o.onPick(channel)));
    grid.append(tile);
  }
  return grid;
}

/**
 * The segmentation legend: classes present, largest first; click picks the score map's class.
 * @param {Array<{index: number, name: string, color: string, fraction: number}>} legend
 * @param {number} selected
 * @param {(index: number) => void} onPick
 * @returns {HTMLElement}
 */
export function classLegend(legend, selected, onPick) {
  const list = h("div", "layerscope-legend");
  for (const entry of legend) {
    const item = h("button", "layerscope-legend-item");
    if (entry.index === selected) item.classList.add("layerscope-legend-selected");
    const swatch = h("span", "layerscope-swatch");
    swatch.style.background = entry.color;
    const share = Number.isFinite(entry.fraction) ? ` ${(entry.fraction * 100).toFixed(1)}%` : "";
    item.append(swatch, h("span", undefined, `${entry.name}${share}`));
    item.dataset.index = String(entry.index);
    item.addEventListener("click", () => onPick(entry.index));
    list.append(item);
  }
  return list;
}

/**
 * A two-column table of statistics.
 * @param {Array<[string, Record<string, number> | undefined]>} columns
 * @returns {HTMLElement}
 */
export function statsTable(columns) {
  const table = h("table", "layerscope-stats");
  const head = h("tr");
  head.append(h("th", undefined, ""));
  for (const [name] of columns) head.append(h("th", undefined, name));
  table.append(head);
  for (const key of ["mean", "std", "min", "max", "zero_fraction"]) {
    const row = h("tr");
    row.append(h("td", undefined, key === "zero_fraction" ? "zeros" : key));
    for (const [, stats] of columns) {
      const v = stats ? stats[key] : undefined;
      const text = v === undefined ? "" : key === "zero_fraction" ? `${(v * 100).toFixed(1)}%` : v.toPrecision(4);
      row.append(h("td", undefined, text));
    }
    table.append(row);
  }
  return table;
}
