// The payloads the kernel sends, as JSDoc types: the twin of layerscope/widget/schema.py,
// checked by tsc. Binary arrays arrive as {data, dtype, shape}; names travel in the payloads.

/**
 * @typedef {DataView | ArrayBuffer | ArrayBufferView} Binary
 * @typedef {"float32" | "uint8" | "int32"} Dtype
 * @typedef {{data: Binary, dtype: Dtype, shape: number[]}} ArrayPayload
 * @typedef {{jpeg: Binary, size: number[]}} ImagePayload
 * @typedef {{image_size: number[], input_size: number[], scale: number[], offset: number[],
 *   source_size?: number[] | null}} GeometryPayload
 * @typedef {{mean: number, std: number, min: number, max: number, zero_fraction: number,
 *   count: number, nan: number, posinf: number, neginf: number}} StatsPayload
 * @typedef {{counts: number[], edges: number[]}} HistogramPayload
 * @typedef {{size: number[], stride: number[], padding: number[]}} FieldPayload
 * @typedef {{name: "NCHW" | "NHWC" | "NLC" | "NCL", grid: number[], skip: number,
 *   source: "traced" | "given" | "assumed"}} LayoutPayload
 * @typedef {{module: string, cls: string, call: number, calls: number, structure?: any,
 *   shape?: number[], histogram?: HistogramPayload, stats?: StatsPayload,
 *   rf?: FieldPayload | null, layout?: LayoutPayload, frames?: number, frame?: number,
 *   tokens?: number, grid?: number[], class_token?: boolean,
 *   class_token_stats?: StatsPayload}} LayerBase
 * @typedef {LayerBase & {kind: "maps", channels: number, map_size: number[], map_pool: number,
 *   aggregate_names: string[], aggregates: ArrayPayload, nonfinite_cells: number,
 *   topk: number[], tile_pool: number, tiles: ArrayPayload, tile_min: number[],
 *   tile_max: number[]}} MapsLayer
 * @typedef {LayerBase & {kind: "vector", length: number, top_index: number[],
 *   top_value: number[], top_label: string[] | null, top_probability?: number[]}} VectorLayer
 * @typedef {LayerBase & {kind: "values" | "none" | "never-called" | "pending"}} OtherLayer
 * @typedef {MapsLayer | VectorLayer | OtherLayer} LayerPayload
 * @typedef {{kind?: undefined, module?: undefined, call?: undefined, calls?: undefined,
 *   cls?: undefined, histogram?: undefined, stats?: undefined, rf?: undefined,
 *   frames?: undefined, shape?: undefined, grid?: undefined, tokens?: undefined,
 *   class_token?: undefined, class_token_stats?: undefined}} NoLayer
 * @typedef {{module: string, call: number, channel: number, map: ArrayPayload,
 *   histogram: HistogramPayload, stats: StatsPayload}} ChannelPayload
 * @typedef {{index: number, name: string, color: string, fraction: number}} LegendEntry
 * @typedef {{mask_png: Binary, legend: LegendEntry[], classes: string[]}} SegmentationPayload
 * @typedef {{class: number, name: string, map: ArrayPayload}} ClassScorePayload
 * @typedef {{kind: "vector", length: number, top_index: number[], top_value: number[],
 *   top_label: string[] | null, top_probability?: number[]}} PredictionPayload
 * @typedef {{module: string, class: number, name: string, map: ArrayPayload,
 *   map_size: number[], map_pool: number, histogram: HistogramPayload, stats: StatsPayload,
 *   score: number, pixels: number}} GradcamPayload
 * @typedef {{index: number, name: string, color: string, before: number, after: number}} ShareEntry
 * @typedef {{before: number, after: number, pixels: number}} TransitionEntry
 * @typedef {{index: number, label: string, before: number, after: number}} ScoreEntry
 * @typedef {{ablations: Record<string, number[]>, kind?: "segmentation" | "classification",
 *   mask_png?: Binary, changed_png?: Binary, changed_pixels?: number, changed_fraction?: number,
 *   shares?: ShareEntry[], transitions?: TransitionEntry[], scores?: ScoreEntry[]}} AblationPayload
 * @typedef {{module: string, call: number, target: number, name: string, score: number,
 *   channels: number[], estimate: number[], exact: Array<number | null>,
 *   rank_correlation: number | null}} ImportancePayload
 * @typedef {{rank: number, source: string, score: number, location: number[], crop: Binary,
 *   crop_size: number[]}} ExamplePayload
 * @typedef {{module?: string, channel?: number, images?: number, k?: number,
 *   examples?: ExamplePayload[], mean?: ArrayPayload, max?: ArrayPayload,
 *   fraction_zero?: ArrayPayload, dead?: ArrayPayload, missing?: string}} DatasetPayload
 * @typedef {{module: string, channel: number, location: number[], cell: number[],
 *   field: number[]}} UnitMarkPayload
 * @typedef {{module: string, channel: number, call: number, state: "idle" | "running" | "done", step?: number,
 *   steps?: number, png?: Binary, trace?: ArrayPayload,
 *   settings?: {size?: number, steps?: number, param?: string, seed?: number}}} FeaturevisPayload
 * @typedef {{channel: number, iou: number, map: ArrayPayload, patch?: Binary}} ConceptTile
 * @typedef {{module?: string, missing?: string, names?: string[], min_iou?: number,
 *   images?: number, label?: ArrayPayload, iou?: ArrayPayload, concepts?: string[],
 *   units?: number[], picked?: string, picked_units?: number[], tiles?: ConceptTile[],
 *   everywhere?: Record<string, string[]>}} ConceptsPayload
 * @typedef {{state: "idle" | "running", done?: number, total?: number | null, unit?: string,
 *   label?: string, seconds?: number}} StatusPayload
 * @typedef {{id: string, name: string, cls: string, parent: string | null, children: string[],
 *   depth: number, params: number, total_params: number, shape: any, calls: number | null,
 *   rf: FieldPayload | null}} TreeNode
 * @typedef {{name?: string, data?: Binary}} UploadPayload
 */

/**
 * The widget's synced traits: what `model.get` returns for each name. A payload trait is an
 * empty object when there is nothing to show.
 * @typedef {{hooked_modules: string[], selected_module: string, selected_call: number,
 *   selected_frame: number, selected_channel: number, aggregate: string, overlay: string,
 *   gradcam_region: number[], overlay_opacity: number, colorscale: string,
 *   selected_class: number, image_name: string, ablations: Record<string, number[]>,
 *   show_importance: boolean, show_graph?: boolean, graph_open?: string[] | null,
 *   _ablation: Partial<AblationPayload>,
 *   _importance: Partial<ImportancePayload>, _dataset: DatasetPayload,
 *   _unit_mark: Partial<UnitMarkPayload>, _featurevis?: Partial<FeaturevisPayload>,
 *   _concepts?: ConceptsPayload, selected_concept?: string,
 *   featurevis_settings?: Record<string, any>, _tree: TreeNode[], _samples: string[],
 *   _upload: UploadPayload, _image: Partial<ImagePayload>, _geometry: GeometryPayload,
 *   _layer: LayerPayload | NoLayer, _channel: Partial<ChannelPayload>,
 *   _segmentation: Partial<SegmentationPayload>, _class_score: Partial<ClassScorePayload>,
 *   _prediction: Partial<PredictionPayload>, _gradcam: Partial<GradcamPayload>,
 *   _status: StatusPayload, _error: string, _notice: string, _title: string,
 *   _shown_views: string[]} & ViewTraits} WidgetState
 * @typedef {{data: any[], layout: Record<string, any>} | Record<string, never>} ViewSpec
 *   a view as a plotly figure spec (layerscope/widget/spec.py), {} when it has nothing to show
 * @typedef {{[view: `_view_${string}`]: ViewSpec}} ViewTraits
 * @typedef {import("@anywidget/types").AnyModel<WidgetState>} Model
 */

export {};
