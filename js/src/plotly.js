// A partial plotly.js: only the traces LayerScope draws, so the bundle stays small and offline.
// The photo itself is a layout image (a data URL), so no image trace is needed.
// @ts-ignore -- plotly.js's lib entry points ship without types
import Plotly from "plotly.js/lib/core";
// @ts-ignore
import heatmap from "plotly.js/lib/heatmap";
// @ts-ignore
import histogram from "plotly.js/lib/histogram";
// @ts-ignore
import bar from "plotly.js/lib/bar";

Plotly.register([heatmap, histogram, bar]);

/** @type {any} */
export default Plotly;
