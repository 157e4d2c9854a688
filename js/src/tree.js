// The module tree: pure helpers (filter, visible rows, formatting) and a small DOM view with
// keyboard navigation. Names are always set as text, never parsed as HTML.

/**
 * @typedef {{id: string, name: string, cls: string, parent: string | null, children: string[],
 *   depth: number, params: number, total_params: number, shape: any, calls: number | null,
 *   rf?: {size: number[], stride: number[], padding: number[]} | null}} TreeNode
 */

/**
 * Ids matching `query` (in the qualified name or the class, case-insensitive; or, when it
 * names a concept of a dissection, the modules with units of it) with their ancestors; null
 * when the query is empty (nothing filtered).
 * @param {TreeNode[]} nodes
 * @param {string} query
 * @param {Record<string, string[]>} [concepts] concept -> the modules with units of it
 * @returns {Set<string> | null}
 */
export function filterTree(nodes, query, concepts = {}) {
  const q = query.trim().toLowerCase();
  if (!q) return null;
  const concept = conceptNamed(concepts, query);
  const units = new Set(concept ? concepts[concept] : []);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  /** @type {Set<string>} */
  const keep = new Set();
  for (const n of nodes) {
    if (units.has(n.id) || n.id.toLowerCase().includes(q) || n.cls.toLowerCase().includes(q)) {
      /** @type {TreeNode | undefined} */
      let cur = n;
      while (cur && !keep.has(cur.id)) {
        keep.add(cur.id);
        cur = cur.parent === null ? undefined : byId.get(cur.parent);
      }
    }
  }
  return keep;
}

/**
 * The concept `query` names (case-insensitive, whole), or "".
 * @param {Record<string, string[]>} concepts
 * @param {string} query
 * @returns {string}
 */
export function conceptNamed(concepts, query) {
  const q = query.trim().toLowerCase();
  return Object.keys(concepts).find((c) => c.toLowerCase() === q) ?? "";
}

/**
 * Rows to show, in pre-order: a node shows when every ancestor is expanded, or, while
 * filtering, when it is in `matches`.
 * @param {TreeNode[]} nodes
 * @param {Set<string>} expanded
 * @param {Set<string> | null} matches
 * @returns {TreeNode[]}
 */
export function visibleRows(nodes, expanded, matches) {
  if (matches) return nodes.filter((n) => matches.has(n.id));
  const byId = new Map(nodes.map((n) => [n.id, n]));
  return nodes.filter((n) => {
    let parent = n.parent;
    while (parent !== null) {
      if (!expanded.has(parent)) return false;
      const p = byId.get(parent);
      parent = p ? p.parent : null;
    }
    return true;
  });
}

/**
 * "1×256×24×24", or "aux: 1×1024×12×12, out: …" for structured outputs.
 * @param {any} shape
 * @returns {string}
 */
export function formatShape(shape) {
  if (shape === null || shape === undefined) return "";
  if (Array.isArray(shape)) {
    if (shape.every((v) => typeof v === "number")) return shape.join("×");
    return `(${shape.map(formatShape).join(", ")})`;
  }
  if (typeof shape === "object") {
    return Object.entries(shape)
      .map(([k, v]) => `${k}: ${formatShape(v)}`)
      .join(", ");
  }
  return String(shape);
}

/**
 * 23508032 -> "23.5M".
 * @param {number} n
 * @returns {string}
 */
export function formatCount(n) {
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export class TreeView {
  /**
   * @param {HTMLElement} container
   * @param {{onToggle: (id: string) => void, onExpand?: (ids: string[]) => void,
   *   onHover?: (id: string | null) => void, concepts?: () => Record<string, string[]>,
   *   onConcept?: (name: string) => void}} callbacks
   *   onExpand: the expanded modules after a change (the graph opens the same);
   *   onHover: the row under the pointer (the graph marks its node);
   *   concepts: a dissection's concepts and the modules with units of each (the filter finds
   *   them); onConcept: the filter's text names one
   */
  constructor(container, callbacks) {
    this.callbacks = callbacks;
    /** @type {TreeNode[]} */
    this.nodes = [];
    /** @type {Set<string>} */
    this.expanded = new Set([""]);
    /** @type {Set<string>} */
    this.hooked = new Set();
    this.selected = "";
    /** the row marked from elsewhere (a graph node hovered) */
    this.linked = "";
    this.query = "";
    this.focusId = "";
    this.root = document.createElement("div");
    this.root.className = "layerscope-tree-panel";
    this.search = document.createElement("input");
    this.search.type = "search";
    this.search.placeholder = "Filter modules by name, class or concept";
    this.search.className = "layerscope-search";
    this.search.setAttribute("aria-label", "Filter modules");
    this.list = document.createElement("div");
    this.list.className = "layerscope-tree";
    this.list.setAttribute("role", "tree");
    this.list.tabIndex = 0;
    this.root.append(this.search, this.list);
    container.append(this.root);
    this.search.addEventListener("input", () => {
      this.query = this.search.value;
      const concept = conceptNamed(this.callbacks.concepts?.() || {}, this.query);
      if (concept) this.callbacks.onConcept?.(concept);
      this.render();
    });
    this.list.addEventListener("keydown", (e) => this.onKey(e));
    this.list.addEventListener("click", (e) => this.onClick(e));
    this.list.addEventListener("mouseover", (e) => {
      const row = /** @type {HTMLElement | null} */ (/** @type {HTMLElement} */ (e.target).closest(".layerscope-node"));
      this.callbacks.onHover?.(row?.dataset.id ?? null);
    });
    this.list.addEventListener("mouseleave", () => this.callbacks.onHover?.(null));
  }

  /**
   * Mark a row from elsewhere (a graph node under the pointer); "" unmarks.
   * @param {string} id
   */
  link(id) {
    this.linked = id;
    for (const row of this.list.querySelectorAll(".layerscope-node")) {
      row.classList.toggle("layerscope-linked", /** @type {HTMLElement} */ (row).dataset.id === id);
    }
  }

  /**
   * @param {TreeNode[]} nodes
   * @param {string[]} hooked
   * @param {string} selected
   */
  update(nodes, hooked, selected) {
    if (nodes !== this.nodes && nodes.length && !this.nodes.length) {
      // Open the first two levels so the main stages show at once.
      for (const n of nodes) if (n.depth < 2 && n.children.length) this.expanded.add(n.id);
    }
    this.nodes = nodes;
    this.hooked = new Set(hooked);
    this.selected = selected;
    for (const id of hooked) this.reveal(id);
    this.render();
  }

  /** @param {string} id */
  reveal(id) {
    const byId = new Map(this.nodes.map((n) => [n.id, n]));
    let cur = byId.get(id);
    while (cur && cur.parent !== null) {
      this.expanded.add(cur.parent);
      cur = byId.get(cur.parent);
    }
  }

  rows() {
    const concepts = this.callbacks.concepts?.() || {};
    return visibleRows(this.nodes, this.expanded, filterTree(this.nodes, this.query, concepts));
  }

  render() {
    const rows = this.rows();
    const filtering = this.query.trim() !== "";
    const frag = document.createDocumentFragment();
    for (const n of rows) {
      const row = document.createElement("div");
      row.className = "layerscope-node";
      row.dataset.id = n.id;
      if (n.id === this.linked) row.classList.add("layerscope-linked");
      row.setAttribute("role", "treeitem");
      row.setAttribute("aria-level", String(n.depth + 1));
      row.setAttribute("aria-selected", String(this.hooked.has(n.id)));
      if (n.children.length) row.setAttribute("aria-expanded", String(filtering || this.expanded.has(n.id)));
      row.style.paddingLeft = `${n.depth * 14 + 4}px`;
      if (this.hooked.has(n.id)) row.classList.add("layerscope-hooked");
      if (n.id === this.selected) row.classList.add("layerscope-selected");
      if (n.id === this.focusId) row.classList.add("layerscope-focus");
      if (n.calls === 0) {
        row.classList.add("layerscope-never");
        row.title = "never called in the forward pass (a container, or a branch not taken)";
      } else if (n.rf) {
        const [rh, rw] = n.rf.size.map(Math.round);
        row.title = `${n.id || "model"}: receptive field ${rh}×${rw} px, effective stride ${n.rf.stride.map((v) => +v.toFixed(2)).join("×")}, padding ${n.rf.padding.map((v) => +v.toFixed(1)).join("×")}`;
      }
      const caret = document.createElement("span");
      caret.className = "layerscope-caret";
      caret.textContent = n.children.length ? (filtering || this.expanded.has(n.id) ? "▾" : "▸") : "";
      const mark = document.createElement("span");
      mark.className = "layerscope-mark";
      mark.textContent = this.hooked.has(n.id) ? "●" : "○";
      const name = document.createElement("span");
      name.className = "layerscope-name";
      name.textContent = n.id === "" ? `${n.name} (whole model)` : n.name;
      name.title = n.id || "the whole model";
      const cls = document.createElement("span");
      cls.className = "layerscope-cls";
      cls.textContent = n.cls;
      const shape = document.createElement("span");
      shape.className = "layerscope-shape";
      shape.textContent = n.calls === 0 ? "never runs" : formatShape(n.shape);
      if (n.calls && n.calls > 1) shape.textContent += ` ×${n.calls} calls`;
      const params = document.createElement("span");
      params.className = "layerscope-params";
      params.textContent = n.total_params ? formatCount(n.total_params) : "";
      params.title = `${n.total_params} parameters (${n.params} own)`;
      row.append(caret, mark, name, cls, shape, params);
      frag.append(row);
    }
    this.list.replaceChildren(frag);
  }

  /** @param {MouseEvent} e */
  onClick(e) {
    const target = /** @type {HTMLElement} */ (e.target);
    const row = /** @type {HTMLElement | null} */ (target.closest(".layerscope-node"));
    if (!row || row.dataset.id === undefined) return;
    const id = row.dataset.id;
    this.focusId = id;
    if (target.classList.contains("layerscope-caret")) {
      this.toggleExpanded(id);
      return;
    }
    this.callbacks.onToggle(id);
  }

  /** @param {string} id */
  toggleExpanded(id) {
    if (this.expanded.has(id)) this.expanded.delete(id);
    else this.expanded.add(id);
    this.render();
    this.callbacks.onExpand?.([...this.expanded].filter(Boolean));
  }

  /** @param {KeyboardEvent} e */
  onKey(e) {
    const rows = this.rows();
    if (!rows.length) return;
    let i = rows.findIndex((n) => n.id === this.focusId);
    if (i < 0) i = 0;
    const node = rows[i];
    switch (e.key) {
      case "ArrowDown":
        i = Math.min(rows.length - 1, i + 1);
        break;
      case "ArrowUp":
        i = Math.max(0, i - 1);
        break;
      case "ArrowRight":
        if (node.children.length && !this.expanded.has(node.id)) this.toggleExpanded(node.id);
        break;
      case "ArrowLeft":
        if (this.expanded.has(node.id) && node.children.length) this.toggleExpanded(node.id);
        else if (node.parent !== null) i = rows.findIndex((n) => n.id === node.parent);
        break;
      case "Enter":
      case " ":
        this.callbacks.onToggle(node.id);
        break;
      default:
        return;
    }
    e.preventDefault();
    this.focusId = rows[Math.max(0, i)].id;
    this.render();
    const focused = this.list.querySelector(".layerscope-focus");
    if (focused && "scrollIntoView" in focused) focused.scrollIntoView({ block: "nearest" });
  }
}
