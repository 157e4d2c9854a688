// The Graph view: how data flows, drawn as the kernel placed it. A click on a module hooks it
// (app.js, by the trace's role), hovering a node marks its tree row, and hovering a tree row
// rings its node here.

import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * A ring around the node of module `id` in the graph's spec ([] when it has none).
 * @param {any} spec
 * @param {string | null} id
 * @returns {any[]}
 */
export function ringOf(spec, id) {
  const modules = (spec?.data || []).find((/** @type {any} */ t) => t.meta?.role === "modules");
  const at = id && modules ? modules.customdata.indexOf(id) : -1;
  if (at < 0) return [];
  const [x, y] = [modules.x[at], modules.y[at]];
  return [
    {
      type: "circle",
      xref: "x",
      yref: "y",
      x0: x - 0.3,
      x1: x + 0.3,
      y0: y - 0.3,
      y1: y + 0.3,
      line: { color: "#ff9f0a", width: 3 },
    },
  ];
}

/** @param {Context} ctx */
export function drawGraph(ctx) {
  drawView(ctx, ctx.dom.graphPlot, "graph");
}

/** @type {import("./index.js").FrontPanel} */
export const graphPanel = {
  parts: { graph: drawGraph },
  affects: { _view_graph: ["graph"] },
  plotted: ["graph"],
};
