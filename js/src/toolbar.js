// The header (title, image chooser, status, progress, notice, errors) and the toolbar above the
// views (hooked-module chips, call / channel / frame selectors, overlay controls).

import { AGGREGATE_LABELS, AGGREGATES, COLORSCALES } from "./contract.js";
import { h, select, slider } from "./controls.js";
import { toggleAblation } from "./panels/index.js";

/** @typedef {import("./context.js").Context} Context */

/** @param {Context} ctx */
export function drawHeader({ model, dom, set }) {
  dom.title.textContent = model.get("_title");
  const st = model.get("_status") || {};
  if (st.state === "running") {
    dom.status.textContent = st.total
      ? `running${st.label ? ` ${st.label}` : ""}: ${st.done} / ${st.total} ${st.unit || "module calls"}`
      : `running… ${st.label || ""}`;
    dom.progress.hidden = false;
    if (st.total) {
      dom.progress.max = st.total;
      dom.progress.value = st.done || 0;
    } else {
      dom.progress.removeAttribute("value");
    }
  } else {
    dom.progress.hidden = true;
    dom.status.textContent = st.seconds !== undefined ? `last capture ${(st.seconds * 1000).toFixed(0)} ms` : "";
  }
  const notice = model.get("_notice");
  dom.notice.textContent = notice;
  dom.notice.hidden = !notice;
  const error = model.get("_error");
  dom.error.replaceChildren();
  dom.error.hidden = !error;
  if (error) {
    const close = h("button", "layerscope-dismiss", "×");
    close.title = "dismiss";
    close.addEventListener("click", () => set("_error", ""));
    dom.error.append(h("span", undefined, error), close);
  }
}

/**
 * Send an image file's bytes to the kernel, which shows it instead of the current image.
 * @param {Context} ctx
 * @param {File} file
 */
export async function sendFile(ctx, file) {
  const data = await file.arrayBuffer();
  ctx.set("_upload", { name: file.name, data: new DataView(data) });
}

/**
 * The image chooser: bundled samples and an upload button (the photo also takes a dropped file).
 * @param {Context} ctx
 */
export function drawImageControls(ctx) {
  const { model, dom, set } = ctx;
  const samples = /** @type {string[]} */ (model.get("_samples") || []);
  const current = model.get("image_name");
  /** @type {Array<[string, string]>} */
  const options = samples.map((n) => /** @type {[string, string]} */ ([n, n]));
  if (current && !samples.includes(current)) options.push([current, current]);
  if (!current) options.unshift(["", "(your image)"]);
  const chooser = select("Image", options, current, (v) => {
    if (v && samples.includes(v)) set("image_name", v);
  });
  const file = /** @type {HTMLInputElement} */ (h("input", "layerscope-file"));
  file.type = "file";
  file.accept = "image/*";
  file.hidden = true;
  const upload = h("button", "layerscope-button layerscope-upload", "Upload…");
  upload.title = "Choose an image file, or drop one on the photo";
  upload.addEventListener("click", () => file.click());
  file.addEventListener("change", () => {
    if (file.files?.[0]) sendFile(ctx, file.files[0]);
  });
  dom.imageControls.replaceChildren(chooser, upload, file);
}

/** @param {Context} ctx */
export function drawToolbar({ model, st, dom, set, schedule }) {
  const hooked = /** @type {string[]} */ (model.get("hooked_modules"));
  const selected = model.get("selected_module");
  dom.chips.replaceChildren();
  for (const id of hooked) {
    const chip = h("span", "layerscope-chip");
    if (id === selected) chip.classList.add("layerscope-chip-selected");
    const pick = h("button", "layerscope-chip-name", id || "(whole model)");
    pick.addEventListener("click", () => set("selected_module", id));
    const drop = h("button", "layerscope-chip-drop", "×");
    drop.title = `unhook ${id}`;
    drop.addEventListener("click", () =>
      set(
        "hooked_modules",
        hooked.filter((n) => n !== id),
      ),
    );
    chip.append(pick, drop);
    dom.chips.append(chip);
  }
  const layer = st.layer;
  const bar = dom.toolbar;
  bar.replaceChildren();
  if (layer.calls !== undefined && layer.calls > 1) {
    const n = layer.calls;
    const calls = Array.from(
      { length: n },
      (_, i) => /** @type {[string, string]} */ ([String(i), `call ${i + 1} of ${layer.calls}`]),
    );
    bar.append(select("Call", calls, String(model.get("selected_call")), (v) => set("selected_call", Number(v))));
  }
  if (layer.kind === "maps") {
    bar.append(
      slider(
        "Channel",
        {
          min: 0,
          max: layer.channels - 1,
          step: 1,
          value: model.get("selected_channel"),
          className: "layerscope-channel",
        },
        (v) => set("selected_channel", v),
      ),
    );
    const aggregates = AGGREGATES.map((a) => /** @type {[string, string]} */ ([a, AGGREGATE_LABELS[a] || a]));
    bar.append(select("Aggregate", aggregates, model.get("aggregate"), (v) => set("aggregate", v)));
  }
  if (layer.frames) {
    bar.append(
      slider("Frame", { min: 0, max: layer.frames - 1, step: 1, value: model.get("selected_frame") }, (v) =>
        set("selected_frame", v),
      ),
    );
  }
  /** @type {Array<[string, string]>} */
  const overlays = [
    ["aggregate", "aggregate map"],
    ["channel", "channel map"],
    ["none", "none"],
  ];
  if (st.maskUrl) overlays.splice(2, 0, ["mask", "predicted mask"]);
  if (st.maskUrl || model.get("_prediction")?.top_index)
    overlays.splice(overlays.length - 1, 0, ["gradcam", "Grad-CAM"]);
  bar.append(select("Overlay", overlays, model.get("overlay"), (v) => set("overlay", v)));
  if (model.get("overlay") === "gradcam" && st.maskUrl) {
    const region = /** @type {number[]} */ (model.get("gradcam_region"));
    const draw = h(
      "button",
      "layerscope-button layerscope-draw-region",
      st.drawingRegion ? "Drag a box on the image…" : "Draw region",
    );
    draw.addEventListener("click", () => {
      st.drawingRegion = !st.drawingRegion;
      schedule(["toolbar", "image"]);
    });
    bar.append(draw);
    if (region.length) {
      const clear = h("button", "layerscope-button layerscope-clear-region", "Clear region");
      clear.addEventListener("click", () => set("gradcam_region", []));
      bar.append(clear);
    }
  }
  drawInterventions({ model, st, dom, set }, bar);
  bar.append(
    slider("Opacity", { min: 0, max: 1, step: 0.05, value: model.get("overlay_opacity") }, (v) =>
      set("overlay_opacity", v),
    ),
  );
  bar.append(
    select(
      "Colours",
      Object.keys(COLORSCALES).map((k) => /** @type {[string, string]} */ ([k, k])),
      model.get("colorscale"),
      (v) => set("colorscale", v),
    ),
  );
}

/**
 * Interventions: ablate the selected channel (or restore it), clear every ablation, and show the
 * selected module's channel importance.
 * @param {Pick<Context, "model" | "st" | "dom" | "set">} ctx
 * @param {HTMLElement} bar
 */
function drawInterventions({ model, st, set }, bar) {
  const layer = st.layer;
  const ablations = model.get("ablations") || {};
  const count = Object.values(ablations).reduce((a, v) => a + v.length, 0);
  const hasClasses = !!(st.maskUrl || model.get("_prediction")?.top_index);
  if (model.get("show_graph") !== undefined) {
    const graph = model.get("show_graph");
    const toggle = h("button", "layerscope-button layerscope-show-graph", graph ? "Hide graph" : "Graph");
    toggle.title = "How data flows through the model, opened as the tree is (click a module to hook it)";
    toggle.addEventListener("click", () => set("show_graph", !graph));
    bar.append(toggle);
  }
  if (!hasClasses || (layer.kind !== "maps" && layer.kind !== "vector")) return;
  const module = layer.module;
  if (layer.kind === "maps" && module) {
    const channel = model.get("selected_channel");
    const mine = ablations[module] || [];
    const on = mine.includes(channel);
    const ablate = h(
      "button",
      "layerscope-button layerscope-ablate",
      on ? `Restore #${channel}` : `Ablate #${channel}`,
    );
    ablate.title = "Set this channel to zero and see the prediction change (shift-click a tile does the same)";
    ablate.addEventListener("click", () => toggleAblation({ model, set }, module, channel));
    bar.append(ablate);
  }
  if (count) {
    const clear = h("button", "layerscope-button layerscope-clear-ablations", `Clear ablations (${count})`);
    clear.addEventListener("click", () => set("ablations", {}));
    bar.append(clear);
  }
  const shown = model.get("show_importance");
  const importance = h(
    "button",
    "layerscope-button layerscope-importance",
    shown ? "Hide importance" : "Channel importance",
  );
  importance.title =
    "Rank the channels by their effect on the selected class's score (one backward, exact ablations for the top ones)";
  importance.addEventListener("click", () => set("show_importance", !shown));
  bar.append(importance);
}
