// Colour scales shared by the plotly heatmaps and the canvas tiles of the channel grid, so a
// tile and its heatmap always agree. The stops come from the contract the kernel reads too, so
// explorer.figure() and the HTML export draw the same colours.

import { COLORSCALES } from "./contract.js";

export { COLORSCALES };

/**
 * The colour stops of a scale by name. The kernel only sends names of the contract; an unknown
 * one is a bug to see, not a reason to draw Viridis silently.
 * @param {string} name
 * @returns {Array<[number, string]>}
 */
export function colorscale(name) {
  const stops = COLORSCALES[name];
  if (!stops)
    throw new RangeError(`unknown colour scale ${name}: expected one of ${Object.keys(COLORSCALES).join(", ")}`);
  return stops;
}

/**
 * "#rrggbb" or "rgb(r,g,b)" -> [r, g, b].
 * @param {string} color
 * @returns {number[]}
 */
export function parseColor(color) {
  if (color.startsWith("#")) {
    const v = parseInt(color.slice(1), 16);
    return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
  }
  const m = color.match(/\d+(\.\d+)?/g);
  if (!m || m.length < 3) throw new Error(`cannot parse colour ${color}`);
  return m.slice(0, 3).map(Number);
}

/**
 * A 256-entry RGB lookup table of a scale (by name, or its stops as a view spec gives them):
 * lut[3 * i + c].
 * @param {string | Array<[number, string]>} scale
 * @returns {Uint8ClampedArray}
 */
export function lookupTable(scale) {
  const given = typeof scale === "string" ? colorscale(scale) : scale;
  const stops = given.map(([t, c]) => /** @type {[number, number[]]} */ ([t, parseColor(c)]));
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 1;
    while (k < stops.length - 1 && stops[k][0] < t) k++;
    const [t0, c0] = stops[k - 1];
    const [t1, c1] = stops[k];
    const f = t1 > t0 ? Math.min(1, Math.max(0, (t - t0) / (t1 - t0))) : 0;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = c0[c] + (c1[c] - c0[c]) * f;
  }
  return lut;
}
