// anywidget entry point: one app per view of the model (render may run several times).
import { createApp } from "./app.js";
import Plotly from "./plotly.js";

export default {
  /** @param {{model: any, el: HTMLElement}} ctx */
  render({ model, el }) {
    return createApp({ model, el, plotly: Plotly });
  },
};
