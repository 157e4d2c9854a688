// What the browser keeps beside the views' specs: the decoded payloads that linking and the
// values at a location read, the pictures the specs refer to, the hovered and pinned cells.
// No DOM here.

import { bytesOf, dataUrl, decode } from "./decode.js";
import { cellBox, receptiveBox } from "./geometry.js";
import { boxShape } from "./spec.js";

/**
 * @typedef {{row: number, col: number}} Cell
 * @typedef {{box: import("./geometry.js").Box, color: string, dash?: string}} Outline
 * @typedef {{g: any, size: number[], pool: number}} LinkInfo
 */

export class ViewState {
  /** @param {import("./schema.js").Model} model */
  constructor(model) {
    this.model = model;
    /** @type {import("./schema.js").LayerPayload | import("./schema.js").NoLayer} */
    this.layer = {};
    /** @type {{aggregates?: any, tiles?: any}} */
    this.decodedLayer = {};
    /** @type {any} */
    this.channel = {};
    /** @type {any} */
    this.channelMap = null;
    this.imageUrl = "";
    this.maskUrl = "";
    /** @type {Cell | null} */
    this.hoverCell = null;
    /** @type {Cell | null} */
    this.pinnedCell = null;
    this.drawingRegion = false;
    /** @type {Partial<import("./schema.js").AblationPayload>} */
    this.ablation = {};
    this.editedMaskUrl = "";
    this.changedUrl = "";
    /** @type {Map<string, {data: any, url: string}>} pictures of panels' payloads, by ref */
    this.payloadPictures = new Map();
    /** @type {any} the dataset payload whose crops `crops` holds, by rank */
    this.cropsOf = null;
    /** @type {Map<string, string>} */
    this.crops = new Map();
  }

  readLayer() {
    const layer = this.model.get("_layer") || {};
    this.layer = layer;
    this.decodedLayer =
      layer.kind === "maps" && layer.aggregates && layer.tiles
        ? { aggregates: decode(layer.aggregates), tiles: decode(layer.tiles) }
        : {};
    this.hoverCell = null;
    this.pinnedCell = null;
  }

  readChannel() {
    this.channel = this.model.get("_channel") || {};
    this.channelMap = this.channel.map ? decode(this.channel.map) : null;
  }

  readImage() {
    const image = this.model.get("_image");
    this.imageUrl = image?.jpeg ? dataUrl(image.jpeg, "image/jpeg") : "";
    const seg = this.model.get("_segmentation") || {};
    this.maskUrl = seg.mask_png ? dataUrl(seg.mask_png, "image/png") : "";
  }

  readAblation() {
    /** @type {Partial<import("./schema.js").AblationPayload>} */
    this.ablation = this.model.get("_ablation") || {};
    const a = this.ablation;
    this.editedMaskUrl = a.mask_png ? dataUrl(a.mask_png, "image/png") : "";
    this.changedUrl = a.changed_png ? dataUrl(a.changed_png, "image/png") : "";
  }

  /**
   * The URL of a picture a view's spec refers to (layerscope/widget/spec.py names them).
   * @param {string} ref
   * @returns {string}
   */
  picture(ref) {
    const known = {
      "layerscope:image": this.imageUrl,
      "layerscope:mask": this.maskUrl,
      "layerscope:edited": this.editedMaskUrl,
      "layerscope:changed": this.changedUrl,
    };
    if (ref in known) return known[/** @type {keyof typeof known} */ (ref)];
    if (ref.startsWith("layerscope:crop:")) {
      const d = this.model.get("_dataset") || {};
      if (this.cropsOf !== d) {
        this.cropsOf = d;
        this.crops = new Map();
      }
      const rank = ref.slice("layerscope:crop:".length);
      const ex = (d.examples || []).find((/** @type {any} */ e) => String(e.rank) === rank);
      if (!ex) return "";
      if (!this.crops.has(rank)) this.crops.set(rank, dataUrl(ex.crop, "image/jpeg"));
      return this.crops.get(rank) || "";
    }
    if (ref.startsWith("layerscope:payload:")) {
      // a picture in a panel's own payload: "layerscope:payload:<trait>:<key or index>:..."
      const [trait, ...path] = ref.slice("layerscope:payload:".length).split(":");
      /** @type {any} */
      let data = this.model.get(/** @type {any} */ (trait));
      for (const key of path) data = data?.[key];
      if (!data) return "";
      if (this.payloadPictures.get(ref)?.data !== data) {
        const jpeg = bytesOf(data)[0] === 0xff;
        this.payloadPictures.set(ref, { data, url: dataUrl(data, jpeg ? "image/jpeg" : "image/png") });
      }
      return this.payloadPictures.get(ref)?.url || "";
    }
    throw new RangeError(`a view refers to an unknown picture ${ref}`);
  }

  readAll() {
    this.readLayer();
    this.readChannel();
    this.readImage();
    this.readAblation();
  }

  /** The marked cell: hovered, else pinned by a click. */
  cell() {
    return this.hoverCell || this.pinnedCell;
  }

  /** The plane of the aggregates payload holding the chosen aggregate, by name. */
  aggregateIndex() {
    const names = this.layer.kind === "maps" ? this.layer.aggregate_names : [];
    const at = names.indexOf(this.model.get("aggregate"));
    if (at < 0)
      throw new RangeError(`aggregate ${this.model.get("aggregate")} is not in the payload's ${names.join(", ")}`);
    return at;
  }

  /** A channel payload is drawn beside its own layer only (they arrive as one message). */
  channelFits() {
    return this.channel.module === this.layer.module && this.channel.call === this.layer.call;
  }

  /**
   * The geometry of the current layer's displayed maps, for linking.
   * @returns {LinkInfo | null}
   */
  linkInfo() {
    if (this.layer.kind !== "maps") return null;
    return { g: this.model.get("_geometry"), size: this.layer.map_size, pool: this.layer.map_pool };
  }

  /**
   * Outlines on the image for the marked cell: its stride footprint (solid) and, when known,
   * its full receptive field (dashed), both clipped to the image.
   * @returns {Outline[]}
   */
  imageBoxes() {
    const info = this.linkInfo();
    const cell = this.cell();
    if (!info || !cell) return [];
    /** @type {Outline[]} */
    const boxes = [{ box: cellBox(info.g, info.size, info.pool, cell.row, cell.col), color: "#ff3b30" }];
    if (this.layer.rf) {
      boxes.push({
        box: receptiveBox(info.g, this.layer.rf, info.size, info.pool, cell.row, cell.col),
        color: "#ffcc00",
        dash: "dash",
      });
    }
    return boxes;
  }

  /** The outlines as shapes of the photo. */
  imageShapes() {
    return this.imageBoxes().map((b) => boxShape(b.box, b.color, b.dash));
  }
}
