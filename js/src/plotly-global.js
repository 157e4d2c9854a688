// The partial plotly.js as a classic script setting window.Plotly: what the HTML export inlines
// (the same traces the widget draws, a quarter of the full library's size).
import Plotly from "./plotly.js";

/** @type {any} */ (globalThis).Plotly = Plotly;
