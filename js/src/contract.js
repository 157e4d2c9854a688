// The vocabulary shared with the kernel, read from the same file Python reads
// (src/layerscope/widget/contract.json): aggregate names in order, overlays, binary dtypes,
// colour scales as explicit stops.
import contract from "../../src/layerscope/widget/contract.json" with { type: "json" };

/** @type {string[]} */
export const AGGREGATES = contract.aggregates;
/** @type {Record<string, string>} */
export const AGGREGATE_LABELS = contract.aggregate_labels;
/** @type {string[]} */
export const OVERLAYS = contract.overlays;
/** @type {string[]} */
export const DTYPES = contract.dtypes;
/** @type {Record<string, Array<[number, string]>>} */
export const COLORSCALES = /** @type {any} */ (contract.colorscales);
