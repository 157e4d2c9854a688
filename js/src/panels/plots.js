// Views drawn as given, with nothing of their own in the browser but their place: the gradient
// beside Grad-CAM, channel importance (a bar click selects its channel) and the Dataset view
// (a patch click opens its image). app.js routes the clicks by the trace clicked.

import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/** The gradient's histogram beside Grad-CAM. @param {Context} ctx */
export function drawGradient(ctx) {
  drawView(ctx, ctx.dom.gradPlot, "gradient");
}

/** The selected module's channels by their effect on the class score. @param {Context} ctx */
export function drawImportance(ctx) {
  drawView(ctx, ctx.dom.importancePlot, "importance");
}

/** The Dataset panel: the top patches and the channels' dataset means. @param {Context} ctx */
export function drawDataset(ctx) {
  drawView(ctx, ctx.dom.datasetPlot, "dataset");
}

/** @type {import("./index.js").FrontPanel} */
export const plotsPanel = {
  parts: { gradient: drawGradient, importance: drawImportance, dataset: drawDataset },
  affects: {
    _view_gradient: ["gradient"],
    _view_importance: ["importance"],
    _view_dataset: ["dataset"],
    _dataset: ["dataset"],
  },
  plotted: ["gradient", "importance", "dataset"],
};
