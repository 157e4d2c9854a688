// The Concepts panel: a dissection's concepts of the selected module (a bar click picks one)
// and the picked concept's units as tiles (a click selects the channel), drawn as the kernel
// defined them, and an "Ablate these units" button that sets `ablations` (the photo then shows
// the prediction without them); pressed again, it puts them back.

import { actionBox, drawView } from "./draw.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * The picked concept's units in the selected module, and whether they are all ablated.
 * @param {Context} ctx
 * @returns {{module: string, units: number[], ablated: boolean}}
 */
function pickedUnits(ctx) {
  const p = ctx.model.get("_concepts") || {};
  const module = p.module || "";
  const units = p.picked_units || [];
  const now = new Set(ctx.model.get("ablations")?.[module] || []);
  return { module, units, ablated: units.length > 0 && units.every((c) => now.has(c)) };
}

/**
 * @param {Context} ctx
 * @returns {Record<string, HTMLElement>}
 */
function mount(ctx) {
  const { box, button, note, plot } = actionBox("concepts", "layerscope-ablate-concept", () => {
    const { module, units, ablated } = pickedUnits(ctx);
    const all = { ...(ctx.model.get("ablations") || {}) };
    const rest = (all[module] || []).filter((/** @type {number} */ c) => !units.includes(c));
    const next = ablated ? rest : [...new Set([...rest, ...units])].sort((a, b) => a - b);
    if (next.length) all[module] = next;
    else delete all[module];
    ctx.set("ablations", all);
  });
  return { conceptsBox: box, conceptsButton: button, conceptsNote: note, conceptsPlot: plot };
}

/** @param {Context} ctx */
function drawConcepts(ctx) {
  const { conceptsBox: box, conceptsButton: button, conceptsNote: note, conceptsPlot: plot } = ctx.own;
  const p = ctx.model.get("_concepts") || {};
  box.hidden = p.module === undefined;
  if (box.hidden) return;
  const { units, ablated } = pickedUnits(ctx);
  button.hidden = units.length === 0;
  button.textContent = ablated ? `Restore these ${units.length} units` : `Ablate these ${units.length} units`;
  note.textContent = p.missing ?? (p.picked ? `units labelled ${p.picked}` : "no unit of this module is labelled");
  drawView(ctx, plot, "concepts");
}

/** @type {import("./index.js").FrontPanel} */
export const conceptsPanel = {
  mount,
  parts: { concepts: drawConcepts },
  affects: { _concepts: ["concepts"], _view_concepts: ["concepts"], ablations: ["concepts"] },
  plotted: ["concepts"],
};
