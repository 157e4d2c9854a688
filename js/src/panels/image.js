// The photo: the image view with the hovered cell's footprint and receptive field; a region is
// drawn on it for Grad-CAM.

import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/** The photo, with the hovered cell's footprint and receptive field. @param {Context} ctx */
export function drawImage(ctx) {
  const { st, dom } = ctx;
  drawView(ctx, dom.imagePlot, "image", (fig) => {
    fig.layout.shapes = [...fig.layout.shapes, ...st.imageShapes()];
    fig.layout.dragmode = st.drawingRegion ? "select" : "zoom";
  });
}

/** @type {import("./index.js").FrontPanel} */
export const imagePanel = {
  parts: { image: drawImage },
  affects: { _view_image: ["image"], _image: ["image"], _segmentation: ["image"], _ablation: ["image"] },
  plotted: ["image"],
};
