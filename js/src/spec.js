// The views arrive from the kernel as plotly figure specs (layerscope/widget/spec.py: the one
// definition that explorer.figure() and the HTML export draw too). The browser draws them as
// given, adding only the theme's colours, the widget's own image URLs for the pictures they
// refer to, and the marks that linking adds (layout.meta.link says which linking a view has).

/**
 * @typedef {{font: string, grid: string, dark: boolean}} Theme
 * @typedef {{data: any[], layout: Record<string, any>}} Figure
 * @typedef {{x0: number, y0: number, x1: number, y1: number}} Box
 */

/**
 * Whether a spec has anything to draw (the kernel sends {} for a view with nothing to show).
 * @param {any} spec
 * @returns {spec is Figure}
 */
export function hasView(spec) {
  return Boolean(spec && (spec.layout || spec.data));
}

/**
 * Binary arrays arrive as {dtype, bdata: DataView, shape}; plotly.js reads bdata as an
 * ArrayBuffer (aligned: copied out of the message buffer).
 * @param {any} value
 * @returns {any}
 */
function arrays(value) {
  if (Array.isArray(value)) return value.map(arrays);
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return value;
  if (typeof value.dtype === "string" && value.bdata !== undefined && typeof value.bdata !== "string") {
    const b = value.bdata;
    const buffer = b instanceof ArrayBuffer ? b.slice(0) : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
    return { dtype: value.dtype, bdata: buffer, shape: value.shape };
  }
  /** @type {Record<string, any>} */
  const out = {};
  for (const [k, v] of Object.entries(value)) out[k] = arrays(v);
  return out;
}

/**
 * A spec ready for plotly: arrays decoded, pictures resolved, the theme's colours applied.
 * @param {Figure} spec
 * @param {Theme} theme
 * @param {(ref: string) => string} picture the URL of a picture the spec refers to
 * @returns {Figure}
 */
export function drawable(spec, theme, picture) {
  const fig = /** @type {Figure} */ (arrays({ ...spec, data: spec.data || [], layout: spec.layout || {} }));
  const layout = fig.layout;
  layout.font = { ...(layout.font || {}), color: theme.font };
  for (const key of Object.keys(layout)) {
    if (/^[xy]axis\d*$/.test(key)) layout[key] = { gridcolor: theme.grid, ...layout[key] };
  }
  if (layout.images) {
    layout.images = layout.images.map((/** @type {any} */ im) => ({ ...im, source: picture(im.source) }));
  }
  layout.shapes = layout.shapes || [];
  return fig;
}

/**
 * The linking a view has: "map", "image", "channels", "tiles" or "".
 * @param {any} spec
 * @returns {string}
 */
export function linkOf(spec) {
  return spec?.layout?.meta?.link || "";
}

/**
 * A rectangle outline in data coordinates (the same form as the kernel's).
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
 * The mark of a heatmap's hovered or pinned cell.
 * @param {{row: number, col: number} | null} cell
 * @returns {Array<Record<string, any>>}
 */
export function cellMark(cell) {
  if (!cell) return [];
  return [boxShape({ x0: cell.col - 0.5, x1: cell.col + 0.5, y0: cell.row - 0.5, y1: cell.row + 0.5 }, "#ff3b30")];
}

/**
 * The values of a decoded typed-array spec or a plain array, flat (for tiles drawn as canvases).
 * @param {any} z a spec's z: {dtype, bdata, shape} or number[][]
 * @returns {{values: ArrayLike<number>, shape: number[]}}
 */
export function flat(z) {
  if (Array.isArray(z)) return { values: z.flat(), shape: [z.length, z[0]?.length ?? 0] };
  const shape = String(z.shape).split(",").map(Number);
  const b = z.bdata;
  const bytes = b instanceof ArrayBuffer ? b : b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength);
  const Kind = { f4: Float32Array, u1: Uint8Array, i4: Int32Array }[/** @type {"f4"} */ (z.dtype)];
  if (!Kind) throw new TypeError(`unsupported dtype ${z.dtype}`);
  return { values: new Kind(bytes), shape };
}
