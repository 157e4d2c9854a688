// Colour scales shared by the plotly heatmaps and the canvas tiles of the channel grid, so a
// tile and its heatmap always agree. Stops follow plotly's own definitions of these names.

/** @type {Record<string, Array<[number, string]>>} */
export const COLORSCALES = {
  Viridis: [
    [0, "#440154"], [0.06274509803921569, "#48186a"], [0.12549019607843137, "#472d7b"],
    [0.18823529411764706, "#424086"], [0.25098039215686274, "#3b528b"], [0.3137254901960784, "#33638d"],
    [0.3764705882352941, "#2c728e"], [0.4392156862745098, "#26828e"], [0.5019607843137255, "#21918c"],
    [0.5647058823529412, "#1fa088"], [0.6274509803921569, "#28ae80"], [0.6901960784313725, "#3fbc73"],
    [0.7529411764705882, "#5ec962"], [0.8156862745098039, "#84d44b"], [0.8784313725490196, "#addc30"],
    [0.9411764705882353, "#d8e219"], [1, "#fde725"],
  ],
  Cividis: [
    [0, "rgb(0,32,76)"], [0.058824, "rgb(0,42,102)"], [0.117647, "rgb(0,52,110)"],
    [0.176471, "rgb(39,63,108)"], [0.235294, "rgb(60,74,107)"], [0.294118, "rgb(76,85,107)"],
    [0.352941, "rgb(91,95,109)"], [0.411765, "rgb(104,106,112)"], [0.470588, "rgb(117,117,117)"],
    [0.529412, "rgb(131,129,120)"], [0.588235, "rgb(146,140,120)"], [0.647059, "rgb(161,152,118)"],
    [0.705882, "rgb(176,165,114)"], [0.764706, "rgb(192,177,109)"], [0.823529, "rgb(209,191,102)"],
    [0.882353, "rgb(225,204,92)"], [0.941176, "rgb(243,219,79)"], [1, "rgb(255,233,69)"],
  ],
  Hot: [[0, "rgb(0,0,0)"], [0.3, "rgb(230,0,0)"], [0.6, "rgb(255,210,0)"], [1, "rgb(255,255,255)"]],
  RdBu: [
    [0, "rgb(5,10,172)"], [0.35, "rgb(106,137,247)"], [0.5, "rgb(190,190,190)"],
    [0.6, "rgb(220,170,132)"], [0.7, "rgb(230,145,90)"], [1, "rgb(178,10,28)"],
  ],
  Greys: [[0, "rgb(0,0,0)"], [1, "rgb(255,255,255)"]],
};

/**
 * The colour stops of a scale by name (Viridis when unknown).
 * @param {string} name
 * @returns {Array<[number, string]>}
 */
export function colorscale(name) {
  return COLORSCALES[name] || COLORSCALES.Viridis;
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
 * A 256-entry RGB lookup table of a scale: lut[3 * i + c].
 * @param {string} name
 * @returns {Uint8ClampedArray}
 */
export function lookupTable(name) {
  const stops = colorscale(name).map(([t, c]) => /** @type {[number, number[]]} */ ([t, parseColor(c)]));
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
