// The model's prediction: the segmentation legend (click: the class's score map) or a
// classifier's top classes, with channels ablated before -> after; the score map view.

import { classLegend, h } from "../controls.js";
import { drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/** The segmentation legend and score map, or a classifier's top predictions. @param {Context} ctx */
export function drawSegmentation(ctx) {
  const { model, st, dom, set } = ctx;
  const seg = model.get("_segmentation") || {};
  const pred = model.get("_prediction") || {};
  dom.segBox.hidden = !seg.legend && !pred.top_index;
  drawView(ctx, dom.scorePlot, "score");
  /**
   * The panel: a title, the classes to click (a click selects one), what else it says.
   * @param {string} title @param {any[]} entries @param {number} selected @param {HTMLElement[]} more
   */
  const show = (title, entries, selected, ...more) =>
    dom.segBox.replaceChildren(
      h("div", "layerscope-panel-title", title),
      classLegend(entries, selected, (i) => set("selected_class", i)),
      ...more,
    );
  if (!seg.legend && pred.top_index && st.ablation.kind === "classification" && st.ablation.scores) {
    const entries = st.ablation.scores.map((e) => ({
      index: e.index,
      name: `${e.label} ${e.before.toPrecision(3)} → ${e.after.toPrecision(3)}`,
      color: "#e45756",
      fraction: Number.NaN,
    }));
    show("Top scores with channels ablated (before → after)", entries, model.get("selected_class"));
    return;
  }
  if (!seg.legend && pred.top_index) {
    const entries = pred.top_index.map((i, k) => ({
      index: i,
      name: pred.top_label?.[k] ?? `#${i}`,
      color: "#4c78a8",
      fraction: pred.top_probability?.[k] ?? 0,
    }));
    show("Top predictions (click one to explain it with Grad-CAM)", entries, model.get("selected_class"));
    return;
  }
  if (!seg.legend) return;
  const score = model.get("_class_score") || {};
  const ab = st.ablation;
  if (ab.kind === "segmentation" && ab.shares) {
    const n = Object.values(ab.ablations || {}).reduce((a, v) => a + v.length, 0);
    const pct = (/** @type {number} */ f) => `${(f * 100).toFixed(1)}%`;
    const entries = ab.shares.map((e) => ({
      index: e.index,
      name: `${e.name} ${pct(e.before)} →`,
      color: e.color,
      fraction: e.after,
    }));
    const names = Object.fromEntries((seg.classes || []).map((c, i) => [i, c]));
    const moves = (ab.transitions || [])
      .map((t) => `${names[t.before]} → ${names[t.after]}: ${t.pixels} px`)
      .join(" · ");
    show(
      `With ${n} channel(s) ablated: ${pct(ab.changed_fraction ?? 0)} of pixels changed class (highlighted on the photo)`,
      entries,
      score.class ?? -1,
      h("div", "layerscope-muted layerscope-transitions", moves),
    );
  } else {
    show("Predicted classes (click for the score map)", seg.legend, score.class ?? -1);
  }
}

/** @type {import("./index.js").FrontPanel} */
export const predictionPanel = {
  parts: { segmentation: drawSegmentation },
  affects: {
    _view_score: ["segmentation"],
    _class_score: ["segmentation"],
    _segmentation: ["segmentation"],
    _prediction: ["segmentation"],
    selected_class: ["segmentation"],
    _ablation: ["segmentation"],
  },
  plotted: ["segmentation"],
};
