// What the playground's list editors (images, elements, voices) share: rows kept in order in a
// list, an add button and a count, and a renumbering after every change. A subclass makes a row
// in add() (a row has an `element`, and an `error` unless it overrides clearErrors), hands it to
// appendRow, and names row i in label(row, i).

import { h } from "./dom.js";

export class RowList {
  /**
   * @param {object} o
   * @param {number} o.max             rows at most (Infinity: no limit, no count shown)
   * @param {() => void} o.onChange
   * @param {string} o.list            the list's tag, e.g. "ol.voices"
   * @param {string} o.editor          the editor's tag, e.g. "div.voices-editor"
   * @param {string} o.addClass        the add button's class
   * @param {string} o.addLabel
   */
  constructor({ max, onChange, list, editor, addClass, addLabel }) {
    this.max = max;
    this.onChange = onChange;
    this.rows = [];
    this.list = h(list);
    this.addButton = h(`button.ghost.small.${addClass}`, { type: "button", onclick: () => { this.add(); this.onChange(); } }, addLabel);
    this.count = h("span.muted.small.list-count");
    this.element = h(editor, this.list, h("div.row.between", this.addButton, this.count));
  }

  appendRow(row) {
    this.rows.push(row);
    this.list.append(row.element);
    this.update();
    return row;
  }

  remove(row) {
    this.rows = this.rows.filter((r) => r !== row);
    row.element.remove();
    this.update();
    this.onChange();
  }

  /** Every row replaced by one per value (``add(value)``), at most ``max``. */
  replaceRows(values) {
    for (const row of this.rows) row.element.remove();
    this.rows = [];
    for (const value of Array.isArray(values) ? values.slice(0, this.max) : []) this.add(value);
    this.update();
  }

  update() {
    this.rows.forEach((row, i) => this.label(row, i));
    this.addButton.disabled = this.rows.length >= this.max;
    this.count.textContent = Number.isFinite(this.max) ? `${this.rows.length} of at most ${this.max}` : "";
  }

  clearErrors() {
    for (const row of this.rows) {
      row.error.textContent = "";
      row.element.classList.remove("invalid");
    }
  }
}
