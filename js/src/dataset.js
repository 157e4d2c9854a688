// The Dataset panel: the selected channel's top image patches over a dataset sweep (click one to
// open its image, with the unit marked) and every channel's dataset mean as bars (the selected
// channel marked, dead channels grey; click a bar to select its channel).

import { h } from "./controls.js";
import { dataUrl, decode } from "./decode.js";
import { baseLayout } from "./views.js";

/**
 * @typedef {import("./context.js").Context} Context
 * @typedef {import("./views.js").Theme} Theme
 * @typedef {import("./views.js").Figure} Figure
 */

// The same colours as layerscope/widget/dataset_figure.py.
export const SELECTED = "#e45756";
export const DEAD = "#b0b0b0";
export const ALIVE = "#4c78a8";

/**
 * Bar colours: dead channels grey, the selected one marked.
 * @param {number} channels
 * @param {number} selected
 * @param {ArrayLike<number>} dead
 * @returns {string[]}
 */
export function barColours(channels, selected, dead) {
  const colours = new Array(channels).fill(ALIVE);
  for (let i = 0; i < dead.length; i++) colours[dead[i]] = DEAD;
  if (selected >= 0 && selected < channels) colours[selected] = SELECTED;
  return colours;
}

/**
 * The channels' dataset means as bars.
 * @param {{mean: ArrayLike<number>, max: ArrayLike<number>, zero: ArrayLike<number>,
 *   dead: ArrayLike<number>, selected: number, title: string, theme: Theme}} o
 * @returns {Figure}
 */
export function statsFigure(o) {
  const n = o.mean.length;
  const x = Array.from({ length: n }, (_, i) => i);
  const text = x.map(
    (c) =>
      `channel ${c}: mean ${(+o.mean[c]).toPrecision(3)}, max ${(+o.max[c]).toPrecision(3)}, ${Math.round(o.zero[c] * 100)}% zero`,
  );
  return {
    data: [
      {
        type: "bar",
        x,
        y: Array.from(o.mean),
        customdata: x,
        text,
        textposition: "none",
        hovertemplate: "%{text}<extra></extra>",
        marker: { color: barColours(n, o.selected, o.dead) },
      },
    ],
    layout: {
      ...baseLayout(o.theme, o.title),
      margin: { l: 44, r: 8, t: 28, b: 32 },
      height: 220,
      bargap: 0,
      xaxis: { title: { text: "channel" }, gridcolor: o.theme.grid },
      yaxis: { title: { text: "dataset mean" }, gridcolor: o.theme.grid, zeroline: true },
    },
  };
}

/** @param {Context} ctx */
export function drawDataset({ model, dom, react, theme }) {
  const d = model.get("_dataset") || {};
  const box = dom.datasetBox;
  box.hidden = !d.module;
  dom.datasetPlot.hidden = !d.examples;
  if (!d.module) return;
  if (!d.examples || !d.mean || !d.max || !d.fraction_zero || !d.dead) {
    box.replaceChildren(h("div", "layerscope-panel-title", "Dataset"), h("div", "layerscope-muted", d.missing || ""));
    return;
  }
  const dead = decode(d.dead).values;
  const tiles = h("div", "layerscope-dataset-tiles");
  for (const ex of d.examples) {
    const tile = /** @type {HTMLButtonElement} */ (h("button", "layerscope-dataset-tile"));
    tile.type = "button";
    tile.dataset.rank = String(ex.rank);
    tile.title = `${ex.source}\nscore ${ex.score.toPrecision(4)} at unit (${ex.location.join(", ")})\nclick: open this image`;
    if (ex.crop_size[0] > 0) {
      const img = /** @type {HTMLImageElement} */ (h("img"));
      img.src = dataUrl(ex.crop, "image/jpeg");
      img.alt = `example ${ex.rank + 1}: ${ex.source}`;
      tile.append(img);
    }
    tile.append(h("span", "layerscope-dataset-score", ex.score.toPrecision(3)));
    tile.addEventListener("click", () => model.send({ kind: "show-example", rank: ex.rank }));
    tiles.append(tile);
  }
  box.replaceChildren(
    h(
      "div",
      "layerscope-panel-title",
      `Dataset: ${d.module} channel ${d.channel}, its top ${d.examples.length} of ${d.images} images (click one to open it)`,
    ),
    tiles,
  );
  react(
    dom.datasetPlot,
    statsFigure({
      mean: decode(d.mean).values,
      max: decode(d.max).values,
      zero: decode(d.fraction_zero).values,
      dead,
      selected: d.channel ?? -1,
      title: `Every channel over the dataset · ${dead.length} dead (grey) · click a bar to select`,
      theme: theme(),
    }),
  );
}
