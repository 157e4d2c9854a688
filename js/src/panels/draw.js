// Drawing a view as the kernel defined it: its spec (`_view_<name>`, from the panel's figure()
// in Python), with the theme, the pictures it refers to and the marks linking adds.

import { h } from "../controls.js";
import { bytesOf } from "../decode.js";
import { drawable, hasView } from "../spec.js";

/** @typedef {import("../context.js").Context} Context */

/**
 * Draw view `name` into `plot` as the kernel defined it (hidden when it sent none); `decorate`
 * adds what linking marks. The spec's own shapes are kept on the plot for later marks.
 * @param {Context} ctx
 * @param {HTMLElement & {specShapes?: any[], drawnSpec?: any, dataRevision?: number}} plot
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
  keepUnchanged(plot, spec, fig);
  decorate?.(fig);
  ctx.react(plot, fig);
}

/**
 * Plotly redraws a whole plot when it is handed new arrays or a new `meta` object, even equal
 * ones: tell it what did not change. The data revision changes when the view's spec does (its
 * layout too: plotly then no longer compares layout arrays such as tick values itself), so a
 * view redrawn with the very spec it drew (the aggregate map on a channel change, a panel
 * drawn again for its neighbour's sake) is only restyled; the `meta` objects it drew are kept.
 * @param {HTMLElement & {drawnSpec?: any, dataRevision?: number, layout?: any, data?: any[]}} plot
 * @param {import("../spec.js").Figure} spec
 * @param {import("../spec.js").Figure} fig
 */
function keepUnchanged(plot, spec, fig) {
  if (!plot.drawnSpec || !sameData(plot.drawnSpec, spec)) plot.dataRevision = (plot.dataRevision || 0) + 1;
  plot.drawnSpec = spec;
  fig.layout.datarevision = plot.dataRevision;
  if (plot.layout && sameData(plot.layout.meta, fig.layout.meta)) fig.layout.meta = plot.layout.meta;
  fig.data.forEach((trace, i) => {
    const old = plot.data?.[i];
    if (old && trace.meta !== undefined && sameData(old.meta, trace.meta)) trace.meta = old.meta;
  });
}

/**
 * Whether two specs (or parts of them) are equal, binary arrays compared byte by byte.
 * @param {any} a
 * @param {any} b
 * @returns {boolean}
 */
export function sameData(a, b) {
  if (a === b) return true;
  if (ArrayBuffer.isView(a) || a instanceof ArrayBuffer) {
    if (!(ArrayBuffer.isView(b) || b instanceof ArrayBuffer)) return false;
    const x = bytesOf(a);
    const y = bytesOf(b);
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => k in b && sameData(a[k], b[k]));
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
