// The top channels as tiles, drawn from the grid view's traces: click selects a channel,
// shift-click ablates it.

import { channelGrid, h } from "../controls.js";
import { hasView } from "../spec.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * Toggle one channel of a module in the `ablations` trait (a tile's shift-click, the toolbar).
 * @param {Pick<Context, "model" | "set">} ctx
 * @param {string} module
 * @param {number} channel
 */
export function toggleAblation({ model, set }, module, channel) {
  const all = { ...(model.get("ablations") || {}) };
  const mine = new Set(all[module] || []);
  if (mine.has(channel)) mine.delete(channel);
  else mine.add(channel);
  if (mine.size) all[module] = [...mine].sort((a, b) => a - b);
  else delete all[module];
  set("ablations", all);
}

/** The top channels' tiles, drawn from the grid view's traces. @param {Context} ctx */
export function drawGrid(ctx) {
  const { model, dom, set } = ctx;
  const spec = model.get("_view_grid");
  dom.gridBox.hidden = !hasView(spec);
  if (!hasView(spec)) return;
  const module = ctx.st.layer.module ?? "";
  dom.gridBox.replaceChildren(
    h("div", "layerscope-panel-title", spec.layout.title.text),
    channelGrid({
      traces: spec.data,
      selected: model.get("selected_channel"),
      ablated: model.get("ablations")?.[module] || [],
      onPick: (c) => set("selected_channel", c),
      onAblate: (c) => toggleAblation(ctx, module, c),
    }),
  );
}

/** @type {import("./index.js").FrontPanel} */
export const gridPanel = {
  parts: { grid: drawGrid },
  affects: { _view_grid: ["grid"], selected_channel: ["grid"], ablations: ["grid"] },
  plotted: [],
};
