// What the views draw from: the decoded payloads, the hovered and pinned cells, and the derived
// values several panels share. No DOM here.

import { dataUrl, decode, rows } from "./decode.js";
import { cellBox, receptiveBox } from "./geometry.js";

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
    /** @type {any} */
    this.scoreMap = null;
    /** @type {any} */
    this.gradcam = {};
    /** @type {any} */
    this.gradcamMap = null;
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

  readGradcam() {
    this.gradcam = this.model.get("_gradcam") || {};
    this.gradcamMap = this.gradcam.map ? decode(this.gradcam.map) : null;
  }

  readScore() {
    const s = this.model.get("_class_score") || {};
    this.scoreMap = s.map ? decode(s.map) : null;
  }

  readAll() {
    this.readLayer();
    this.readChannel();
    this.readImage();
    this.readScore();
    this.readGradcam();
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
   * The map drawn over the image in the current overlay mode; a transparent one when the mode
   * shows none (it still carries hover over the photo).
   * @returns {{z: number[][], name: string, opacity: number, info: LinkInfo} | null}
   */
  overlayData() {
    const mode = this.model.get("overlay");
    const info = this.linkInfo();
    if (!info) return null;
    const opacity = this.model.get("overlay_opacity");
    const clear = { z: rows(this.decodedLayer.aggregates, 0), name: "", opacity: 0, info };
    if (mode === "mask" || mode === "none") return clear;
    if (mode === "channel" && this.channelMap)
      return { z: rows(this.channelMap), name: `channel ${this.channel.channel}`, opacity, info };
    if (mode === "gradcam") {
      if (!this.gradcamMap || this.gradcam.module !== this.layer.module) return clear;
      const own = { g: info.g, size: this.gradcam.map_size, pool: this.gradcam.map_pool };
      return { z: rows(this.gradcamMap), name: `Grad-CAM: ${this.gradcam.name}`, opacity, info: own };
    }
    return {
      z: rows(this.decodedLayer.aggregates, this.aggregateIndex()),
      name: this.model.get("aggregate"),
      opacity,
      info,
    };
  }

  /**
   * Outlines on the image for the marked cell: its stride footprint (solid) and, when known,
   * its full receptive field (dashed), both clipped to the image.
   * @returns {Outline[]}
   */
  imageBoxes() {
    const info = this.linkInfo();
    const cell = this.cell();
    const unit = this.unitBoxes();
    if (!info || !cell) return unit;
    /** @type {Outline[]} */
    const boxes = [{ box: cellBox(info.g, info.size, info.pool, cell.row, cell.col), color: "#ff3b30" }];
    if (this.layer.rf) {
      boxes.push({
        box: receptiveBox(info.g, this.layer.rf, info.size, info.pool, cell.row, cell.col),
        color: "#ffcc00",
        dash: "dash",
      });
    }
    return [...boxes, ...unit];
  }

  /**
   * The unit of an opened dataset example: its cell (solid) and receptive field (dotted),
   * clipped to the image.
   * @returns {Outline[]}
   */
  unitBoxes() {
    const mark = this.model.get("_unit_mark") || {};
    const size = this.model.get("_image")?.size;
    if (!mark.cell || !mark.field || !size) return [];
    const clip = (/** @type {number[]} */ b) => ({
      y0: Math.max(0, b[0]),
      x0: Math.max(0, b[1]),
      y1: Math.min(size[0], b[2]),
      x1: Math.min(size[1], b[3]),
    });
    return [
      { box: clip(mark.cell), color: "#00e5ff" },
      { box: clip(mark.field), color: "#00e5ff", dash: "dot" },
    ];
  }
}
