// Drawing a view as the kernel defined it: its spec (`_view_<name>`, from the panel's figure()
// in Python), with the theme, the pictures it refers to and the marks linking adds.

import { h } from "../controls.js";
import { drawable, hasView } from "../spec.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * Draw view `name` into `plot` as the kernel defined it (hidden when it sent none); `decorate`
 * adds what linking marks. The spec's own shapes are kept on the plot for later marks.
 * @param {Context} ctx
 * @param {HTMLElement & {specShapes?: any[]}} plot
 * @param {string} name
 * @param {(fig: import("../spec.js").Figure) => void} [decorate]
 */
export function drawView(ctx, plot, name, decorate) {
  const spec = ctx.model.get(`_view_${name}`);
  plot.hidden = !hasView(spec);
  if (!hasView(spec)) return;
  const fig = drawable(spec, ctx.theme(), (ref) => ctx.st.picture(ref));
  // The box takes the view's height, so plotly's autosize (on every resize) keeps it.
  if (fig.layout.height) plot.style.height = `${fig.layout.height}px`;
  plot.specShapes = fig.layout.shapes;
  decorate?.(fig);
  ctx.react(plot, fig);
}

/**
 * A shape list: the spec's own, then `marks`.
 * @param {HTMLElement & {specShapes?: any[]}} plot
 * @param {any[]} marks
 */
export function withMarks(plot, marks) {
  return [...(plot.specShapes || []), ...marks];
}

/**
 * A panel's own box across the views' row: a bar with a button and a note, then its plot
 * (hidden until the panel has something to show).
 * @param {string} name the panel's name: classes `layerscope-<name>` and `layerscope-plot-<name>`
 * @param {string} buttonClass
 * @param {(button: HTMLElement) => void} onClick
 * @returns {{box: HTMLElement, button: HTMLElement, note: HTMLElement, plot: HTMLElement}}
 */
export function actionBox(name, buttonClass, onClick) {
  const box = h("div", `layerscope-panel layerscope-action-box layerscope-${name}`);
  const bar = h("div", "layerscope-action-bar");
  const button = h("button", `layerscope-button ${buttonClass}`);
  const note = h("span", "layerscope-action-note");
  const plot = h("div", `layerscope-plot layerscope-plot-${name}`);
  bar.append(button, note);
  box.append(bar, plot);
  box.hidden = true;
  button.addEventListener("click", () => onClick(button));
  return { box, button, note, plot };
}
