// The selected channel's feature visualization beside its top dataset patches: a Visualize
// button (Stop while it runs; the kernel stops it too when another channel is selected) and
// the view as the kernel drew it, the image so far after each slice of the optimization.

import { actionBox, drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * Its own elements: a box with the button and a note, and the plot.
 * @param {Context} ctx
 * @returns {Record<string, HTMLElement>}
 */
function mount(ctx) {
  const { box, button, note, plot } = actionBox("featurevis", "layerscope-visualize", () => {
    const running = ctx.model.get("_featurevis")?.state === "running";
    ctx.model.send(running ? { kind: "visualize", stop: true } : { kind: "visualize" });
  });
  return { featurevisBox: box, featurevisButton: button, featurevisNote: note, featurevisPlot: plot };
}

/** @param {Context} ctx */
function drawFeaturevis(ctx) {
  const { featurevisBox: box, featurevisButton: button, featurevisNote: note, featurevisPlot: plot } = ctx.own;
  const fv = ctx.model.get("_featurevis") || {};
  box.hidden = fv.module === undefined;
  if (box.hidden) return;
  const s = fv.settings || {};
  button.hidden = fv.state === "done";
  button.textContent = fv.state === "running" ? "Stop" : `Visualize channel ${fv.channel}`;
  note.textContent =
    fv.state === "running"
      ? `optimizing an image for channel ${fv.channel}: step ${fv.step} of ${fv.steps} (another channel stops it)`
      : fv.state === "idle"
        ? `the image that excites channel ${fv.channel} most: ${s.steps} steps at ${s.size} px (${s.param})`
        : "";
  drawView(ctx, plot, "featurevis");
}

/** @type {import("./index.js").FrontPanel} */
export const featurevisPanel = {
  mount,
  parts: { featurevis: drawFeaturevis },
  affects: { _featurevis: ["featurevis"], _view_featurevis: ["featurevis"] },
  plotted: ["featurevis"],
};
