// An image input: drop or pick a file (uploaded through the storage API), or paste a URL; a preview.

import { uploadBlob } from "./api.js";
import { h, formatBytes } from "./dom.js";

export class ImageField {
  /**
   * @param {object} o
   * @param {string} o.name   fal field name (e.g. "image_url")
   * @param {string} o.label
   * @param {(info: {src: string, width: number, height: number} | null) => void} [o.onImage]
   *        called when the preview changes (the motion brush paints over it)
   */
  constructor({ name, label, onImage, onChange }) {
    this.name = name;
    this.onImage = onImage || (() => {});
    this.onChange = onChange || (() => {});
    this.url = "";
    this.pending = null; // the upload in flight, a Promise<string>
    this.info = null;

    this.fileInput = h("input", { type: "file", accept: "image/*", hidden: true, "aria-label": `${label}: choose a file`, onchange: () => this.fileInput.files[0] && this.useFile(this.fileInput.files[0]) });
    this.preview = h("img.image-preview", { alt: "", hidden: true });
    this.placeholder = h("div.image-placeholder",
      h("span.drop-icon", { "aria-hidden": "true" }, "⬆"),
      h("span", h("strong", "Drop an image"), " or ", h("span.linkish", "choose a file")),
      h("span.muted.small", "PNG, JPEG or WebP"));
    this.status = h("span.image-status.muted.small");
    this.removeButton = h("button.ghost.small.image-remove", { type: "button", hidden: true, onclick: (e) => { e.stopPropagation(); this.setUrl(""); } }, "Remove");
    this.drop = h("div.image-drop", { tabindex: 0, role: "button", "aria-label": `${label}: drop an image or choose a file`,
      onclick: () => this.fileInput.click(),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); this.fileInput.click(); } },
      ondragover: (e) => { e.preventDefault(); this.drop.classList.add("dragging"); },
      ondragleave: () => this.drop.classList.remove("dragging"),
      ondrop: (e) => {
        e.preventDefault();
        this.drop.classList.remove("dragging");
        const file = [...(e.dataTransfer?.files || [])].find((f) => f.type.startsWith("image/"));
        if (file) this.useFile(file);
        else {
          const text = e.dataTransfer?.getData("text/uri-list") || e.dataTransfer?.getData("text/plain");
          if (text) this.setUrl(text.trim());
        }
      } }, this.preview, this.placeholder);
    this.urlInput = h("input.image-url", { type: "url", name, placeholder: "…or paste an image URL", spellcheck: false, autocomplete: "off",
      onchange: () => this.setUrl(this.urlInput.value.trim()) });
    this.element = h("div.image-field", this.drop, this.fileInput, h("div.row.image-meta", this.urlInput, this.removeButton), this.status);
  }

  /** Preview `file` at once, upload it in the background; value() waits for the upload. */
  useFile(file) {
    if (this.localUrl) URL.revokeObjectURL(this.localUrl);
    const local = (this.localUrl = URL.createObjectURL(file));
    this.showPreview(local);
    this.status.textContent = `Uploading ${file.name} (${formatBytes(file.size)})…`;
    this.status.classList.remove("error");
    this.urlInput.value = "";
    const upload = uploadBlob(file, file.name).then(
      (url) => {
        if (this.pending !== upload) return url; // replaced meanwhile
        this.url = url;
        this.urlInput.value = url;
        this.status.textContent = `Uploaded ${file.name} (${formatBytes(file.size)})`;
        this.pending = null;
        this.onChange();
        return url;
      },
      (error) => {
        if (this.pending === upload) {
          this.pending = null;
          this.status.textContent = `Upload failed: ${error.message}`;
          this.status.classList.add("error");
        }
        throw error;
      });
    upload.catch(() => {}); // reported in the status line; value() rethrows
    this.pending = upload;
  }

  setUrl(url) {
    this.pending = null;
    this.url = url;
    this.urlInput.value = url;
    this.status.textContent = "";
    this.status.classList.remove("error");
    if (url) this.showPreview(url);
    else this.hidePreview();
    this.onChange();
  }

  showPreview(src) {
    this.preview.hidden = false;
    this.placeholder.hidden = true;
    this.removeButton.hidden = false;
    this.drop.classList.add("has-image");
    this.preview.onload = () => {
      this.info = { src, width: this.preview.naturalWidth, height: this.preview.naturalHeight };
      this.status.dataset.size = `${this.info.width}×${this.info.height}`;
      this.onImage(this.info);
    };
    this.preview.onerror = () => {
      this.preview.hidden = true;
      this.placeholder.hidden = false;
      this.drop.classList.remove("has-image");
      this.status.textContent = "The image could not be loaded for a preview.";
      this.info = null;
      this.onImage(null);
    };
    this.preview.src = src;
  }

  hidePreview() {
    this.preview.hidden = true;
    this.preview.removeAttribute("src");
    this.placeholder.hidden = false;
    this.removeButton.hidden = true;
    this.drop.classList.remove("has-image");
    this.info = null;
    this.onImage(null);
  }

  /** The URL to send (waits for an upload in flight); "" when empty. */
  async value() {
    if (this.pending) return this.pending;
    return this.url;
  }

  currentValue() {
    return this.url;
  }
}
