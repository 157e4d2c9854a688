// Bundles the widget (and its partial plotly.js) into the Python package as one ES module, and
// the same partial plotly.js as a classic script for the HTML export.

import { copyFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const outfile = here("../src/layerscope/static/widget.js");
const exportfile = outfile.replace(/widget\.js$/, "plotly-partial.js");
const common = {
  bundle: true,
  minify: true,
  target: ["es2020"],
  // plotly.js reads these globals; the widget runs in a browser.
  define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  legalComments: "none",
};

await esbuild.build({ ...common, entryPoints: [here("./src/widget.js")], format: "esm", outfile });
// window.Plotly, for the pages explorer.to_html() writes.
await esbuild.build({ ...common, entryPoints: [here("./src/plotly-global.js")], format: "iife", outfile: exportfile });
// plotly.js pulls in a stylesheet for map traces LayerScope does not use; the widget's own CSS
// is shipped instead.
for (const file of [outfile, exportfile]) rmSync(file.replace(/\.js$/, ".css"), { force: true });
copyFileSync(here("./src/layerscope.css"), outfile.replace(/widget\.js$/, "layerscope.css"));
console.log(`built ${outfile} and ${exportfile}`);
