// fal's `voice_ids` (v2.6): at most two voice ids (from fal's create-voice endpoint), referred to
// in the prompt as <<<voice_1>>> and <<<voice_2>>>. value() is the list of ids, blanks left out.

import { h } from "./dom.js";

let serial = 0;

export class VoicesEditor {
  constructor({ max = 2, onChange = () => {} } = {}) {
    this.max = max;
    this.onChange = onChange;
    this.rows = [];
    this.list = h("ol.voices");
    this.addButton = h("button.ghost.small.add-voice", { type: "button", onclick: () => { this.add(); this.onChange(); } }, "+ Add voice");
    this.count = h("span.muted.small.list-count");
    this.element = h("div.voices-editor", this.list, h("div.row.between", this.addButton, this.count));
    this.update();
  }

  add(id = "") {
    if (this.rows.length >= this.max) return;
    const input = h("input.voice-id", { type: "text", id: `voice-${++serial}`, spellcheck: false, autocomplete: "off", placeholder: "voice id" });
    input.value = id;
    const row = { input, label: h("label.sub-label", { for: input.id }), error: h("p.field-error", { role: "alert" }) };
    row.element = h("li.voice-item", h("div.voice-row", row.label, input,
      h("button.icon", { type: "button", title: "Remove this voice", "aria-label": "Remove this voice", onclick: () => this.remove(row) }, "✕")), row.error);
    this.rows.push(row);
    this.list.append(row.element);
    this.update();
  }

  remove(row) {
    this.rows = this.rows.filter((r) => r !== row);
    row.element.remove();
    this.update();
    this.onChange();
  }

  update() {
    this.rows.forEach((row, i) => { row.label.textContent = `<<<voice_${i + 1}>>>`; });
    this.addButton.disabled = this.rows.length >= this.max;
    this.count.textContent = `${this.rows.length} of at most ${this.max}`;
  }

  value() {
    return this.rows.map((r) => r.input.value.trim()).filter(Boolean);
  }

  preview() {
    return this.value();
  }

  set(ids) {
    for (const row of this.rows) row.element.remove();
    this.rows = [];
    for (const id of Array.isArray(ids) ? ids : []) this.add(id);
    this.update();
  }

  showError(rest, message) {
    const row = this.rows[rest[0]];
    if (!row) return false;
    row.error.textContent = message;
    row.element.classList.add("invalid");
    return true;
  }

  clearErrors() {
    for (const row of this.rows) { row.error.textContent = ""; row.element.classList.remove("invalid"); }
  }
}
