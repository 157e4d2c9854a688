// Where an activation cell lies on the image, and which cell lies under an image point.
// Mirrors layerscope.images.Geometry: input pixel (y, x) covers image pixels
// offset + (y, x) * scale to offset + (y + 1, x + 1) * scale.

/**
 * @typedef {import("./schema.js").GeometryPayload} Geometry
 * @typedef {{y0: number, x0: number, y1: number, x1: number}} Box
 */

/**
 * Image-pixel box of displayed cell (row, col) of a map over an (H, W) layer, pooled by `pool`.
 * @param {Geometry} g
 * @param {number[]} layerSize the layer's (H, W) before pooling
 * @param {number} pool cells of the layer per displayed cell, per side
 * @param {number} row
 * @param {number} col
 * @returns {Box}
 */
export function cellBox(g, layerSize, pool, row, col) {
  const [ih, iw] = g.input_size;
  const [lh, lw] = layerSize;
  const sy = ih / lh;
  const sx = iw / lw;
  const [h, w] = g.image_size;
  const r0 = row * pool;
  const c0 = col * pool;
  const r1 = Math.min(lh, (row + 1) * pool);
  const c1 = Math.min(lw, (col + 1) * pool);
  return {
    y0: Math.max(0, g.offset[0] + r0 * sy * g.scale[0]),
    x0: Math.max(0, g.offset[1] + c0 * sx * g.scale[1]),
    y1: Math.min(h, g.offset[0] + r1 * sy * g.scale[0]),
    x1: Math.min(w, g.offset[1] + c1 * sx * g.scale[1]),
  };
}

/**
 * The displayed cell under image point (y, x), or null outside the map.
 * @param {Geometry} g
 * @param {number[]} layerSize
 * @param {number} pool
 * @param {number} y
 * @param {number} x
 * @returns {{row: number, col: number} | null}
 */
export function cellAt(g, layerSize, pool, y, x) {
  const [ih, iw] = g.input_size;
  const [lh, lw] = layerSize;
  const iy = (y - g.offset[0]) / g.scale[0];
  const ix = (x - g.offset[1]) / g.scale[1];
  if (iy < 0 || ix < 0 || iy >= ih || ix >= iw) return null;
  const row = Math.floor(Math.floor((iy * lh) / ih) / pool);
  const col = Math.floor(Math.floor((ix * lw) / iw) / pool);
  return { row, col };
}

/**
 * Placement of a pooled map drawn over the image as a plotly heatmap: first cell centre and
 * cell size in image pixels.
 * @param {Geometry} g
 * @param {number[]} layerSize
 * @param {number} pool
 * @returns {{x0: number, y0: number, dx: number, dy: number}}
 */
export function overlayPlacement(g, layerSize, pool) {
  const dy = (g.input_size[0] / layerSize[0]) * pool * g.scale[0];
  const dx = (g.input_size[1] / layerSize[1]) * pool * g.scale[1];
  return { x0: g.offset[1] + dx / 2, y0: g.offset[0] + dy / 2, dx, dy };
}

/**
 * Image-pixel box of the full receptive field of displayed cell (row, col), clipped to the
 * image. `rf` is the layer's field in input pixels (size, stride, padding per axis); a pooled
 * cell covers `pool` x `pool` layer units, so its field is their union.
 * @param {Geometry} g
 * @param {{size: number[], stride: number[], padding: number[]}} rf
 * @param {number[]} layerSize
 * @param {number} pool
 * @param {number} row
 * @param {number} col
 * @returns {Box}
 */
export function receptiveBox(g, rf, layerSize, pool, row, col) {
  const lastRow = Math.min(layerSize[0], (row + 1) * pool) - 1;
  const lastCol = Math.min(layerSize[1], (col + 1) * pool) - 1;
  const iy0 = row * pool * rf.stride[0] - rf.padding[0];
  const ix0 = col * pool * rf.stride[1] - rf.padding[1];
  const iy1 = lastRow * rf.stride[0] - rf.padding[0] + rf.size[0];
  const ix1 = lastCol * rf.stride[1] - rf.padding[1] + rf.size[1];
  const [h, w] = g.image_size;
  return {
    y0: Math.max(0, g.offset[0] + iy0 * g.scale[0]),
    x0: Math.max(0, g.offset[1] + ix0 * g.scale[1]),
    y1: Math.min(h, g.offset[0] + iy1 * g.scale[0]),
    x1: Math.min(w, g.offset[1] + ix1 * g.scale[1]),
  };
}
