// The front end's panels, registered in one list (the twin of layerscope/widget/panels): each
// says which parts of the widget it draws and which trait changes redraw them. A view of a
// Python panel that is in no module here is drawn as given in a plot of its own (app.js).

import { conceptsPanel } from "./concepts.js";
import { featurevisPanel } from "./featurevis.js";
import { graphPanel } from "./graph.js";
import { gridPanel } from "./grid.js";
import { imagePanel } from "./image.js";
import { layerPanel } from "./layer.js";
import { mapsPanel } from "./maps.js";
import { plotsPanel } from "./plots.js";
import { predictionPanel } from "./prediction.js";

/**
 * @typedef {import("../context.js").Context} Context
 * @typedef {{parts: Record<string, (ctx: Context) => void>, affects: Record<string, string[]>,
 *   plotted: string[], mount?: (ctx: Context) => Record<string, HTMLElement>}} FrontPanel
 *   `parts`: what it draws, by name; `affects`: trait -> its parts a change redraws;
 *   `plotted`: its parts drawn by plotly (redrawn in the new colours when the theme changes);
 *   `mount`: its own elements, by name (in `ctx.own`), added to the views once per render;
 *   those of class `layerscope-plot` (or holding one) are sized, purged and their clicks routed
 *   like the app's own plots
 */

/** @type {FrontPanel[]} */
export const PANELS = [
  graphPanel,
  imagePanel,
  mapsPanel,
  gridPanel,
  layerPanel,
  predictionPanel,
  plotsPanel,
  featurevisPanel,
  conceptsPanel,
];

export { drawView, withMarks } from "./draw.js";
export { ringOf } from "./graph.js";
export { toggleAblation } from "./grid.js";
export { drawValues } from "./layer.js";
