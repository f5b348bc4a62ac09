// fal's `elements`: characters or objects the prompt refers to as @Element1, @Element2 …
// Each element is a frontal image plus 1-3 reference images (upload or URL); v3/o3 elements may
// instead carry a video_url, and a voice_id. The editor is built from the item schema, so an
// element offers exactly the keys its endpoint takes, and value() is fal's JSON for the field.

import { h } from "./dom.js";
import { ImageField } from "./imagefield.js";
import { ImageList } from "./imagelist.js";
import { RowList } from "./rowlist.js";

let serial = 0;

export class ElementsEditor extends RowList {
  /**
   * @param {object} o
   * @param {object} o.itemSchema  the element's JSON schema (properties dereferenced)
   * @param {number} [o.max]       elements at most
   * @param {{min?: number, max?: number}} [o.references]  reference images per element
   * @param {(name: string) => string} o.humanize
   */
  constructor({ itemSchema, max = Infinity, references = {}, humanize, onChange = () => {} }) {
    super({ max, onChange, list: "ol.elements", editor: "div.elements-editor", addClass: "add-element", addLabel: "+ Add element" });
    this.properties = itemSchema?.properties || {};
    this.required = new Set(itemSchema?.required || []);
    this.references = references;
    this.humanize = humanize;
    this.update();
  }

  add(value = {}) {
    if (this.rows.length >= this.max) return;
    const row = { parts: new Map(), errors: new Map() };
    const body = [];
    for (const [key, schema] of Object.entries(this.properties)) {
      const error = h("p.field-error", { role: "alert" });
      const id = `element-${++serial}-${key}`;
      const label = h("label.sub-label", { for: id }, this.humanize(key), this.required.has(key) ? h("span.required", " *") : null);
      let part;
      if (key.endsWith("_image_urls")) {
        const refs = this.references;
        // A new element starts with the reference slots it needs (fal: at least one).
        const list = new ImageList({ name: key, itemLabel: "Reference image", max: refs.max ?? Infinity,
          start: value[key] ? 0 : refs.min ?? 0, onChange: () => this.onChange() });
        if (value[key]) list.set(value[key]);
        part = { value: () => list.value(), preview: () => list.preview(), list };
        body.push(h("div.sub-field", { dataset: { key } }, h("span.sub-label", this.humanize(key),
          h("span.muted.small", ` (${refs.min ?? 0}-${refs.max ?? "…"})`)), list.element, error));
      } else if (key.endsWith("_image_url")) {
        const image = new ImageField({ name: key, label: `${this.humanize(key)}`, onChange: () => this.onChange() });
        image.urlInput.id = id;
        if (value[key]) image.setUrl(value[key]);
        part = { value: () => image.value(), preview: () => image.currentValue() || (image.pending ? "<uploading…>" : "") };
        body.push(h("div.sub-field", { dataset: { key } }, label, image.element, error));
      } else {
        const input = h("input", { id, type: key.endsWith("_url") ? "url" : "text", name: key, spellcheck: false,
          placeholder: schema.description ? "" : key });
        input.value = value[key] || "";
        part = { value: () => input.value.trim(), preview: () => input.value.trim() };
        body.push(h("div.sub-field", { dataset: { key } }, label, input,
          schema.description ? h("p.field-help", schema.description) : null, error));
      }
      row.parts.set(key, part);
      row.errors.set(key, error);
    }
    row.title = h("span.element-title");
    row.general = h("p.field-error", { role: "alert" });
    row.element = h("li.element-item", { role: "group", "aria-label": "Element" },
      h("div.row.between.list-item-head", row.title,
        h("button.icon", { type: "button", title: "Remove this element", "aria-label": "Remove this element", onclick: () => this.remove(row) }, "✕")),
      body, row.general);
    this.appendRow(row);
  }

  label(row, i) {
    row.title.textContent = `Element ${i + 1} · @Element${i + 1}`;
    row.element.setAttribute("aria-label", `Element ${i + 1}`);
  }

  /** One element as fal's JSON: only the keys that have something in them. */
  static pick(entries) {
    const out = {};
    for (const [key, v] of entries) if (Array.isArray(v) ? v.length : v) out[key] = v;
    return out;
  }

  async value() {
    return Promise.all(this.rows.map(async (row) =>
      ElementsEditor.pick(await Promise.all([...row.parts].map(async ([key, part]) => [key, await part.value()])))));
  }

  preview() {
    return this.rows.map((row) => ElementsEditor.pick([...row.parts].map(([key, part]) => [key, part.preview()])));
  }

  set(elements) {
    this.replaceRows(Array.isArray(elements) ? elements.map((value) => value || {}) : []);
  }

  /** A server error at loc [index, key?, item?]: next to that element's part. */
  showError(rest, message) {
    const [index, key, item] = rest;
    const row = this.rows[index];
    if (!row) return false;
    row.element.classList.add("invalid");
    const part = row.parts.get(key);
    if (part?.list && Number.isInteger(item) && part.list.showError(item, message)) return true;
    const target = row.errors.get(key) || row.general;
    target.textContent = target.textContent ? `${target.textContent} · ${message}` : message;
    return true;
  }

  clearErrors() {
    for (const row of this.rows) {
      row.element.classList.remove("invalid");
      row.general.textContent = "";
      for (const error of row.errors.values()) error.textContent = "";
      for (const part of row.parts.values()) part.list?.clearErrors();
    }
  }
}
