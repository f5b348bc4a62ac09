// fal's `voice_ids` (v2.6): at most two voice ids (from fal's create-voice endpoint), referred to
// in the prompt as <<<voice_1>>> and <<<voice_2>>>. value() is the list of ids, blanks left out.

import { h } from "./dom.js";
import { RowList } from "./rowlist.js";

let serial = 0;

export class VoicesEditor extends RowList {
  constructor({ max = 2, onChange = () => {} } = {}) {
    super({ max, onChange, list: "ol.voices", editor: "div.voices-editor", addClass: "add-voice", addLabel: "+ Add voice" });
    this.update();
  }

  add(id = "") {
    if (this.rows.length >= this.max) return;
    const input = h("input.voice-id", { type: "text", id: `voice-${++serial}`, spellcheck: false, autocomplete: "off", placeholder: "voice id" });
    input.value = id;
    const row = { input, label: h("label.sub-label", { for: input.id }), error: h("p.field-error", { role: "alert" }) };
    row.element = h("li.voice-item", h("div.voice-row", row.label, input,
      h("button.icon", { type: "button", title: "Remove this voice", "aria-label": "Remove this voice", onclick: () => this.remove(row) }, "✕")), row.error);
    this.appendRow(row);
  }

  label(row, i) {
    row.label.textContent = `<<<voice_${i + 1}>>>`;
  }

  value() {
    return this.rows.map((r) => r.input.value.trim()).filter(Boolean);
  }

  preview() {
    return this.value();
  }

  set(ids) {
    this.replaceRows(ids);
  }

  showError(rest, message) {
    const row = this.rows[rest[0]];
    if (!row) return false;
    row.error.textContent = message;
    row.element.classList.add("invalid");
    return true;
  }
}
