// A partial plotly.js: only the traces LayerScope draws, so the bundle stays small and offline.
// The photo itself is a layout image (a data URL), so no image trace is needed.
import bar from "plotly.js/lib/bar";
import Plotly from "plotly.js/lib/core";
import heatmap from "plotly.js/lib/heatmap";
import histogram from "plotly.js/lib/histogram";

Plotly.register([heatmap, histogram, bar]);

/** @type {any} */
export default Plotly;
