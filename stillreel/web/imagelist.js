// A list of images (fal's image_urls, input_image_urls, an element's reference_image_urls): each
// item an ImageField (upload or URL), add and remove, at most `max` items. value() is fal's JSON:
// the URLs in order, empty items left out.

import { h } from "./dom.js";
import { ImageField } from "./imagefield.js";
import { RowList } from "./rowlist.js";

let serial = 0; // unique ids for the items' URL inputs (items come and go)

export class ImageList extends RowList {
  /**
   * @param {object} o
   * @param {string} o.name       fal field name (for the inputs' names and labels)
   * @param {string} o.itemLabel  "Reference image" → "Reference image 1", …
   * @param {string} [o.token]    how a prompt refers to item n, e.g. "@Image" → "@Image1"
   * @param {number} [o.max]
   * @param {number} [o.start]    items shown at first (a required list starts with one)
   */
  constructor({ name, itemLabel, token = "", max = Infinity, start = 0, onChange = () => {} }) {
    super({ max, onChange, list: "ol.image-list", editor: "div.list-editor", addClass: "add-image",
      addLabel: `+ Add ${itemLabel.toLowerCase()}` });
    this.name = name;
    this.itemLabel = itemLabel;
    this.token = token;
    for (let i = 0; i < start; i++) this.add();
    this.update();
  }

  add(url = "") {
    if (this.rows.length >= this.max) return null;
    const item = { error: h("p.field-error", { role: "alert" }) };
    item.title = h("span.list-item-title");
    item.image = new ImageField({ name: `${this.name}[]`, label: this.itemLabel, onChange: () => this.onChange() });
    item.image.urlInput.id = `image-item-${++serial}`;
    item.element = h("li.list-item",
      h("div.row.between.list-item-head", h("label", { for: item.image.urlInput.id }, item.title),
        h("button.icon", { type: "button", title: `Remove this ${this.itemLabel.toLowerCase()}`, "aria-label": `Remove this ${this.itemLabel.toLowerCase()}`,
          onclick: () => this.remove(item) }, "✕")),
      item.image.element, item.error);
    if (url) item.image.setUrl(url);
    return this.appendRow(item);
  }

  label(item, i) {
    item.title.textContent = `${this.itemLabel} ${i + 1}${this.token ? ` · ${this.token}${i + 1}` : ""}`;
  }

  /** fal's JSON: the URLs (waits for uploads in flight). */
  async value() {
    const urls = await Promise.all(this.rows.map((i) => i.image.value()));
    return urls.filter(Boolean);
  }

  /** The same without waiting (the API tab). */
  preview() {
    return this.rows.map((i) => i.image.currentValue() || (i.image.pending ? "<uploading…>" : "")).filter(Boolean);
  }

  set(urls) {
    this.replaceRows(urls);
  }

  /** A server error about item `index` (loc […, index]); false when there is no such item. */
  showError(index, message) {
    const item = this.rows[index];
    if (!item) return false;
    item.error.textContent = message;
    item.element.classList.add("invalid");
    return true;
  }
}
