// Bundles the widget (and its partial plotly.js) into the Python package as one ES module.

import { copyFileSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const outfile = fileURLToPath(new URL("../src/layerscope/static/widget.js", import.meta.url));

await esbuild.build({
  entryPoints: [fileURLToPath(new URL("./src/widget.js", import.meta.url))],
  bundle: true,
  format: "esm",
  minify: true,
  target: ["es2020"],
  outfile,
  // plotly.js reads these globals; the widget runs in a browser.
  define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  legalComments: "none",
  metafile: true,
});
// The same partial plotly.js as a classic script for the HTML export (window.Plotly).
await esbuild.build({
  entryPoints: [fileURLToPath(new URL("./src/plotly-global.js", import.meta.url))],
  bundle: true,
  format: "iife",
  minify: true,
  target: ["es2020"],
  outfile: outfile.replace(/widget\.js$/, "plotly-partial.js"),
  define: { global: "globalThis", "process.env.NODE_ENV": '"production"' },
  logLevel: "warning",
  legalComments: "none",
});
rmSync(outfile.replace(/widget\.js$/, "plotly-partial.css"), { force: true });
// plotly.js pulls in a stylesheet for map traces LayerScope does not use; the widget's own CSS
// is shipped instead.
rmSync(outfile.replace(/\.js$/, ".css"), { force: true });
copyFileSync(
  fileURLToPath(new URL("./src/layerscope.css", import.meta.url)),
  outfile.replace(/widget\.js$/, "layerscope.css"),
);
console.log(`built ${outfile}`);
