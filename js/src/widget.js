// anywidget entry point: one app per view of the model (render may run several times).
import { createApp } from "./app.js";
import Plotly from "./plotly.js";

/** @type {import("@anywidget/types").Render<import("./schema.js").WidgetState>} */
function render({ model, el }) {
  return createApp({ model, el, plotly: Plotly });
}

export default { render };
