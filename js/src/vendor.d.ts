// plotly.js's lib entry points ship without types; LayerScope calls a handful of functions,
// typed where they are used (app.js: PlotlyLike).
declare module "plotly.js/lib/*" {
  const value: any;
  export default value;
}
