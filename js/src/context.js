// The shared context of the drawing functions: the model, the view state, the DOM parts.

/**
 * @typedef {import("./spec.js").Theme} Theme
 * @typedef {import("./schema.js").Model} Model
 * @typedef {{title: HTMLElement, status: HTMLElement, progress: HTMLProgressElement,
 *   notice: HTMLElement, error: HTMLElement, imageControls: HTMLElement, chips: HTMLElement,
 *   toolbar: HTMLElement, emptyHint: HTMLElement, imagePlot: HTMLElement,
 *   channelPlot: HTMLElement, vectorPlot: HTMLElement, aggregatePlot: HTMLElement, histPlot: HTMLElement,
 *   gradPlot: HTMLElement, scorePlot: HTMLElement, gridBox: HTMLElement, statsBox: HTMLElement,
 *   valuesBox: HTMLElement, segBox: HTMLElement, importancePlot: HTMLElement,
 *   datasetPlot: HTMLElement, graphPlot: HTMLElement}} Dom
 * @typedef {{model: Model, st: import("./state.js").ViewState, dom: Dom,
 *   set: (name: keyof import("./schema.js").WidgetState, value: any) => void, schedule: (parts: string[]) => void,
 *   react: (plot: HTMLElement, fig: import("./spec.js").Figure) => void,
 *   theme: () => Theme, own: Record<string, HTMLElement>}} Context
 *   `own`: the elements panels made for themselves (their `mount`), by name
 */

export {};
