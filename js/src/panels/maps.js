// The selected channel's map and the aggregate map: hovering a cell marks it in both and on the
// photo (app.js links them).

import { cellMark } from "../spec.js";
import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/** The selected channel's heatmap and the aggregate map, the hovered cell marked. @param {Context} ctx */
export function drawMaps(ctx) {
  const mark = cellMark(ctx.st.cell());
  for (const [plot, name] of /** @type {Array<[HTMLElement, string]>} */ ([
    [ctx.dom.channelPlot, "channel"],
    [ctx.dom.aggregatePlot, "aggregate"],
  ])) {
    drawView(ctx, plot, name, (fig) => {
      fig.layout.shapes = [...fig.layout.shapes, ...mark];
    });
  }
}

/** @type {import("./index.js").FrontPanel} */
export const mapsPanel = {
  parts: { maps: drawMaps },
  affects: { _view_channel: ["maps"], _view_aggregate: ["maps"] },
  plotted: ["maps"],
};
